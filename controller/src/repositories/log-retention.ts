// Storage side of per-process log retention: the limits per process, chunk summaries (lines and
// bytes per process in each chunk of a host's `logs` stream), and the two ways a chunk gives up
// lines — deleted whole when every line in it expired, or rewritten with the expired records
// replaced by empty tombstones (so the records keep their sequence numbers and the stream's reads,
// resends and gaps stay exact) when only some did. The summary pass also writes each chunk's gram
// filter (log-grams.ts), the search's skip index; a rewrite keeps it (tombstones only remove grams,
// so the filter still holds every gram of the lines left).
import { and, asc, desc, eq, gt, inArray, isNull, or, sql } from 'drizzle-orm';
import { decodeLogLine, decodeRecords, encodeRecords } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { logChunkSummaries, processLogRetention, type ChunkSummary } from '../db/schema/log-retention.ts';
import { streamChunks } from '../db/schema/streams.ts';
import { postgresClient } from './chunk-copy.ts';
import { decodeChunk, encodeChunk } from './chunk-codec.ts';
import { buildGramFilter } from './log-grams.ts';
import { LOGS_STREAM } from './processes.ts';

/** A process's limits (null: the default). */
export interface RetentionLimits {
  maxAgeDays: number | null;
  maxBytes: number | null;
}

/** One chunk's summary, newest chunks first when listed. */
export interface SummaryRow {
  firstSeq: number;
  tsFirst: number;
  tsLast: number;
  summary: ChunkSummary;
}

/** A chunk's summary row (the join of the two tables; the search reads it too). */
export const summaryOfChunk = and(
  eq(logChunkSummaries.hostId, streamChunks.hostId),
  eq(logChunkSummaries.firstSeq, streamChunks.firstSeq),
);

const ofLogs = (hostId: string) => and(eq(streamChunks.hostId, hostId), eq(streamChunks.stream, LOGS_STREAM));

/**
 * Lines and bytes per process of a decoded chunk body, walked in place (no object per record: the
 * summary pass reads every stored line once); a process name is decoded when it differs from the
 * record before's. Same result as decoding each record: a tombstone or malformed record is skipped.
 */
export function summarise(raw: Buffer, count: number): ChunkSummary {
  const out: ChunkSummary = {};
  let nameAt = -1;
  let nameLength = -1;
  let current: [number, number, number] | null = null;
  for (let off = 0, k = 0; k < count && off + 12 <= raw.length; k++) {
    const p = off + 12;
    const end = p + raw.readUInt32BE(off);
    if (end > raw.length) break;
    const ts = raw.readDoubleBE(off + 4);
    off = end;
    if (end - p < 2) continue; // a tombstone
    const n = raw[p + 1]!;
    if (end - p < 2 + n) continue; // malformed
    let same = current !== null && n === nameLength;
    for (let i = 0; same && i < n; i++) same = raw[nameAt + i] === raw[p + 2 + i];
    if (current === null || !same) {
      current = out[raw.toString('utf8', p + 2, p + 2 + n)] ??= [0, 0, 0];
      nameAt = p + 2;
      nameLength = n;
    }
    current[0]++;
    current[1] += end - p - 2 - n;
    current[2] = Math.max(current[2], ts);
  }
  return out;
}

/** Retention storage. */
export function createLogRetentionRepository(db: Db) {
  /** Other controllers may share the database (PostgreSQL): pages of the summary pass are claimed. */
  const shared = postgresClient(db) !== null;

  /** One page of the summary pass (see summariseMissing); `claim`: `q` is the claiming transaction. */
  async function summarisePage(q: Db, hostId: string, limit: number, claim: boolean): Promise<number> {
    const query = q
      .select({
        firstSeq: streamChunks.firstSeq,
        count: streamChunks.count,
        codec: streamChunks.codec,
        data: streamChunks.data,
        summarised: logChunkSummaries.firstSeq,
      })
      .from(streamChunks)
      .leftJoin(logChunkSummaries, summaryOfChunk)
      .where(and(ofLogs(hostId), or(isNull(logChunkSummaries.firstSeq), isNull(streamChunks.grams))))
      .orderBy(asc(streamChunks.firstSeq))
      .limit(limit);
    const rows = await (claim ? query.for('update', { of: streamChunks, skipLocked: true }) : query);
    if (rows.length === 0) return 0;
    // One chunk decoded at a time: a page of 100 holds at most one decoded body.
    const done: { firstSeq: number; summary: ChunkSummary | null; grams: Buffer }[] = [];
    for (const r of rows) {
      const raw = await decodeChunk(r.codec, r.data);
      done.push({
        firstSeq: r.firstSeq,
        summary: r.summarised === null ? summarise(raw, r.count) : null,
        grams: buildGramFilter(raw, r.count),
      });
    }
    const write = async (tx: Db) => {
      const summaries = done.filter((d) => d.summary !== null);
      if (summaries.length > 0) {
        await tx
          .insert(logChunkSummaries)
          .values(summaries.map((d) => ({ hostId, firstSeq: d.firstSeq, summary: d.summary! })))
          .onConflictDoNothing();
      }
      // One statement for the page's filters.
      await tx.execute(sql`update ${streamChunks} set "grams" = "v"."grams"
        from (values ${sql.join(
          done.map((d) => sql`(${d.firstSeq}::bigint, ${d.grams}::bytea)`),
          sql`, `,
        )}) as "v"("first_seq", "grams")
        where ${streamChunks.hostId} = ${hostId} and ${streamChunks.stream} = ${LOGS_STREAM}
          and ${streamChunks.firstSeq} = "v"."first_seq"`);
    };
    if (claim) await write(q);
    else await q.transaction(write);
    return rows.length;
  }

  return {
    async limits(hostId: string): Promise<Map<string, RetentionLimits>> {
      const rows = await db.select().from(processLogRetention).where(eq(processLogRetention.hostId, hostId));
      return new Map(rows.map((r) => [r.process, { maxAgeDays: r.maxAgeDays, maxBytes: r.maxBytes }]));
    },

    async get(hostId: string, process: string): Promise<RetentionLimits | null> {
      const [row] = await db
        .select()
        .from(processLogRetention)
        .where(and(eq(processLogRetention.hostId, hostId), eq(processLogRetention.process, process)));
      return row ? { maxAgeDays: row.maxAgeDays, maxBytes: row.maxBytes } : null;
    },

    async set(hostId: string, process: string, limits: RetentionLimits): Promise<void> {
      await db
        .insert(processLogRetention)
        .values({ hostId, process, ...limits })
        .onConflictDoUpdate({
          target: [processLogRetention.hostId, processLogRetention.process],
          set: { ...limits, updatedAt: sql`now()` },
        });
    },

    /** Hosts that have stored logs. */
    async hostsWithLogs(): Promise<string[]> {
      const rows = await db
        .selectDistinct({ hostId: streamChunks.hostId })
        .from(streamChunks)
        .where(eq(streamChunks.stream, LOGS_STREAM));
      return rows.map((r) => r.hostId);
    },

    /**
     * Summarises up to `limit` chunks of the host that have no summary or no gram filter yet (the
     * search's skip index, log-grams.ts; chunks stored before it have a summary but none), and
     * writes both; returns how many.
     *
     * Replicas sharing PostgreSQL each run the retention job: there a page's chunks are claimed
     * (`FOR UPDATE SKIP LOCKED`) in the transaction that writes their summaries, so replicas split
     * a backlog between them instead of each doing all of it. PGlite is one process's alone: no
     * claim, and no transaction held while the filters are built (its one connection would make
     * every other query wait).
     */
    async summariseMissing(hostId: string, limit: number): Promise<number> {
      if (shared) return db.transaction((tx) => summarisePage(tx, hostId, limit, true));
      return summarisePage(db, hostId, limit, false);
    },

    /** Every summarised chunk of the host, newest first (small rows: a few numbers per process). */
    async summaries(hostId: string): Promise<SummaryRow[]> {
      const rows = await db
        .select({
          firstSeq: streamChunks.firstSeq,
          tsFirst: streamChunks.tsFirst,
          tsLast: streamChunks.tsLast,
          summary: logChunkSummaries.summary,
        })
        .from(streamChunks)
        .innerJoin(logChunkSummaries, summaryOfChunk)
        .where(ofLogs(hostId))
        .orderBy(desc(streamChunks.firstSeq));
      return rows.map((r) => ({
        firstSeq: r.firstSeq,
        tsFirst: r.tsFirst.getTime(),
        tsLast: r.tsLast.getTime(),
        summary: r.summary,
      }));
    },

    /** Deletes whole chunks (and their summaries). */
    async deleteChunks(hostId: string, firstSeqs: readonly number[]): Promise<number> {
      if (firstSeqs.length === 0) return 0;
      return db.transaction(async (tx) => {
        const gone = await tx
          .delete(streamChunks)
          .where(and(ofLogs(hostId), inArray(streamChunks.firstSeq, [...firstSeqs])))
          .returning({ firstSeq: streamChunks.firstSeq });
        await tx
          .delete(logChunkSummaries)
          .where(
            and(eq(logChunkSummaries.hostId, hostId), inArray(logChunkSummaries.firstSeq, [...firstSeqs])),
          );
        return gone.length;
      });
    },

    /**
     * Rewrites one chunk with the records `expired(process, ts)` says are gone replaced by empty
     * tombstones (same count, same sequence numbers), and its summary. Returns the records removed.
     */
    async rewriteChunk(
      hostId: string,
      firstSeq: number,
      expired: (process: string, ts: number) => boolean,
    ): Promise<number> {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .select({ count: streamChunks.count, codec: streamChunks.codec, data: streamChunks.data })
          .from(streamChunks)
          .where(and(ofLogs(hostId), eq(streamChunks.firstSeq, firstSeq)))
          .for('update');
        if (!row) return 0;
        const records = decodeRecords(await decodeChunk(row.codec, row.data), row.count);
        let removed = 0;
        const kept = records.map((r) => {
          const line = decodeLogLine(r.payload);
          if (line && expired(line.process, r.ts)) {
            removed++;
            return { ts: r.ts, payload: new Uint8Array(0) };
          }
          return r;
        });
        if (removed === 0) return 0;
        const raw = encodeRecords(kept);
        // Rewritten in the codec of new chunks (an old deflate chunk becomes an LZ4 one).
        const { codec, data } = await encodeChunk(raw);
        await tx
          .update(streamChunks)
          .set({ codec, data })
          .where(and(ofLogs(hostId), eq(streamChunks.firstSeq, firstSeq)));
        await tx
          .update(logChunkSummaries)
          .set({ summary: summarise(raw, kept.length) })
          .where(and(eq(logChunkSummaries.hostId, hostId), eq(logChunkSummaries.firstSeq, firstSeq)));
        return removed;
      });
    },

    /** Chunks of the host after `afterSeq` (tests). */
    async chunkCount(hostId: string, afterSeq = -1): Promise<number> {
      const [row] = await db
        .select({ n: sql<number>`count(*)::int` })
        .from(streamChunks)
        .where(and(ofLogs(hostId), gt(streamChunks.firstSeq, afterSeq)));
      return row?.n ?? 0;
    },
  };
}

export type LogRetentionRepository = ReturnType<typeof createLogRetentionRepository>;
