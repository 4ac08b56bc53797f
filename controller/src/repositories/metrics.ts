// Metrics at rest: batches of the `metrics` stream become rows (one per host per tick), roll-ups
// summarize them per minute and per hour (min/avg/max), retention deletes what is older than each
// resolution keeps, and range reads bucket any resolution to a step in SQL so a chart never gets
// more points than it can draw. Series names are interpolated as identifiers only after they were
// checked against `metricSeries` (the API validates them; `columnsOf` checks again).
import { and, eq, sql, type SQL } from 'drizzle-orm';
import {
  decodeRecords,
  KeelError,
  metricSampleSchema,
  metricSeries,
  metricSeriesNames,
  type MetricSeriesName,
  type RecordBatch,
} from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid, pgErrorCode } from '../db/errors.ts';
import { metricSamples, type MetricDetail } from '../db/schema/metrics.ts';
import { streamCursors, streamGaps } from '../db/schema/streams.ts';

/** Where a range is read from. */
export type MetricResolution = 'raw' | '1m' | '1h';

/** The table of each resolution and the step of its rows, ms (raw: the finest tick an agent makes). */
export const resolutions: Record<MetricResolution, { table: string; stepMs: number }> = {
  raw: { table: 'metric_samples', stepMs: 1_000 },
  '1m': { table: 'metric_rollups_1m', stepMs: 60_000 },
  '1h': { table: 'metric_rollups_1h', stepMs: 3_600_000 },
};

/** Rows per INSERT: 1,000 rows x 29 parameters stays far below PostgreSQL's 65,535. */
const INSERT_ROWS = 1_000;

export interface MetricsAppendResult {
  ackedSeq: number;
  /** Ticks stored by this append (resent ones excluded). */
  stored: number;
  /** Records that did not parse as a sample (skipped, acked: they can never become valid). */
  rejected: number;
  /** Set when this append skipped over records the agent lost (its numbers). */
  gap?: { fromSeq: number; toSeq: number };
}

/** Columns a range read returns: x in epoch seconds (uPlot's default), one array per series. */
export interface MetricsColumns {
  x: number[];
  values: (number | null)[][];
}

function columnsOf(series: readonly string[]): MetricSeriesName[] {
  for (const s of series) {
    if (!Object.hasOwn(metricSeries, s))
      throw new KeelError('request.invalid', `Unknown metric series "${s}".`);
  }
  return series as MetricSeriesName[];
}

const ident = (name: string) => sql.raw(`"${name}"`);

export interface MetricsRepository {
  /**
   * Stores a `metrics` batch in one transaction: one row per tick (a tick already stored — a
   * resend — is a no-op), the stream's cursor advanced, and a gap row where the batch starts past
   * the cursor + 1 (ticks the agent numbered and lost). Throws `stream.invalid` on a malformed
   * batch, `host.not_found` for an unknown host.
   */
  append(hostId: string, stream: string, batch: RecordBatch): Promise<MetricsAppendResult>;
  /** Recomputes the roll-up buckets of `level` whose start is in [from, to). Returns rows written. */
  rollup(level: '1m' | '1h', from: Date, to: Date): Promise<number>;
  /** Deletes rows older than each cutoff. Returns rows deleted per resolution. */
  prune(before: Record<MetricResolution, Date>): Promise<Record<MetricResolution, number>>;
  /**
   * Reads one host's series from `resolution` over [from, to), averaged into buckets of `stepMs`
   * aligned to the epoch; buckets without data are absent (uPlot draws a break for a gap only
   * where the caller inserts nulls).
   */
  range(
    hostId: string,
    resolution: MetricResolution,
    from: Date,
    to: Date,
    stepMs: number,
    series: readonly string[],
  ): Promise<MetricsColumns>;
}

/** The number of a stored value (PGlite and postgres.js both return real as number; avg as string on some). */
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function createMetricsRepository(db: Db): MetricsRepository {
  return {
    async append(hostId, stream, batch) {
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
      const rows: (typeof metricSamples.$inferInsert)[] = [];
      for (const r of records) {
        let sample;
        try {
          sample = metricSampleSchema.parse(JSON.parse(Buffer.from(r.payload).toString('utf8')));
        } catch {
          rejected++;
          continue;
        }
        const ts = new Date(sample.t);
        if (Number.isNaN(ts.getTime())) {
          rejected++;
          continue;
        }
        const { cores, mounts, ifaces, temps } = sample;
        const detail: MetricDetail = {};
        if (cores) detail.cores = cores;
        if (mounts) detail.mounts = mounts;
        if (ifaces) detail.ifaces = ifaces;
        if (temps) detail.temps = temps;
        rows.push({ hostId, ts, ...sample.v, detail: Object.keys(detail).length > 0 ? detail : null });
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
          let gap: MetricsAppendResult['gap'];
          if (batch.firstSeq > acked + 1) {
            gap = { fromSeq: acked + 1, toSeq: batch.firstSeq - 1 };
            await tx
              .insert(streamGaps)
              .values({ hostId, stream, ...gap })
              .onConflictDoNothing();
          }
          // Every tick is inserted whatever its number: a resent one hits the key and is skipped,
          // and an agent whose spool was wiped (numbering from 1 again) loses nothing.
          let stored = 0;
          for (let i = 0; i < rows.length; i += INSERT_ROWS) {
            const inserted = await tx
              .insert(metricSamples)
              .values(rows.slice(i, i + INSERT_ROWS))
              .onConflictDoNothing()
              .returning({ ts: metricSamples.ts });
            stored += inserted.length;
          }
          await tx
            .update(streamCursors)
            .set({ ackedSeq: sql`greatest(${streamCursors.ackedSeq}, ${lastSeq})`, updatedAt: new Date() })
            .where(and(eq(streamCursors.hostId, hostId), eq(streamCursors.stream, stream)));
          return { ackedSeq: lastSeq, stored, rejected, ...(gap ? { gap } : {}) };
        });
      } catch (err) {
        // A host deleted meanwhile (foreign key) is a host that does not exist.
        if (pgErrorCode(err) === '23503') throw new KeelError('host.not_found');
        throw err;
      }
    },

    async rollup(level, from, to) {
      const target = level === '1m' ? 'metric_rollups_1m' : 'metric_rollups_1h';
      const bucket = level === '1m' ? sql`interval '1 minute'` : sql`interval '1 hour'`;
      // Minutes from raw ticks; hours from minutes, the average weighted by the ticks behind it.
      const aggregates: SQL[] =
        level === '1m'
          ? metricSeriesNames.flatMap((n) => [
              sql`avg(${ident(n)})`,
              sql`min(${ident(n)})`,
              sql`max(${ident(n)})`,
            ])
          : metricSeriesNames.flatMap((n) => [
              sql`sum(${ident(n)} * "n") / nullif(sum(case when ${ident(n)} is null then 0 else "n" end), 0)`,
              sql`min(${ident(`${n}_min`)})`,
              sql`max(${ident(`${n}_max`)})`,
            ]);
      const source = level === '1m' ? sql.raw('"metric_samples"') : sql.raw('"metric_rollups_1m"');
      const count = level === '1m' ? sql`count(*)` : sql`sum("n")`;
      const columns = metricSeriesNames.flatMap((n) => [n, `${n}_min`, `${n}_max`]);
      const result = await db.execute(sql`
        insert into ${sql.raw(`"${target}"`)} ("host_id", "ts", "n", ${sql.join(columns.map(ident), sql`, `)})
        select "host_id", date_bin(${bucket}, "ts", timestamptz '2000-01-01 00:00:00+00') as "bucket", ${count},
          ${sql.join(aggregates, sql`, `)}
        from ${source}
        where "ts" >= date_bin(${bucket}, ${from.toISOString()}::timestamptz, timestamptz '2000-01-01 00:00:00+00')
          and "ts" < ${to.toISOString()}::timestamptz
        group by "host_id", "bucket"
        on conflict ("host_id", "ts") do update set "n" = excluded."n",
          ${sql.join(
            columns.map((c) => sql`${ident(c)} = excluded.${ident(c)}`),
            sql`, `,
          )}`);
      return rowCount(result);
    },

    async prune(before) {
      const out = { raw: 0, '1m': 0, '1h': 0 } as Record<MetricResolution, number>;
      for (const res of Object.keys(resolutions) as MetricResolution[]) {
        const result = await db.execute(
          sql`delete from ${sql.raw(`"${resolutions[res].table}"`)} where "ts" < ${before[res].toISOString()}::timestamptz`,
        );
        out[res] = rowCount(result);
      }
      return out;
    },

    async range(hostId, resolution, from, to, stepMs, series) {
      if (!isUuid(hostId)) throw new KeelError('host.not_found');
      const cols = columnsOf(series);
      if (!Number.isSafeInteger(stepMs) || stepMs < 1) throw new KeelError('request.invalid', 'Bad step.');
      const table = sql.raw(`"${resolutions[resolution].table}"`);
      const step = sql`${stepMs / 1000} * interval '1 second'`;
      const result = await db.execute(sql`
        select (extract(epoch from date_bin(${step}, "ts", timestamptz '1970-01-01 00:00:00+00')) * 1000)::float8 as "b"
          ${
            cols.length > 0
              ? sql`, ${sql.join(
                  cols.map((c) => sql`avg(${ident(c)})::float8 as ${ident(c)}`),
                  sql`, `,
                )}`
              : sql``
          }
        from ${table}
        where "host_id" = ${hostId}::uuid and "ts" >= ${from.toISOString()}::timestamptz and "ts" < ${to.toISOString()}::timestamptz
        group by 1 order by 1`);
      const rows = rowsOf(result);
      const x: number[] = [];
      const values: (number | null)[][] = cols.map(() => []);
      for (const row of rows) {
        x.push(Number(row.b) / 1000);
        for (let i = 0; i < cols.length; i++) values[i]!.push(num(row[cols[i]!]));
      }
      return { x, values };
    },
  };
}

/** Affected rows of an execute() result on either driver. */
function rowCount(result: unknown): number {
  const r = result as { affectedRows?: number; count?: number; rowCount?: number };
  return r.affectedRows ?? r.count ?? r.rowCount ?? 0;
}

/** Rows of an execute() result on either driver (postgres.js: the array; PGlite: `.rows`). */
function rowsOf(result: unknown): Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[];
  return ((result as { rows?: Record<string, unknown>[] }).rows ?? []) as Record<string, unknown>[];
}
