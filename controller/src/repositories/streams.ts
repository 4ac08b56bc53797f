// Agent streams at rest: batches become compressed chunk rows (many records per row, so the row
// rate stays far below the record rate), a cursor per stream that de-duplicates replays, and gap
// rows where an agent's sequence jumped (records it lost) or went backwards (its spool was wiped
// or restored: a restart). See docs/contracts.md "Storage".
//
// A resend is only taken for a duplicate when it is one: records at or below the cursor are
// compared with the stored ones, and when they differ the agent's numbering has gone backwards
// (an agent whose spool was wiped numbers from 1 again). Then nothing is dropped: the stream
// restarts after a `restart` gap, and the agent's numbers map to stored ones through the
// cursor's `seq_base` (stored = seq_base + agent seq).
import { and, asc, eq, gt, gte, lte, max, sql, type SQL } from 'drizzle-orm';
import { KeelError, decodeRecords, indexRecords, RECORD_HEADER_BYTES, type RecordBatch } from '@keel/shared';
import type { Db, Transaction } from '../db/index.ts';
import { isUuid, pgErrorCode, sqlState } from '../db/errors.ts';
import {
  streamChunks,
  streamCursors,
  streamGapReason,
  streamGaps,
  type ChunkCodec,
  type StreamGapReason,
} from '../db/schema/streams.ts';
import { decodeChunk, encodeChunk } from './chunk-codec.ts';
import { chunkCopier, chunkKey, chunkRowColumns } from './chunk-copy.ts';

/** One stored record with its sequence number. */
export interface StoredRecord {
  seq: number;
  /** Epoch ms, as the agent stamped it. */
  ts: number;
  payload: Buffer;
}

/**
 * A hole in a stream, `fromSeq..toSeq` inclusive (stored numbers): records the agent lost (e.g.
 * its spool overflowed), or the one number that marks a restart of the agent's numbering.
 */
export interface StreamGap {
  fromSeq: number;
  toSeq: number;
  reason: StreamGapReason;
  /** When the controller noticed. */
  at: Date;
}

export interface AppendResult {
  /**
   * The agent's seq up to which everything of this batch is stored or recorded as a gap (its last
   * seq): what to ack. Never beyond the batch, so an ack cannot cover records the agent has not
   * sent yet — they may not be what the controller holds under those numbers.
   */
  ackedSeq: number;
  /** Set when this append skipped over missing records (stored numbers). */
  gap?: { fromSeq: number; toSeq: number };
  /**
   * Set when the batch's records at or below the cursor differed from the stored ones: the
   * agent's numbering went backwards, and the stream restarted after a `restart` gap.
   */
  restart?: { atSeq: number };
}

export interface StreamRepository {
  /**
   * Stores a batch (numbered as the agent numbers it) in one transaction: drops records at or
   * below the cursor when they equal the stored ones (a resend), records a gap when the batch
   * starts past `cursor + 1`, writes the rest as compressed chunk rows and advances the cursor.
   * When records at or below the cursor differ from the stored ones, the agent's numbering went
   * backwards: a `restart` gap is recorded and the batch, from its first differing record on, is
   * stored after it (the records before that are a true resend). An empty batch
   * starting past `cursor + 1` only records the gap. Throws KeelError `stream.invalid` (malformed
   * batch) or `host.not_found`.
   */
  append(hostId: string, stream: string, batch: RecordBatch): Promise<AppendResult>;
  /** The stream's highest stored seq (as the events API numbers it), 0 when nothing was stored. */
  cursor(hostId: string, stream: string): Promise<number>;
  /** Every stream's highest stored seq for a host, by stream name. */
  cursors(hostId: string): Promise<Record<string, number>>;
  /**
   * Up to `limit` records with seq > `afterSeq`, in order, and the gaps that lie between
   * `afterSeq` and the last record returned (or after it, when the stream's end was reached).
   */
  read(
    hostId: string,
    stream: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ records: StoredRecord[]; gaps: StreamGap[] }>;
}

/**
 * Largest raw body stored in one chunk row. Bigger batches (the gateway merges queued batches up
 * to 4 MiB) are split at record boundaries, so a read never inflates more than this to reach a
 * record, while the row rate stays ~4,000x below the record rate for 64-byte lines.
 */
export const CHUNK_MAX_RAW_BYTES = 256 * 1024;

/** Chunks fetched per query while reading. */
const READ_PAGE_CHUNKS = 16;

/** A chunk row ready to insert, numbered as the agent numbers it (add the cursor's seq_base). */
interface ChunkPiece {
  firstSeq: number;
  lastSeq: number;
  count: number;
  tsFirst: Date;
  tsLast: Date;
  codec: ChunkCodec;
  data: Buffer;
}

/** A Date for the chunk's time-range columns; a nonsense agent timestamp must not wedge the stream. */
function rangeDate(body: Buffer, recordOffset: number): Date {
  const ts = body.readDoubleBE(recordOffset + 4);
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? new Date(0) : d;
}

/** Splits records `from..count-1` of a batch into chunk pieces of at most CHUNK_MAX_RAW_BYTES. */
function toPieces(batch: RecordBatch, offsets: Uint32Array, from: number): Promise<ChunkPiece[]> {
  const pieces: Promise<ChunkPiece>[] = [];
  let start = from;
  while (start < batch.count) {
    let end = start + 1;
    while (end < batch.count && offsets[end + 1]! - offsets[start]! <= CHUNK_MAX_RAW_BYTES) end++;
    const [first, last] = [start, end];
    pieces.push(
      encodeChunk(batch.body.subarray(offsets[first], offsets[last])).then(({ codec, data }) => ({
        firstSeq: batch.firstSeq + first,
        lastSeq: batch.firstSeq + last - 1,
        count: last - first,
        tsFirst: rangeDate(batch.body, offsets[first]!),
        tsLast: rangeDate(batch.body, offsets[last - 1]!),
        codec,
        data,
      })),
    );
    start = end;
  }
  return Promise.all(pieces);
}

function validate(hostId: string, stream: string, batch: RecordBatch): Uint32Array {
  if (!isUuid(hostId)) throw new KeelError('host.not_found');
  if (stream.length === 0) throw new KeelError('stream.invalid', 'The stream name is empty.');
  if (!Number.isSafeInteger(batch.firstSeq) || batch.firstSeq < 1) {
    throw new KeelError('stream.invalid', 'firstSeq must be an integer >= 1.');
  }
  if (
    !Number.isSafeInteger(batch.count) ||
    batch.count < 0 ||
    !Number.isSafeInteger(batch.firstSeq + batch.count)
  ) {
    throw new KeelError('stream.invalid', 'count must be a non-negative integer.');
  }
  // Stored bodies must decode later; check record framing before anything is written.
  if (batch.body.length < batch.count * RECORD_HEADER_BYTES) throw new KeelError('stream.invalid');
  // The gateway's ingest indexed the batch already (it checks every frame): its offsets are taken
  // when they span this body exactly; otherwise (other callers) the body is indexed here.
  const given = (batch as RecordBatch & { offsets?: Uint32Array }).offsets;
  const offsets =
    given instanceof Uint32Array &&
    given.length === batch.count + 1 &&
    given[0] === 0 &&
    given[batch.count] === batch.body.length
      ? given
      : indexRecords(batch.body, batch.count);
  if (!offsets)
    throw new KeelError('stream.invalid', `The body does not hold exactly ${batch.count} records.`);
  return offsets;
}

/**
 * The chunk rows of `pieces` as `select … union all select …`, every column of stream_chunks in
 * order (`grams` is written later, by the retention job's summary pass: log-grams.ts), for
 * `insert … select`. Stored numbers are `base` (SQL: a number, or the cursor's seq_base from a
 * CTE) plus the agent's; `from`, when given, is each select's FROM clause.
 *
 * Each chunk's bytes go as base64 text that the server decodes, not as a bytea parameter: the
 * driver sends parameters as text, a bytea as '\\x' + hex, twice its size. A chunk is ~80 KiB of
 * LZ4, so its hex (~160 KiB) is a string past V8's 128 KiB object limit, each a mapping of its own
 * faulted in afresh: ~1.7 CPU-s per 256 MiB of logs on a VM where fresh pages are dear. As base64
 * (~107 KiB) it is made in the young generation, ~30x cheaper (one string for a whole append,
 * outside V8's heap, saved scavenges but cost as many major collections: no gain;
 * docs/benchmarks.md, 2 Dec).
 */
function chunkRows(hostId: string, stream: string, pieces: ChunkPiece[], base: SQL, from?: SQL): SQL {
  const tail = from ? sql` from ${from}` : sql``;
  return sql.join(
    pieces.map(
      (p) =>
        sql`select ${hostId}::uuid, ${stream}::text, ${base} + ${p.firstSeq}::bigint,
            ${base} + ${p.lastSeq}::bigint, ${p.count}::integer,
            ${p.tsFirst.toISOString()}::timestamptz, ${p.tsLast.toISOString()}::timestamptz, ${p.codec}::smallint,
            decode(${p.data.toString('base64')}::text, 'base64'), null::bytea${tail}`,
    ),
    sql` union all `,
  );
}

export interface StreamRepositoryOptions {
  /**
   * `false` commits appends with PostgreSQL's `synchronous_commit = off`: no wait for the WAL
   * flush, so a batch is acked ~1 fsync sooner, but a crash of the database server (not of the
   * controller) can lose the last ~0.6 s of acked records. Default `true`: an ack means durable.
   */
  synchronousCommit?: boolean;
  /**
   * `false` reads chunks by query (bytea as hex text) instead of a binary COPY (chunk-copy.ts):
   * tests compare the two.
   */
  copy?: boolean;
}

/** Stream storage over a drizzle database. */
export function createStreamRepository(db: Db, options: StreamRepositoryOptions = {}): StreamRepository {
  const asyncCommit = options.synchronousCommit === false;
  const copier = options.copy === false ? null : chunkCopier(db);
  const cursorOf = (hostId: string, stream: string) =>
    and(eq(streamCursors.hostId, hostId), eq(streamCursors.stream, stream));

  // The hot statements of append() are named, which makes drizzle let postgres.js keep them
  // prepared per connection: an unnamed parameterized query costs postgres.js two round trips
  // (describe, then execute), a prepared one costs one.

  /** Locks the stream's cursor row for this transaction (creating it at 0) and returns it. */
  async function lockCursor(
    tx: Transaction,
    hostId: string,
    stream: string,
  ): Promise<{ ackedSeq: number; seqBase: number }> {
    const select = () =>
      tx
        .select({ ackedSeq: streamCursors.ackedSeq, seqBase: streamCursors.seqBase })
        .from(streamCursors)
        .where(cursorOf(hostId, stream))
        .for('update')
        .prepare('stream_cursor_lock')
        .execute();
    const [row] = await select();
    if (row) return row;
    await tx.insert(streamCursors).values({ hostId, stream, ackedSeq: 0 }).onConflictDoNothing();
    const [created] = await select();
    if (!created) throw new Error('stream cursor row vanished');
    return created;
  }

  /**
   * How many of the batch's first `count` records equal the stored records under the same
   * numbers (stored `from`, `from + 1`, …), counting from the first until one differs. A number
   * with no stored record (a gap, or retention removed it) ends the run: a true resend only
   * repeats what was stored.
   */
  async function resentPrefix(
    tx: Transaction,
    hostId: string,
    stream: string,
    from: number,
    count: number,
    batch: RecordBatch,
    offsets: Uint32Array,
  ): Promise<number> {
    const to = from + count - 1;
    const ofStream = and(eq(streamChunks.hostId, hostId), eq(streamChunks.stream, stream));
    const [holder] = await tx
      .select({ firstSeq: max(streamChunks.firstSeq) })
      .from(streamChunks)
      .where(and(ofStream, lte(streamChunks.firstSeq, from)));
    if (holder?.firstSeq === null || holder?.firstSeq === undefined) return 0;
    const chunks = await tx
      .select(chunkRowColumns)
      .from(streamChunks)
      .where(and(ofStream, gte(streamChunks.firstSeq, holder.firstSeq), lte(streamChunks.firstSeq, to)))
      .orderBy(asc(streamChunks.firstSeq));
    let same = 0; // records of the batch matched so far; the next one is stored number from + same
    for (const chunk of chunks) {
      const next = from + same;
      if (chunk.firstSeq > next) return same; // a hole in what is stored
      if (chunk.firstSeq + chunk.count <= next) continue;
      const raw = await decodeChunk(chunk.codec, chunk.data);
      const stored = indexRecords(raw, chunk.count);
      if (!stored) return same;
      for (let i = next - chunk.firstSeq; i < chunk.count && same < count; i++, same++) {
        const mine = batch.body.subarray(offsets[same], offsets[same + 1]);
        if (!mine.equals(raw.subarray(stored[i], stored[i + 1]))) return same;
      }
      if (same === count) return same;
    }
    return same;
  }

  /**
   * The common case in one statement (one round trip, one implicit transaction): when the batch
   * continues the stream exactly (cursor = firstSeq - 1), advance the cursor and insert the chunks.
   * The UPDATE locks the cursor row, so a concurrent append of the same batch waits, re-checks the
   * cursor, matches nothing and takes the general path. False when the cursor did not match.
   */
  async function appendContiguous(
    hostId: string,
    stream: string,
    firstSeq: number,
    lastSeq: number,
    pieces: ChunkPiece[],
  ) {
    const advanced = db.$with('advanced', { base: sql<number>`0` }).as(
      sql`update "stream_cursors" set "acked_seq" = ${lastSeq}, "updated_at" = now()
          where "host_id" = ${hostId} and "stream" = ${stream} and "acked_seq" = ${firstSeq - 1}
          returning "seq_base" as "base"`,
    );
    // set_config(..., true) lasts until this statement's implicit transaction commits. A CTE that
    // only selects runs when referenced, hence the cross join with it.
    const asyncCommitCte = db
      .$with('async_commit', { off: sql<string>`off` })
      .as(sql`select set_config('synchronous_commit', 'off', true) as "off"`);
    const source = asyncCommit ? sql`"advanced", "async_commit"` : sql`"advanced"`;
    const rows = chunkRows(hostId, stream, pieces, sql`"advanced"."base"`, source);
    const inserted = await (asyncCommit ? db.with(advanced, asyncCommitCte) : db.with(advanced))
      .insert(streamChunks)
      .select(rows)
      .returning({ firstSeq: streamChunks.firstSeq })
      .prepare('stream_append_contiguous')
      .execute();
    return inserted.length === pieces.length;
  }

  return {
    async append(hostId, stream, batch) {
      const offsets = validate(hostId, stream, batch);
      const lastSeq = batch.firstSeq + batch.count - 1;
      // Compress before taking the cursor lock: the usual batch has nothing to trim.
      const whole = await toPieces(batch, offsets, 0);
      try {
        if (whole.length > 0 && (await appendContiguous(hostId, stream, batch.firstSeq, lastSeq, whole))) {
          return { ackedSeq: lastSeq };
        }
        return await db.transaction(async (tx) => {
          if (asyncCommit) await tx.execute(sql`set local synchronous_commit = off`);
          const cursor = await lockCursor(tx, hostId, stream);
          let acked = cursor.ackedSeq;
          let base = cursor.seqBase;
          let restart: AppendResult['restart'];
          let skip = Math.max(0, Math.min(acked + 1 - batch.firstSeq, batch.count));
          if (skip > 0) {
            // A resend, or the agent numbering from further back than it ever was stored.
            const same = await resentPrefix(tx, hostId, stream, base + batch.firstSeq, skip, batch, offsets);
            if (same < skip) {
              // From the first record that differs on, these are new records under numbers
              // already used: keep them, after one marked number where the stream restarts.
              const atSeq = base + acked + 1;
              await tx
                .insert(streamGaps)
                .values({ hostId, stream, fromSeq: atSeq, toSeq: atSeq, reason: streamGapReason.restart });
              restart = { atSeq };
              base = atSeq + 1 - (batch.firstSeq + same);
              acked = batch.firstSeq + same - 1;
              skip = same;
            }
          }
          if (lastSeq <= acked) return { ackedSeq: lastSeq };
          const pieces = skip === 0 ? whole : await toPieces(batch, offsets, skip);
          const storedFrom = batch.firstSeq + skip;
          let gap: AppendResult['gap'];
          if (storedFrom > acked + 1) {
            gap = { fromSeq: base + acked + 1, toSeq: base + storedFrom - 1 };
            await tx.insert(streamGaps).values({ hostId, stream, ...gap });
          }
          if (pieces.length > 0) {
            await tx
              .insert(streamChunks)
              .select(chunkRows(hostId, stream, pieces, sql`${base}::bigint`))
              .prepare('stream_chunks_insert')
              .execute();
          }
          await tx
            .update(streamCursors)
            .set({ ackedSeq: lastSeq, seqBase: base, updatedAt: sql`now()` })
            .where(cursorOf(hostId, stream))
            .prepare('stream_cursor_advance')
            .execute();
          return { ackedSeq: lastSeq, ...(gap && { gap }), ...(restart && { restart }) };
        });
      } catch (err) {
        if (pgErrorCode(err) === sqlState.foreignKeyViolation) throw new KeelError('host.not_found');
        throw err;
      }
    },

    async cursor(hostId, stream) {
      if (!isUuid(hostId)) return 0;
      const [row] = await db
        .select({ ackedSeq: streamCursors.ackedSeq, seqBase: streamCursors.seqBase })
        .from(streamCursors)
        .where(cursorOf(hostId, stream));
      return row ? row.seqBase + row.ackedSeq : 0;
    },

    async cursors(hostId) {
      if (!isUuid(hostId)) return {};
      const rows = await db
        .select({
          stream: streamCursors.stream,
          ackedSeq: streamCursors.ackedSeq,
          seqBase: streamCursors.seqBase,
        })
        .from(streamCursors)
        .where(eq(streamCursors.hostId, hostId));
      return Object.fromEntries(rows.map((r) => [r.stream, r.seqBase + r.ackedSeq]));
    },

    async read(hostId, stream, afterSeq, limit) {
      if (!isUuid(hostId)) return { records: [], gaps: [] };
      const after = Math.max(0, Math.floor(afterSeq));
      const want = Math.max(0, Math.floor(limit));
      const records: StoredRecord[] = [];
      const ofStream = and(eq(streamChunks.hostId, hostId), eq(streamChunks.stream, stream));
      // The chunk holding after+1 may start before it: find its first_seq through the primary key.
      const [holder] = await db
        .select({ firstSeq: max(streamChunks.firstSeq) })
        .from(streamChunks)
        .where(and(ofStream, lte(streamChunks.firstSeq, after + 1)));
      let from = holder?.firstSeq ?? 0;
      let reachedEnd = false;
      // A page by binary COPY when its statement can be written from checked values.
      const key = copier && Number.isSafeInteger(after) ? chunkKey(hostId, stream) : null;
      while (records.length < want) {
        const chunks =
          copier && key && Number.isSafeInteger(from)
            ? await copier(`${key} and first_seq >= ${from} and last_seq > ${after}`, READ_PAGE_CHUNKS)
            : await db
                .select(chunkRowColumns)
                .from(streamChunks)
                .where(
                  and(ofStream, sql`${streamChunks.firstSeq} >= ${from}`, gt(streamChunks.lastSeq, after)),
                )
                .orderBy(asc(streamChunks.firstSeq))
                .limit(READ_PAGE_CHUNKS);
        for (const chunk of chunks) {
          const decoded = decodeRecords(await decodeChunk(chunk.codec, chunk.data), chunk.count);
          for (let i = 0; i < decoded.length && records.length < want; i++) {
            const seq = chunk.firstSeq + i;
            if (seq <= after) continue;
            const r = decoded[i]!;
            records.push({
              seq,
              ts: r.ts,
              payload: Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength),
            });
          }
          if (records.length >= want) break;
        }
        if (chunks.length < READ_PAGE_CHUNKS) {
          reachedEnd = records.length < want || chunks.length === 0;
          break;
        }
        from = chunks[chunks.length - 1]!.firstSeq + 1;
      }
      const lastReturned = records.at(-1)?.seq;
      const gapRows = await db
        .select({
          fromSeq: streamGaps.fromSeq,
          toSeq: streamGaps.toSeq,
          reason: streamGaps.reason,
          at: streamGaps.recordedAt,
        })
        .from(streamGaps)
        .where(
          and(
            eq(streamGaps.hostId, hostId),
            eq(streamGaps.stream, stream),
            gt(streamGaps.toSeq, after),
            reachedEnd || lastReturned === undefined ? undefined : lte(streamGaps.fromSeq, lastReturned),
          ),
        )
        .orderBy(asc(streamGaps.fromSeq));
      return { records, gaps: gapRows };
    },
  };
}
