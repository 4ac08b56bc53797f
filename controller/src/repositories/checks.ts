// Service checks at rest: definitions, the generation pushed to agents, results of the `checks`
// stream (one row per run; a resent result is a no-op, a result for a check deleted meanwhile is
// dropped), and the aggregates the console shows (last result per host, uptime over 24 h / 7 d /
// 30 d, a latency sparkline) and alert rules read.
import { and, desc, eq, gte, lt, sql } from 'drizzle-orm';
import { checkResultSchema, decodeRecords, KeelError, type RecordBatch } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid, pgErrorCode } from '../db/errors.ts';
import { checkResults, checks, type CheckResultRow, type CheckRow } from '../db/schema/checks.ts';
import { streamCursors, streamGaps } from '../db/schema/streams.ts';

export type { CheckResultRow, CheckRow };

/** What a check definition holds (create/update input). */
export type CheckInput = Pick<
  CheckRow,
  'name' | 'kind' | 'target' | 'hostIds' | 'intervalSeconds' | 'timeoutMs' | 'enabled'
>;

/** The newest result of a check on one host. */
export interface LatestResult {
  checkId: string;
  hostId: string;
  ts: Date;
  ok: boolean;
  latencyMs: number | null;
  status: number | null;
  certExpiresAt: Date | null;
  error: string | null;
}

/** Uptime fractions (0-1, null without results) and result counts per window. */
export interface CheckUptime {
  checkId: string;
  day: number | null;
  week: number | null;
  month: number | null;
}

const rowsOf = (result: unknown): Record<string, unknown>[] =>
  Array.isArray(result)
    ? (result as Record<string, unknown>[])
    : ((result as { rows?: Record<string, unknown>[] }).rows ?? []);
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const date = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(v as string));

export function createChecksRepository(db: Db) {
  return {
    list(): Promise<CheckRow[]> {
      return db.select().from(checks).orderBy(checks.name, checks.id);
    },

    async get(id: string): Promise<CheckRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(checks).where(eq(checks.id, id)).limit(1);
      return row ?? null;
    },

    async create(input: CheckInput): Promise<CheckRow> {
      const [row] = await db.insert(checks).values(input).returning();
      return row!;
    },

    async update(id: string, patch: Partial<CheckInput>): Promise<CheckRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db
        .update(checks)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(checks.id, id))
        .returning();
      return row ?? null;
    },

    async remove(id: string): Promise<CheckRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.delete(checks).where(eq(checks.id, id)).returning();
      return row ?? null;
    },

    /** Takes the next generation of the check set (after a change). */
    async nextGeneration(): Promise<number> {
      const [row] = rowsOf(await db.execute(sql`select nextval('check_generation') as g`));
      return Number(row!.g);
    },

    /** The generation of the check set now. */
    async generation(): Promise<number> {
      const [row] = rowsOf(await db.execute(sql`select last_value as g, is_called from check_generation`));
      return row!.is_called ? Number(row!.g) : 0;
    },

    /** Enabled checks that `hostId` runs. */
    forHost(hostId: string): Promise<CheckRow[]> {
      return db
        .select()
        .from(checks)
        .where(and(eq(checks.enabled, true), sql`${hostId}::uuid = any(${checks.hostIds})`))
        .orderBy(checks.id);
    },

    /**
     * Stores a `checks` batch in one transaction and advances the stream's cursor; records a gap
     * when the batch starts past it. Throws `stream.invalid` on a malformed batch.
     */
    async append(
      hostId: string,
      stream: string,
      batch: RecordBatch,
    ): Promise<{
      ackedSeq: number;
      stored: number;
      rejected: number;
      gap?: { fromSeq: number; toSeq: number };
    }> {
      if (!isUuid(hostId)) throw new KeelError('host.not_found');
      if (!Number.isSafeInteger(batch.firstSeq) || batch.firstSeq < 1 || !Number.isSafeInteger(batch.count)) {
        throw new KeelError('stream.invalid', 'firstSeq must be an integer >= 1.');
      }
      let records;
      try {
        records = decodeRecords(batch.body, batch.count);
      } catch {
        throw new KeelError('stream.invalid', `The body does not hold exactly ${batch.count} records.`);
      }
      const lastSeq = batch.firstSeq + batch.count - 1;
      let rejected = 0;
      const rows: Record<string, unknown>[] = [];
      for (const r of records) {
        try {
          const x = checkResultSchema.parse(JSON.parse(Buffer.from(r.payload).toString('utf8')));
          rows.push({
            check_id: x.checkId,
            ts: new Date(x.t).toISOString(),
            ok: x.ok,
            latency_ms: x.latencyMs,
            status: x.status ?? null,
            cert_expires_at: x.certExpiresAt !== undefined ? new Date(x.certExpiresAt).toISOString() : null,
            error: x.error ?? null,
          });
        } catch {
          rejected++;
        }
      }
      try {
        return await db.transaction(async (tx) => {
          await tx.insert(streamCursors).values({ hostId, stream, ackedSeq: 0 }).onConflictDoNothing();
          const [cursor] = await tx
            .select({ ackedSeq: streamCursors.ackedSeq })
            .from(streamCursors)
            .where(and(eq(streamCursors.hostId, hostId), eq(streamCursors.stream, stream)))
            .for('update');
          const acked = cursor?.ackedSeq ?? 0;
          let gap: { fromSeq: number; toSeq: number } | undefined;
          if (batch.firstSeq > acked + 1) {
            gap = { fromSeq: acked + 1, toSeq: batch.firstSeq - 1 };
            await tx
              .insert(streamGaps)
              .values({ hostId, stream, ...gap })
              .onConflictDoNothing();
          }
          let stored = 0;
          if (rows.length > 0) {
            // One statement; results of checks that no longer exist are dropped by the join.
            const inserted = await tx.execute(sql`
              insert into check_results (check_id, host_id, ts, ok, latency_ms, status, cert_expires_at, error)
              select r.check_id, ${hostId}::uuid, r.ts, r.ok, r.latency_ms, r.status, r.cert_expires_at, r.error
              from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(check_id uuid, ts timestamptz, ok boolean,
                latency_ms real, status integer, cert_expires_at timestamptz, error text)
              join checks c on c.id = r.check_id
              on conflict do nothing
              returning 1`);
            stored = rowsOf(inserted).length;
          }
          await tx
            .update(streamCursors)
            .set({ ackedSeq: sql`greatest(${streamCursors.ackedSeq}, ${lastSeq})`, updatedAt: new Date() })
            .where(and(eq(streamCursors.hostId, hostId), eq(streamCursors.stream, stream)));
          return { ackedSeq: lastSeq, stored, rejected, ...(gap ? { gap } : {}) };
        });
      } catch (err) {
        if (pgErrorCode(err) === '23503') throw new KeelError('host.not_found');
        throw err;
      }
    },

    /** The newest result of every (check, host), optionally of some checks only. */
    async latest(checkIds?: readonly string[]): Promise<LatestResult[]> {
      const filter =
        checkIds === undefined
          ? sql``
          : sql`where check_id = any(${`{${checkIds.filter(isUuid).join(',')}}`}::uuid[])`;
      const result = await db.execute(sql`
        select distinct on (check_id, host_id) check_id, host_id, ts, ok, latency_ms, status, cert_expires_at, error
        from check_results ${filter}
        order by check_id, host_id, ts desc`);
      return rowsOf(result).map((r) => ({
        checkId: String(r.check_id),
        hostId: String(r.host_id),
        ts: date(r.ts)!,
        ok: Boolean(r.ok),
        latencyMs: num(r.latency_ms),
        status: num(r.status),
        certExpiresAt: date(r.cert_expires_at),
        error: (r.error as string | null) ?? null,
      }));
    },

    /** Share of results that were up over the last day, week and 30 days, per check. */
    async uptime(at: Date): Promise<CheckUptime[]> {
      const t = at.getTime();
      const since = (ms: number) => new Date(t - ms).toISOString();
      const result = await db.execute(sql`
        select check_id,
          avg(case when ok then 1.0 else 0.0 end) filter (where ts >= ${since(86_400_000)}::timestamptz) as day,
          avg(case when ok then 1.0 else 0.0 end) filter (where ts >= ${since(7 * 86_400_000)}::timestamptz) as week,
          avg(case when ok then 1.0 else 0.0 end) as month
        from check_results where ts >= ${since(30 * 86_400_000)}::timestamptz and ts <= ${at.toISOString()}::timestamptz
        group by check_id`);
      return rowsOf(result).map((r) => ({
        checkId: String(r.check_id),
        day: num(r.day),
        week: num(r.week),
        month: num(r.month),
      }));
    },

    /** Average latency per bucket over [from, to), per check (for sparklines). */
    async latencyBuckets(from: Date, to: Date, buckets: number): Promise<Map<string, (number | null)[]>> {
      const step = Math.max(1, Math.ceil((to.getTime() - from.getTime()) / buckets));
      const result = await db.execute(sql`
        select check_id, floor((extract(epoch from ts) * 1000 - ${from.getTime()}) / ${step})::int as b,
          avg(latency_ms)::float8 as v
        from check_results where ts >= ${from.toISOString()}::timestamptz and ts < ${to.toISOString()}::timestamptz
        group by 1, 2`);
      const out = new Map<string, (number | null)[]>();
      for (const r of rowsOf(result)) {
        const id = String(r.check_id);
        let list = out.get(id);
        if (!list) out.set(id, (list = Array.from({ length: buckets }, () => null)));
        const b = Number(r.b);
        if (b >= 0 && b < buckets) list[b] = num(r.v);
      }
      return out;
    },

    /** One check's results over [from, to), newest first. */
    history(checkId: string, from: Date, to: Date, limit: number): Promise<CheckResultRow[]> {
      if (!isUuid(checkId)) return Promise.resolve([]);
      return db
        .select()
        .from(checkResults)
        .where(and(eq(checkResults.checkId, checkId), gte(checkResults.ts, from), lt(checkResults.ts, to)))
        .orderBy(desc(checkResults.ts))
        .limit(limit);
    },

    /** Deletes results older than `before`. */
    async prune(before: Date): Promise<void> {
      await db.delete(checkResults).where(lt(checkResults.ts, before));
    },
  };
}

export type ChecksRepository = ReturnType<typeof createChecksRepository>;
