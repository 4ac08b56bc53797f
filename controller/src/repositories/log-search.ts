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
import type { Db } from '../db/index.ts';
import { logChunkSummaries } from '../db/schema/log-retention.ts';
import { streamChunks } from '../db/schema/streams.ts';
import { decodeChunk } from './chunk-codec.ts';
import { chunkCopier, chunkKey, chunkRowColumns, postgresClient, type ChunkRow } from './chunk-copy.ts';
import { gramFilterSql, type LiteralRequirement } from './log-grams.ts';
import { summaryOfChunk } from './log-retention.ts';
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
export type StoredLogChunk = ChunkRow;

/** Which chunks a search reads: a time range, one process, literals its lines require. */
export interface ChunkRange {
  since?: number;
  until?: number;
  process?: string;
  required?: LiteralRequirement;
}

/** Log chunk reads for search. */
export function createLogSearchRepository(db: Db, options: { copy?: boolean } = {}) {
  // Pages are read by a binary COPY (the bytes as stored, not bytea's hex text): on PostgreSQL
  // through readCopy, on PGlite into its /dev/blob; `copy: false` reads them by query (tests and
  // the bench compare the two).
  const copier = options.copy === false ? null : chunkCopier(db);
  // PostgreSQL has a pool: several pages can be fetched at once.
  const pooled = postgresClient(db) !== null;
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
    // With a gram filter, the chunks that pass it are listed first, in one query: each chunk's
    // probes run once (a page query with the filter could probe the chunks after the page
    // again for every page, when the planner sorts before it limits). Then pages read those.
    const candidates = gramFilter
      ? (
          await db
            .select({ firstSeq: streamChunks.firstSeq })
            .from(streamChunks)
            .leftJoin(logChunkSummaries, summaryOfChunk)
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
          .leftJoin(logChunkSummaries, summaryOfChunk)
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
      const key = copier && seqs.every((n) => Number.isSafeInteger(n)) ? chunkKey(hostId, LOGS_STREAM) : null;
      if (copier && key)
        return convert(await copier(`${key} and first_seq = any('{${seqs.join(',')}}'::bigint[])`));
      const rows = await db
        .select(chunkRowColumns)
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
    const ahead = pooled ? PAGES_AHEAD : 1;
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
