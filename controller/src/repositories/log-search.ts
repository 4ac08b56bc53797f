// Reads of the `logs` stream for search: a host's chunks whose time range meets [since, until),
// oldest first, page by page (keyset on first_seq through the primary key), each chunk decoded into
// its record body by chunk-codec.ts (LZ4, or deflate for chunks written before it), in
// encodeRecords' format: the caller walks it in place, no object per record. For one process, chunks the retention job's summaries show without it are skipped, and for a search
// that requires literals, chunks whose gram filter shows they cannot hold them (log-grams.ts) are
// skipped inside the database, without being read.
// Search reads whole blocks, never a row per line (DESIGN.md, Storage).
import { and, asc, eq, gt, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
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
/** Decode output per step for a deflate chunk: a whole chunk at once. */
const INFLATE_CHUNK_BYTES = CHUNK_MAX_RAW_BYTES + 64 * 1024;

/** Log chunk reads for search. */
export function createLogSearchRepository(db: Db) {
  return {
    /**
     * The host's logs chunks meeting [since, until), a page of chunks at a time (the caller
     * filters records by their own time). Stops when the generator is returned.
     */
    async *pages(
      hostId: string,
      range: { since?: number; until?: number; process?: string; required?: LiteralRequirement },
    ): AsyncGenerator<LogChunk[]> {
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
      let nextCandidate = 0;
      // One page: its rows, then its chunks decoded (in parallel, on libuv's thread pool).
      const fetchPage = async (after: number) => {
        let rows: { firstSeq: number; count: number; codec: number; data: Buffer }[];
        let full: boolean;
        /** Where the next page starts after (a candidate deleted meanwhile must not end the scan). */
        let last: number;
        const columns = {
          firstSeq: streamChunks.firstSeq,
          count: streamChunks.count,
          codec: streamChunks.codec,
          data: streamChunks.data,
        };
        if (candidates) {
          while (nextCandidate < candidates.length && candidates[nextCandidate]! <= after) nextCandidate++;
          const page = candidates.slice(nextCandidate, nextCandidate + PAGE_CHUNKS);
          full = nextCandidate + PAGE_CHUNKS < candidates.length;
          last = page.at(-1) ?? after;
          rows =
            page.length === 0
              ? []
              : await db
                  .select(columns)
                  .from(streamChunks)
                  .where(
                    and(
                      eq(streamChunks.hostId, hostId),
                      eq(streamChunks.stream, LOGS_STREAM),
                      inArray(streamChunks.firstSeq, page),
                    ),
                  )
                  .orderBy(asc(streamChunks.firstSeq));
        } else {
          rows = await db
            .select(columns)
            .from(streamChunks)
            .leftJoin(logChunkSummaries, withSummaries)
            .where(where(after))
            .orderBy(asc(streamChunks.firstSeq))
            .limit(PAGE_CHUNKS);
          full = rows.length === PAGE_CHUNKS;
          last = rows.at(-1)?.firstSeq ?? after;
        }
        const chunks = await Promise.all(
          rows.map(async (row) => ({
            firstSeq: row.firstSeq,
            count: row.count,
            body: await decodeChunk(row.codec, row.data, INFLATE_CHUNK_BYTES),
          })),
        );
        return { chunks, full, last };
      };
      // The next page is fetched and decoded while the caller scans this one.
      let next: ReturnType<typeof fetchPage> | null = fetchPage(-1);
      while (next) {
        const page: Awaited<ReturnType<typeof fetchPage>> = await next;
        next = null;
        if (page.chunks.length === 0 && !page.full) return;
        if (page.full) {
          next = fetchPage(page.last);
          // Awaited on the next turn; a caller that stops first must not leave it unhandled.
          next.catch(() => {});
        }
        yield page.chunks;
      }
    },
  };
}

export type LogSearchRepository = ReturnType<typeof createLogSearchRepository>;
