// Reads of the `logs` stream for search: a host's chunks whose time range meets [since, until),
// oldest first, page by page (keyset on first_seq through the primary key), either as stored (codec
// and bytes: the regex search decodes them in its workers) or each decoded into its record body by
// chunk-codec.ts (LZ4, or deflate for chunks written before it), in encodeRecords' format: the
// caller walks it in place, no object per record. On PostgreSQL a page is one binary COPY (bytea as
// its bytes, not hex text; readCopy says how it keeps postgres.js's connections usable). For one
// process, chunks the retention job's summaries show without it are skipped, and for a search that
// requires literals, chunks whose gram filter shows they cannot hold them (log-grams.ts) are
// skipped inside the database, without being read.
// Search reads whole blocks, never a row per line (DESIGN.md, Storage).
import { and, asc, eq, gt, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { Readable } from 'node:stream';
import type { Sql } from 'postgres';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import { logChunkSummaries } from '../db/schema/log-retention.ts';
import { streamChunks } from '../db/schema/streams.ts';
import { decodeChunk } from './chunk-codec.ts';
import { gramFilterSql, type LiteralRequirement } from './log-grams.ts';
import { CHUNK_MAX_RAW_BYTES } from './streams.ts';
import { LOGS_STREAM } from './processes.ts';

/** One stored chunk of the logs stream: `count` records from `firstSeq`, encoded back to back. */
export interface LogChunk {
  firstSeq: number;
  count: number;
  body: Buffer;
}

/** Chunks fetched per query (chunks hold at most 256 KiB of records: ~8 MiB a page). */
const PAGE_CHUNKS = 32;
/** Chunk numbers listed per query (first_seq only) when no candidate list was made. */
const LIST_CHUNKS = 256;
/** Pages fetched at once on PostgreSQL, each on its own pooled connection. */
const PAGES_AHEAD = 2;
/** Decode output per step for a deflate chunk: a whole chunk at once. */
const INFLATE_CHUNK_BYTES = CHUNK_MAX_RAW_BYTES + 64 * 1024;

/** A stored chunk of the logs stream as read: its numbering, codec (chunk-codec.ts) and bytes. */
export interface StoredLogChunk {
  firstSeq: number;
  count: number;
  codec: number;
  data: Buffer;
}
type ChunkRow = StoredLogChunk;

/** Which chunks a search reads: a time range, one process, literals its lines require. */
export interface ChunkRange {
  since?: number;
  until?: number;
  process?: string;
  required?: LiteralRequirement;
}

/** The postgres.js client under a drizzle handle, or null (PGlite). */
function postgresClient(db: Db): Sql | null {
  const client = (db as unknown as { $client?: unknown }).$client;
  return typeof client === 'function' && typeof (client as Sql).unsafe === 'function'
    ? (client as Sql)
    : null;
}

/** What this file uses of a PGlite instance: `COPY … TO '/dev/blob'` answers with the output as a Blob. */
interface PgliteCopy {
  query(text: string): Promise<{ blob?: Blob }>;
}

/** The PGlite instance under a drizzle handle, or null (postgres.js). */
function pgliteClient(db: Db): PgliteCopy | null {
  const client = (db as unknown as { $client?: unknown }).$client;
  // postgres.js's client is a function; PGlite's an object.
  return typeof client === 'object' && client !== null && typeof (client as PgliteCopy).query === 'function'
    ? (client as PgliteCopy)
    : null;
}

/** The page's COPY statement (only checked values are written into it: COPY takes no parameters). */
function copyStatement(hostId: string, seqs: number[], to: string): string {
  if (!isUuid(hostId) || !seqs.every((s) => Number.isSafeInteger(s))) {
    throw new Error('log search: unexpected chunk key');
  }
  return (
    `copy (select first_seq, count, codec, data from stream_chunks where host_id = '${hostId}'` +
    ` and stream = '${LOGS_STREAM}' and first_seq = any('{${seqs.join(',')}}'::bigint[])` +
    ` order by first_seq) to ${to} with (format binary)`
  );
}

/**
 * A page's rows on PGlite through a binary COPY into PGlite's `/dev/blob`: the bytes as stored,
 * copied out of its memory, where a query's result carries `bytea` as hex text that is decoded in
 * JavaScript (1 GiB of logs, 373 MiB of chunks: 35.5 s by query against ~2 s, 2 Dec).
 */
async function pgliteCopyRows(client: PgliteCopy, hostId: string, seqs: number[]): Promise<ChunkRow[]> {
  const { blob } = await client.query(copyStatement(hostId, seqs, "'/dev/blob'"));
  if (!blob) throw new Error('log search: the embedded database gave no COPY output');
  return parseCopyRows(Buffer.from(await blob.arrayBuffer()));
}

/**
 * A page's rows through a binary COPY: `bytea` comes as its bytes, where a query's result carries
 * it as hex text (twice the bytes on the connection, encoded by the server and decoded here).
 * COPY takes no parameters, so only values checked here are written into it: the host id (a
 * UUID) and the chunks' numbers (safe integers, from the database).
 */
async function copyRows(client: Sql, hostId: string, seqs: number[]): Promise<ChunkRow[]> {
  return parseCopyRows(await readCopy(client, copyStatement(hostId, seqs, 'stdout')));
}

/**
 * The whole output of `COPY … TO STDOUT` (`text`: a statement of this file's own, never user
 * input), read on a reserved connection that is released only once the COPY has ended and the
 * connection reads again. Two ways postgres.js 3.4 leaves a connection stuck, both avoided here:
 * - a connection whose COPY output is still streaming counts as free once the query has handed
 *   over its stream (a query sent on it fails: COPY_IN_PROGRESS): so the connection is reserved,
 *   and the output is always read to its end, also when the search stopped meanwhile;
 * - it pauses the socket when a chunk of output fills the stream's buffer (16 KiB) and resumes it
 *   only from the stream's read(), which a stream never calls after its end: when the last output
 *   arrives in the same read as the end — a COPY small enough for one read, or the tail of any —
 *   and the stream is not flowing yet (it is handed over a promise later), the socket stays paused
 *   and the connection never answers again. So after the end the socket is resumed through that
 *   same read() (it resumes the socket and nothing else).
 */
export async function readCopy(client: Sql, text: string): Promise<Buffer[]> {
  const connection = await client.reserve();
  try {
    const stream = await connection.unsafe(text).readable();
    const out = await readParts(stream);
    try {
      (stream as Readable & { _read(size: number): void })._read(0);
    } catch {
      // The connection closed meanwhile: nothing to resume.
    }
    return out;
  } finally {
    connection.release();
  }
}

/**
 * A stream's output as the parts it came in (for a COPY, one part per row: views of what the
 * driver read, not copied), read in flowing mode.
 */
export function readParts(stream: Readable): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (part: Buffer) => parts.push(part));
    stream.once('end', () => resolve(parts));
    stream.once('error', reject);
  });
}

/** A stream's whole output in one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  return Buffer.concat(await readParts(stream));
}

/**
 * Parses PostgreSQL's binary COPY output of (first_seq bigint, count integer, codec smallint,
 * data bytea) rows, given whole or in the parts it arrived in. Each data is a view into a part
 * (no copy; PostgreSQL sends a row per message, so only a row split across parts is joined).
 */
export function parseCopyRows(input: Buffer | Buffer[]): ChunkRow[] {
  const parts = Array.isArray(input) ? input : [input];
  const rows: ChunkRow[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let at = 0;
  let header = false;
  const fixed = (offset: number, size: number) => {
    if (buf.readInt32BE(offset) !== size) throw new Error('unexpected COPY field');
  };
  for (const part of parts) {
    buf = at < buf.length ? Buffer.concat([buf.subarray(at), part]) : part;
    at = 0;
    for (;;) {
      if (!header) {
        // Signature (11 bytes), flags (4), header extension length (4) and the extension.
        if (buf.length - at < 19) break;
        if (buf.toString('latin1', at, at + 6) !== 'PGCOPY') throw new Error('not a binary COPY');
        const end = at + 19 + buf.readUInt32BE(at + 15);
        if (end > buf.length) break;
        at = end;
        header = true;
        continue;
      }
      if (buf.length - at < 2) break;
      const fields = buf.readInt16BE(at);
      if (fields === -1) return rows;
      if (fields !== 4) throw new Error('unexpected COPY row');
      // first_seq (4 + 8), count (4 + 4), codec (4 + 2), data's length (4).
      if (buf.length - at < 32) break;
      fixed(at + 2, 8);
      fixed(at + 14, 4);
      fixed(at + 22, 2);
      const length = buf.readInt32BE(at + 28);
      if (length < 0) throw new Error('unexpected COPY field');
      if (at + 32 + length > buf.length) break;
      rows.push({
        firstSeq: Number(buf.readBigInt64BE(at + 6)),
        count: buf.readInt32BE(at + 18),
        codec: buf.readInt16BE(at + 26),
        data: buf.subarray(at + 32, at + 32 + length),
      });
      at += 32 + length;
    }
  }
  if (!header) throw new Error('not a binary COPY');
  throw new Error('unexpected COPY field: the output ends inside a row');
}

/** Log chunk reads for search. */
export function createLogSearchRepository(db: Db, options: { copy?: boolean } = {}) {
  // Pages are read by a binary COPY (the bytes as stored, not bytea's hex text): on PostgreSQL
  // through readCopy, on PGlite into its /dev/blob; `copy: false` reads them by query (tests and
  // the bench compare the two).
  const copyClient = options.copy === false ? null : postgresClient(db);
  const blobClient = options.copy === false ? null : pgliteClient(db);
  /** The pages of chunks in range, each turned into what `convert` makes of its rows as it is fetched. */
  async function* pagesOf<T>(
    hostId: string,
    range: ChunkRange,
    convert: (rows: StoredLogChunk[]) => Promise<T[]> | T[],
  ): AsyncGenerator<T[]> {
    const gramFilter = range.required ? gramFilterSql(streamChunks.grams, range.required) : undefined;
    const where = (after: number, more?: SQL) =>
      and(
        eq(streamChunks.hostId, hostId),
        // One process: skip chunks whose summary (written by the retention job) says it has
        // no line there; chunks not summarised yet are read.
        range.process === undefined
          ? undefined
          : sql`(${logChunkSummaries.summary} is null or jsonb_exists(${logChunkSummaries.summary}, ${range.process}))`,
        eq(streamChunks.stream, LOGS_STREAM),
        gt(streamChunks.firstSeq, after),
        more,
        range.since === undefined ? undefined : gte(streamChunks.tsLast, new Date(range.since)),
        range.until === undefined ? undefined : lt(streamChunks.tsFirst, new Date(range.until)),
      );
    const withSummaries = and(
      eq(logChunkSummaries.hostId, streamChunks.hostId),
      eq(logChunkSummaries.firstSeq, streamChunks.firstSeq),
    );
    // With a gram filter, the chunks that pass it are listed first, in one query: each chunk's
    // probes run once (a page query with the filter could probe the chunks after the page
    // again for every page, when the planner sorts before it limits). Then pages read those.
    const candidates = gramFilter
      ? (
          await db
            .select({ firstSeq: streamChunks.firstSeq })
            .from(streamChunks)
            .leftJoin(logChunkSummaries, withSummaries)
            .where(where(-1, gramFilter))
            .orderBy(asc(streamChunks.firstSeq))
        ).map((r) => r.firstSeq)
      : null;
    // Which chunks, in order: the candidates, or the chunks in range listed LIST_CHUNKS at a time
    // (first_seq only: the index answers it), so that the data of several pages can be fetched
    // at once.
    let listed: number[] = candidates ?? [];
    let listedAt = 0;
    let listedAll = candidates !== null;
    let listAfter = -1;
    const nextPageSeqs = async (): Promise<number[]> => {
      if (listed.length - listedAt < PAGE_CHUNKS && !listedAll) {
        const rows = await db
          .select({ firstSeq: streamChunks.firstSeq })
          .from(streamChunks)
          .leftJoin(logChunkSummaries, withSummaries)
          .where(where(listAfter))
          .orderBy(asc(streamChunks.firstSeq))
          .limit(LIST_CHUNKS);
        listed = listed.slice(listedAt).concat(rows.map((r) => r.firstSeq));
        listedAt = 0;
        listedAll = rows.length < LIST_CHUNKS;
        listAfter = rows.at(-1)?.firstSeq ?? listAfter;
      }
      const page = listed.slice(listedAt, listedAt + PAGE_CHUNKS);
      listedAt += page.length;
      return page;
    };
    // One page: its rows (on PostgreSQL a binary COPY: the bytes as stored, not bytea's hex text).
    // A chunk deleted meanwhile is simply not there.
    const fetchPage = async (seqs: number[]): Promise<T[]> => {
      if (seqs.length === 0) return [];
      if (copyClient) return convert(await copyRows(copyClient, hostId, seqs));
      if (blobClient) return convert(await pgliteCopyRows(blobClient, hostId, seqs));
      const rows = await db
        .select({
          firstSeq: streamChunks.firstSeq,
          count: streamChunks.count,
          codec: streamChunks.codec,
          data: streamChunks.data,
        })
        .from(streamChunks)
        .where(
          and(
            eq(streamChunks.hostId, hostId),
            eq(streamChunks.stream, LOGS_STREAM),
            inArray(streamChunks.firstSeq, seqs),
          ),
        )
        .orderBy(asc(streamChunks.firstSeq));
      return convert(rows);
    };
    // Pages are fetched ahead while the caller scans: on PostgreSQL PAGES_AHEAD at once (each on
    // its own pooled connection), on PGlite (one connection) one. Listing is sequential (each
    // list goes on after the last); the fetches overlap. Yielded in order.
    const ahead = copyClient ? PAGES_AHEAD : 1;
    const queue: Promise<T[] | null>[] = [];
    let listing: Promise<unknown> = Promise.resolve();
    const schedule = () => {
      const seqs = listing.then(nextPageSeqs);
      listing = seqs.catch(() => {});
      const page = seqs.then((s) => (s.length === 0 ? null : fetchPage(s)));
      // Awaited in order; a caller that stops first must not leave one unhandled.
      page.catch(() => {});
      queue.push(page);
    };
    for (;;) {
      while (queue.length < ahead) schedule();
      const page = await queue.shift()!;
      // null: nothing more listed. An empty page: its chunks were deleted meanwhile.
      if (page === null) return;
      if (page.length > 0) yield page;
    }
  }
  return {
    /**
     * The host's logs chunks meeting [since, until), a page of chunks at a time, as stored (codec
     * and data, not decoded: the regex search decodes in its workers). Stops when returned.
     */
    storedPages: (hostId: string, range: ChunkRange) =>
      pagesOf(hostId, range, (rows): StoredLogChunk[] => rows),
    /**
     * The same pages with each chunk decoded into its record body (in parallel, on libuv's thread
     * pool, as the page is fetched); the caller filters records by their own time.
     */
    pages: (hostId: string, range: ChunkRange): AsyncGenerator<LogChunk[]> =>
      pagesOf(hostId, range, (rows) =>
        Promise.all(
          rows.map(async (row) => ({
            firstSeq: row.firstSeq,
            count: row.count,
            body: await decodeChunk(row.codec, row.data, INFLATE_CHUNK_BYTES),
          })),
        ),
      ),
  };
}

export type LogSearchRepository = ReturnType<typeof createLogSearchRepository>;
