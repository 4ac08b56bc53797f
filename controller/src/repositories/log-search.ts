// Reads of the `logs` stream for search: a host's chunks whose time range meets [since, until),
// oldest first, page by page (keyset on first_seq through the primary key), decoded into records;
// for one process, chunks the retention job's summaries show without it are skipped.
// Search reads whole blocks, never a row per line (DESIGN.md, Storage).
import { and, asc, eq, gt, gte, lt, sql } from 'drizzle-orm';
import { inflateRawSync } from 'node:zlib';
import { decodeRecords } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { logChunkSummaries } from '../db/schema/log-retention.ts';
import { chunkCodec, streamChunks } from '../db/schema/streams.ts';
import { LOGS_STREAM } from './processes.ts';

/** One stored record of the logs stream. */
export interface LogRecord {
  seq: number;
  ts: number;
  payload: Buffer;
}

/** Chunks fetched per query. */
const PAGE_CHUNKS = 8;

/** Log chunk reads for search. */
export function createLogSearchRepository(db: Db) {
  return {
    /**
     * The host's logs records in chunks meeting [since, until), a page of chunks at a time (the
     * caller filters records by their own time). Stops when the generator is returned.
     */
    async *pages(
      hostId: string,
      range: { since?: number; until?: number; process?: string },
    ): AsyncGenerator<LogRecord[]> {
      let after = -1;
      for (;;) {
        const rows = await db
          .select({
            firstSeq: streamChunks.firstSeq,
            count: streamChunks.count,
            codec: streamChunks.codec,
            data: streamChunks.data,
          })
          .from(streamChunks)
          .leftJoin(
            logChunkSummaries,
            and(
              eq(logChunkSummaries.hostId, streamChunks.hostId),
              eq(logChunkSummaries.firstSeq, streamChunks.firstSeq),
            ),
          )
          .where(
            and(
              eq(streamChunks.hostId, hostId),
              // One process: skip chunks whose summary (written by the retention job) says it has
              // no line there; chunks not summarised yet are read.
              range.process === undefined
                ? undefined
                : sql`(${logChunkSummaries.summary} is null or jsonb_exists(${logChunkSummaries.summary}, ${range.process}))`,
              eq(streamChunks.stream, LOGS_STREAM),
              gt(streamChunks.firstSeq, after),
              range.since === undefined ? undefined : gte(streamChunks.tsLast, new Date(range.since)),
              range.until === undefined ? undefined : lt(streamChunks.tsFirst, new Date(range.until)),
            ),
          )
          .orderBy(asc(streamChunks.firstSeq))
          .limit(PAGE_CHUNKS);
        if (rows.length === 0) return;
        const records: LogRecord[] = [];
        for (const row of rows) {
          const raw = row.codec === chunkCodec.deflateRaw ? inflateRawSync(row.data) : row.data;
          decodeRecords(raw, row.count).forEach((r, i) => {
            records.push({
              seq: row.firstSeq + i,
              ts: r.ts,
              payload: Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength),
            });
          });
        }
        yield records;
        if (rows.length < PAGE_CHUNKS) return;
        after = rows[rows.length - 1]!.firstSeq;
      }
    },
  };
}

export type LogSearchRepository = ReturnType<typeof createLogSearchRepository>;
