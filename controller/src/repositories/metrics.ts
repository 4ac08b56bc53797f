// Metrics at rest: batches of the `metrics` stream become rows (one per host per tick), roll-ups
// summarize them per minute and per hour (min/avg/max), retention deletes what is older than each
// resolution keeps, and range reads bucket any resolution to a step in SQL so a chart never gets
// more points than it can draw. Series names are interpolated as identifiers only after they were
// checked against `metricSeries` (the API validates them; `columnsOf` checks again).
import { sql, type SQL } from 'drizzle-orm';
import {
  decodeRecords,
  KeelError,
  metricSeries,
  metricSeriesNames,
  type MetricSample,
  type MetricSeriesName,
  parseMetricSample,
  type RecordBatch,
} from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid, pgErrorCode } from '../db/errors.ts';
import type { MetricDetail } from '../db/schema/metrics.ts';
import { accountTraffic, type TrafficReading } from './traffic.ts';

export type { TrafficReading } from './traffic.ts';

/** Where a range is read from. */
export type MetricResolution = 'raw' | '1m' | '1h';

/** The table of each resolution and the step of its rows, ms (raw: the finest tick an agent makes). */
export const resolutions: Record<MetricResolution, { table: string; stepMs: number }> = {
  raw: { table: 'metric_samples', stepMs: 1_000 },
  '1m': { table: 'metric_rollups_1m', stepMs: 60_000 },
  '1h': { table: 'metric_rollups_1h', stepMs: 3_600_000 },
};

export interface MetricsAppendResult {
  ackedSeq: number;
  /** Ticks stored by this append (resent ones excluded). */
  stored: number;
  /** Records that did not parse as a sample (skipped, acked: they can never become valid). */
  rejected: number;
  /** Set when this append skipped over records the agent lost (its numbers). */
  gap?: { fromSeq: number; toSeq: number };
}

/** A host's newest stored tick. */
export interface LatestSample {
  hostId: string;
  /** Tick time, epoch ms. */
  ts: number;
  values: Partial<Record<MetricSeriesName, number | null>>;
  detail: MetricDetail | null;
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
  /**
   * Stores batches of many hosts in one transaction (the metrics write queue's group commit), one
   * outcome per input in order. A batch that is malformed fails alone; if the group's transaction
   * fails (a host deleted meanwhile), each batch is retried on its own so only the bad one fails.
   * Traffic is accounted in the same transaction, unless `deferTraffic` is given: then the newly
   * stored ticks' interface readings are pushed there, once their transaction committed, for a
   * later `accountTraffic` (the write queue does so once a second).
   */
  appendMany(
    inputs: readonly MetricsAppendInput[],
    deferTraffic?: TrafficReading[],
  ): Promise<MetricsGroupOutcome[]>;
  /**
   * Accounts interface readings of ticks stored earlier (`appendMany` with `deferTraffic`) in one
   * transaction; readings of hosts deleted meanwhile are dropped.
   */
  accountTraffic(readings: readonly TrafficReading[]): Promise<void>;
  /**
   * The newest tick of each of `hostIds` stored at or after `since` (hosts without one are absent):
   * what the Prometheus exposition shows. One index probe per host (the key is (host_id, ts)).
   */
  latest(hostIds: readonly string[], since: Date): Promise<LatestSample[]>;
  /** Recomputes the roll-up buckets of `level` whose start is in [from, to). Returns rows written. */
  rollup(level: '1m' | '1h', from: Date, to: Date): Promise<number>;
  /**
   * Recomputes the supervised processes' figures of the `level` buckets in [from, to) (run after
   * `rollup`, which makes the rows): minutes from the raw ticks' `detail.processes`, hours from
   * the minutes (averages weighted by ticks).
   */
  rollupProcesses(level: '1m' | '1h', from: Date, to: Date): Promise<number>;
  /**
   * Supervised processes' CPU and RSS of one host over [from, to) from `resolution`, averaged into
   * epoch-aligned buckets of `stepMs`: x in epoch seconds, process names sorted, one column per
   * process for each figure (null where the process had no value in a bucket).
   */
  processRange(
    hostId: string,
    resolution: MetricResolution,
    from: Date,
    to: Date,
    stepMs: number,
  ): Promise<ProcessColumns>;
  /**
   * The fleet overview in two statements: per host, CPU % and memory % (used / total) averaged into
   * `stepMs` buckets of [from, to) from the minute roll-ups (one scan of the time index for every
   * host), and each host's newest raw tick since `since` (one key probe per host) with the figures
   * the fleet table shows.
   */
  overview(
    hostIds: readonly string[],
    from: Date,
    to: Date,
    stepMs: number,
    since: Date,
  ): Promise<FleetOverviewRows>;
  /** The sampling interval set for each host that has one (seconds). */
  intervals(hostIds: readonly string[]): Promise<Map<string, number>>;
  /** Sets (or with null clears) a host's sampling interval. */
  setInterval(hostId: string, seconds: number | null): Promise<void>;
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

/** What `overview` reads: sparkline buckets and the newest figures per host. */
export interface FleetOverviewRows {
  buckets: { hostId: string; b: number; cpu: number | null; mem: number | null }[];
  latest: {
    hostId: string;
    ts: number;
    cpu: number | null;
    mem: number | null;
    disk: number | null;
    rx: number | null;
    tx: number | null;
  }[];
}

/** Supervised processes' series as columns (see `processRange`). */
export interface ProcessColumns {
  x: number[];
  names: string[];
  cpu: (number | null)[][];
  rss: (number | null)[][];
}

/** The number of a stored value (PGlite and postgres.js both return real as number; avg as string on some). */
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** One batch of a group append. */
export interface MetricsAppendInput {
  hostId: string;
  stream: string;
  batch: RecordBatch;
}

/** Each batch's outcome in a group append: its result, or the error that batch alone failed with. */
export type MetricsGroupOutcome = { ok: true; result: MetricsAppendResult } | { ok: false; error: unknown };

/** A batch decoded and checked, ready for the group's transaction. */
interface PreparedBatch {
  index: number;
  hostId: string;
  stream: string;
  firstSeq: number;
  lastSeq: number;
  rejected: number;
  rows: { ts: number; v: MetricSample['v']; detail: MetricDetail | null; uptime: number | null }[];
}

const SERIES_RECORD_TYPE = sql.raw(
  [
    '"host_id" uuid',
    '"ts" timestamptz',
    ...metricSeriesNames.map((n) => `"${n}" real`),
    '"detail" jsonb',
  ].join(', '),
);
const SERIES_COLUMNS = sql.raw(
  ['"host_id"', '"ts"', ...metricSeriesNames.map((n) => `"${n}"`), '"detail"'].join(', '),
);

/** Decodes and validates one batch (throws `host.not_found` / `stream.invalid`). */
function prepare(input: MetricsAppendInput, index: number): PreparedBatch {
  const { batch } = input;
  if (!isUuid(input.hostId)) throw new KeelError('host.not_found');
  if (!Number.isSafeInteger(batch.firstSeq) || batch.firstSeq < 1 || !Number.isSafeInteger(batch.count)) {
    throw new KeelError('stream.invalid', 'firstSeq must be an integer >= 1.');
  }
  let records;
  try {
    records = decodeRecords(batch.body, batch.count);
  } catch {
    throw new KeelError('stream.invalid', `The body does not hold exactly ${batch.count} records.`);
  }
  let rejected = 0;
  const rows: PreparedBatch['rows'] = [];
  for (const r of records) {
    let sample;
    try {
      // The hand-written check for well-formed ticks, zod for the rest (refusing exactly what the
      // schema refuses; shared/src/messages/metrics.ts).
      sample = parseMetricSample(JSON.parse(Buffer.from(r.payload).toString('utf8')));
    } catch {
      rejected++;
      continue;
    }
    if (Number.isNaN(new Date(sample.t).getTime())) {
      rejected++;
      continue;
    }
    const { cores, mounts, ifaces, temps, processes } = sample;
    const detail: MetricDetail = {};
    if (processes) detail.processes = processes;
    if (cores) detail.cores = cores;
    if (mounts) detail.mounts = mounts;
    if (ifaces) detail.ifaces = ifaces;
    if (temps) detail.temps = temps;
    rows.push({
      ts: sample.t,
      v: sample.v,
      detail: Object.keys(detail).length > 0 ? detail : null,
      uptime: sample.v.uptime ?? null,
    });
  }
  return {
    index,
    hostId: input.hostId.toLowerCase(),
    stream: input.stream,
    firstSeq: batch.firstSeq,
    lastSeq: batch.firstSeq + batch.count - 1,
    rejected,
    rows,
  };
}

/** A tick's row as JSON for json_to_recordset, put together from its checked parts. */
function rowJson(hostId: string, row: PreparedBatch['rows'][number]): string {
  const v = JSON.stringify(row.v);
  return `{"host_id":"${hostId}","ts":"${new Date(row.ts).toISOString()}",${v.length > 2 ? `${v.slice(1, -1)},` : ''}"detail":${row.detail ? JSON.stringify(row.detail) : 'null'}}`;
}

/**
 * The write queue's group commit as one statement, without BEGIN and COMMIT (a statement is atomic
 * on its own): the cursors locked in key order (a materialized CTE the answer reads first), each
 * stream's lost-tick gap inserted, the cursors advanced from the locked values and every tick
 * inserted. For groups with one batch per stream (the gateway sends one at a time) and traffic
 * deferred. A stream without a cursor (its first batch) gets its ticks stored here and its cursor
 * made, locked, gap-checked and advanced by `storeGroup` right after (its ticks hit the key there):
 * should the controller stop in between, those ticks are stored but not acked, and the agent's
 * resend stores nothing twice.
 */
async function storeGroupAtOnce(
  db: Db,
  group: PreparedBatch[],
): Promise<{ results: MetricsAppendResult[]; readings: TrafficReading[] }> {
  const rows: string[] = [];
  const owner = new Map<string, { g: PreparedBatch; row: PreparedBatch['rows'][number] }>();
  for (const g of group) {
    for (const row of g.rows) {
      const key = `${g.hostId}\u0000${row.ts}`;
      if (owner.has(key)) continue;
      owner.set(key, { g, row });
      rows.push(rowJson(g.hostId, row));
    }
  }
  const keys = JSON.stringify(
    group.map((g) => ({ host: g.hostId, stream: g.stream, first: g.firstSeq, last: g.lastSeq })),
  );
  const answer = rowsOf(
    await db.execute(sql`
      with "k" as materialized (
        select * from jsonb_to_recordset(${keys}::jsonb) as k("host" uuid, "stream" text, "first" bigint, "last" bigint)
      ),
      "locked" as materialized (
        select c."host_id", c."stream", c."acked_seq" from "stream_cursors" c
        join "k" on c."host_id" = k."host" and c."stream" = k."stream"
        order by c."host_id", c."stream"
        for update of c
      ),
      "gaps" as (
        insert into "stream_gaps" ("host_id", "stream", "from_seq", "to_seq")
        select l."host_id", l."stream", l."acked_seq" + 1, k."first" - 1
        from "locked" l join "k" on k."host" = l."host_id" and k."stream" = l."stream"
        where k."first" > l."acked_seq" + 1
        on conflict do nothing
      ),
      "advanced" as (
        update "stream_cursors" c set "acked_seq" = greatest(l."acked_seq", k."last"), "updated_at" = now()
        from "locked" l join "k" on k."host" = l."host_id" and k."stream" = l."stream"
        where c."host_id" = l."host_id" and c."stream" = l."stream"
      ),
      "inserted" as (
        insert into "metric_samples" (${SERIES_COLUMNS})
        select ${SERIES_COLUMNS} from json_to_recordset(${`[${rows.join(',')}]`}::json) as r(${SERIES_RECORD_TYPE})
        on conflict do nothing
        returning "host_id", "ts"
      )
      select 0 as "kind", l."host_id"::text as "host", l."stream", l."acked_seq"::float8 as "n" from "locked" l
      union all
      select 1, i."host_id"::text, null, (extract(epoch from i."ts") * 1000)::float8 from "inserted" i`),
  );
  const acked = new Map<string, number>();
  const results = new Map<number, MetricsAppendResult>();
  const readings: TrafficReading[] = [];
  for (const r of answer) {
    if (Number(r.kind) === 0) acked.set(`${String(r.host)}\u0000${String(r.stream)}`, Number(r.n));
  }
  const missing: PreparedBatch[] = [];
  for (const g of group) {
    const result: MetricsAppendResult = { ackedSeq: g.lastSeq, stored: 0, rejected: g.rejected };
    results.set(g.index, result);
    const cursor = acked.get(`${g.hostId}\u0000${g.stream}`);
    if (cursor === undefined) missing.push(g);
    else if (g.firstSeq > cursor + 1) result.gap = { fromSeq: cursor + 1, toSeq: g.firstSeq - 1 };
  }
  for (const r of answer) {
    if (Number(r.kind) !== 1) continue;
    const t = Math.round(Number(r.n));
    const hit = owner.get(`${String(r.host)}\u0000${t}`);
    if (!hit) continue;
    results.get(hit.g.index)!.stored++;
    const ifaces = hit.row.detail?.ifaces?.filter((i) => i.name !== 'lo') ?? [];
    if (ifaces.length > 0) readings.push({ hostId: hit.g.hostId, ts: t, uptime: hit.row.uptime, ifaces });
  }
  if (missing.length > 0) {
    const made = await storeGroup(db, missing, true);
    missing.forEach((g, k) => {
      const gap = made.results[k]!.gap;
      if (gap) results.get(g.index)!.gap = gap;
    });
  }
  return { results: group.map((g) => results.get(g.index)!), readings };
}

/**
 * Stores prepared batches of any number of hosts in one transaction: cursors locked (created
 * first where missing; in key order, so two writers cannot deadlock), gaps recorded, every tick
 * inserted and the cursors advanced by one statement (a resent tick hits the key and is skipped),
 * traffic accounted from the ticks that were new (or handed back for later).
 */
async function storeGroup(
  db: Db,
  group: PreparedBatch[],
  deferTraffic: boolean,
): Promise<{ results: MetricsAppendResult[]; readings: TrafficReading[] }> {
  return db.transaction(async (tx) => {
    const keys = [...new Map(group.map((g) => [`${g.hostId}\u0000${g.stream}`, g])).values()]
      .map((g) => ({ host: g.hostId, stream: g.stream }))
      .sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.stream < b.stream ? -1 : 1));
    // Locks the cursors in key order, so two writers cannot deadlock (FOR UPDATE marks the rows
    // without writing a new version of each). Only a stream's first batch finds no cursor: the
    // missing ones are then created, locked and advanced by three more statements.
    const lock = async (wanted: typeof keys) =>
      rowsOf(
        await tx.execute(sql`
          select c."host_id"::text as "host", c."stream", c."acked_seq"::float8 as "acked"
          from "stream_cursors" c
          join jsonb_to_recordset(${JSON.stringify(wanted)}::jsonb) as k("host" uuid, "stream" text)
            on c."host_id" = k."host" and c."stream" = k."stream"
          order by c."host_id", c."stream"
          for update of c`),
      );
    // Every tick is inserted whatever its number: a resent one hits the key and is skipped, and an
    // agent whose spool was wiped (numbering from 1 again) loses nothing. Each row's JSON is put
    // together from the checked tick's parts (the host id is a checked UUID, the time ISO text,
    // `v` holds series names only), without an object per row.
    const rows: string[] = [];
    const owner = new Map<string, { g: PreparedBatch; row: PreparedBatch['rows'][number] }>();
    const last = new Map<string, number>();
    for (const g of group) {
      const cursorKey = `${g.hostId}\u0000${g.stream}`;
      last.set(cursorKey, Math.max(last.get(cursorKey) ?? 0, g.lastSeq));
      for (const row of g.rows) {
        const key = `${g.hostId}\u0000${row.ts}`;
        if (owner.has(key)) continue;
        owner.set(key, { g, row });
        rows.push(rowJson(g.hostId, row));
      }
    }
    const advance = (which: typeof keys) => {
      const json = JSON.stringify(
        which.map((k) => ({ ...k, seq: last.get(`${k.host}\u0000${k.stream}`) ?? 0 })),
      );
      return sql`
        update "stream_cursors" c set "acked_seq" = greatest(c."acked_seq", v."seq"), "updated_at" = now()
        from jsonb_to_recordset(${json}::jsonb) as v("host" uuid, "stream" text, "seq" bigint)
        where c."host_id" = v."host" and c."stream" = v."stream"`;
    };
    // The lock and the insert go out together (pipelined on the transaction's connection, run in
    // that order), and the cursors advance in the insert's statement (a data-modifying WITH runs
    // whether or not it is read; greatest() needs no value read first): a group commit is BEGIN,
    // one round trip of two statements, COMMIT.
    const [cursorRows, insertedResult] = await Promise.all([
      lock(keys),
      rows.length > 0
        ? tx.execute(sql`
            with "advanced" as (${advance(keys)})
            insert into "metric_samples" (${SERIES_COLUMNS})
            select ${SERIES_COLUMNS} from json_to_recordset(${`[${rows.join(',')}]`}::json) as r(${SERIES_RECORD_TYPE})
            on conflict do nothing
            returning "host_id"::text as "host", (extract(epoch from "ts") * 1000)::float8 as "t"`)
        : tx.execute(advance(keys)),
    ]);
    const acked = new Map(
      cursorRows.map((r) => [`${String(r.host)}\u0000${String(r.stream)}`, Number(r.acked)]),
    );
    if (acked.size < keys.length) {
      // A stream's first batch: its cursor is made, locked and read, then advanced.
      const missing = keys.filter((k) => !acked.has(`${k.host}\u0000${k.stream}`));
      await tx.execute(sql`
        insert into "stream_cursors" ("host_id", "stream", "acked_seq")
        select "host", "stream", 0 from jsonb_to_recordset(${JSON.stringify(missing)}::jsonb) as k("host" uuid, "stream" text)
        order by 1, 2
        on conflict ("host_id", "stream") do nothing`);
      for (const r of await lock(missing)) {
        acked.set(`${String(r.host)}\u0000${String(r.stream)}`, Number(r.acked));
      }
      await tx.execute(advance(missing));
    }
    const gaps: { host: string; stream: string; from: number; to: number }[] = [];
    const results = new Map<number, MetricsAppendResult>();
    // Batches of one stream in seq order (the gateway sends one at a time per stream; be safe).
    for (const g of [...group].sort((a, b) => a.firstSeq - b.firstSeq)) {
      const key = `${g.hostId}\u0000${g.stream}`;
      const cursor = acked.get(key) ?? 0;
      const result: MetricsAppendResult = { ackedSeq: g.lastSeq, stored: 0, rejected: g.rejected };
      if (g.firstSeq > cursor + 1) {
        result.gap = { fromSeq: cursor + 1, toSeq: g.firstSeq - 1 };
        gaps.push({ host: g.hostId, stream: g.stream, from: cursor + 1, to: g.firstSeq - 1 });
      }
      acked.set(key, Math.max(cursor, g.lastSeq));
      results.set(g.index, result);
    }
    if (gaps.length > 0) {
      await tx.execute(sql`
        insert into "stream_gaps" ("host_id", "stream", "from_seq", "to_seq")
        select "host", "stream", "from", "to"
        from jsonb_to_recordset(${JSON.stringify(gaps)}::jsonb) as v("host" uuid, "stream" text, "from" bigint, "to" bigint)
        on conflict do nothing`);
    }
    const stored: { host: string; t: number }[] = [];
    if (rows.length > 0) {
      for (const r of rowsOf(insertedResult))
        stored.push({ host: String(r.host), t: Math.round(Number(r.t)) });
    }
    const readings: TrafficReading[] = [];
    for (const s of stored) {
      const key = `${s.host}\u0000${s.t}`;
      const hit = owner.get(key);
      if (!hit) continue;
      results.get(hit.g.index)!.stored++;
      const ifaces = hit.row.detail?.ifaces?.filter((i) => i.name !== 'lo') ?? [];
      if (ifaces.length > 0) readings.push({ hostId: hit.g.hostId, ts: s.t, uptime: hit.row.uptime, ifaces });
    }
    if (!deferTraffic) await accountTraffic(tx, readings);
    return { results: group.map((g) => results.get(g.index)!), readings: deferTraffic ? readings : [] };
  });
}

export function createMetricsRepository(db: Db): MetricsRepository {
  const repo: MetricsRepository = {
    async append(hostId, stream, batch) {
      const [outcome] = await repo.appendMany([{ hostId, stream, batch }]);
      if (!outcome!.ok) throw outcome!.error;
      return outcome!.result;
    },

    async appendMany(inputs, deferTraffic) {
      const outcomes: MetricsGroupOutcome[] = new Array(inputs.length);
      const prepared: PreparedBatch[] = [];
      inputs.forEach((input, i) => {
        try {
          prepared.push(prepare(input, i));
        } catch (error) {
          outcomes[i] = { ok: false, error };
        }
      });
      const run = async (group: PreparedBatch[]) => {
        // The write queue's groups (traffic deferred, one batch per stream) as one statement.
        const atOnce =
          deferTraffic !== undefined &&
          new Set(group.map((g) => `${g.hostId}\u0000${g.stream}`)).size === group.length;
        const { results, readings } = atOnce
          ? await storeGroupAtOnce(db, group)
          : await storeGroup(db, group, deferTraffic !== undefined);
        group.forEach((g, k) => (outcomes[g.index] = { ok: true, result: results[k]! }));
        for (const r of readings) deferTraffic!.push(r);
      };
      if (prepared.length > 0) {
        try {
          await run(prepared);
        } catch (err) {
          if (prepared.length === 1) {
            outcomes[prepared[0]!.index] = { ok: false, error: storeError(err) };
          } else {
            // One batch spoiled the group (a host deleted meanwhile): store each on its own so only
            // that one fails.
            for (const g of prepared) {
              try {
                await run([g]);
              } catch (e) {
                outcomes[g.index] = { ok: false, error: storeError(e) };
              }
            }
          }
        }
      }
      return outcomes;
    },

    async accountTraffic(readings) {
      if (readings.length === 0) return;
      try {
        await db.transaction((tx) => accountTraffic(tx, [...readings]));
      } catch (err) {
        if (pgErrorCode(err) !== '23503') throw err;
        // A host deleted since its ticks were stored: account the others.
        const ids = [...new Set(readings.map((r) => r.hostId))];
        const alive = new Set(
          rowsOf(
            await db.execute(sql`
              select "id"::text as "id" from "hosts"
              where "id" in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`),
          ).map((r) => String(r.id)),
        );
        const kept = readings.filter((r) => alive.has(r.hostId));
        if (kept.length > 0) await db.transaction((tx) => accountTraffic(tx, kept));
      }
    },

    async latest(hostIds, since) {
      const ids = hostIds.filter(isUuid);
      if (ids.length === 0) return [];
      const result = await db.execute(sql`
        select h."id"::text as "host_id", (extract(epoch from s."ts") * 1000)::float8 as "t", s.*
        from (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid as "id") h
        cross join lateral (
          select * from "metric_samples" m
          where m."host_id" = h."id" and m."ts" >= ${since.toISOString()}::timestamptz
          order by m."ts" desc limit 1
        ) s`);
      return rowsOf(result).map((row) => ({
        hostId: String(row.host_id),
        ts: Number(row.t),
        values: Object.fromEntries(metricSeriesNames.map((n) => [n, num(row[n])])),
        detail: (typeof row.detail === 'string' ? JSON.parse(row.detail) : row.detail) as MetricDetail | null,
      }));
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

    async rollupProcesses(level, from, to) {
      const target = sql.raw(level === '1m' ? '"metric_rollups_1m"' : '"metric_rollups_1h"');
      const bucket = level === '1m' ? sql`interval '1 minute'` : sql`interval '1 hour'`;
      const origin = sql`timestamptz '2000-01-01 00:00:00+00'`;
      const start = sql`date_bin(${bucket}, ${from.toISOString()}::timestamptz, ${origin})`;
      const end = sql`${to.toISOString()}::timestamptz`;
      const f = (k: string) => sql.raw(`(e->>'${k}')::float8`);
      const perProcess =
        level === '1m'
          ? sql`
            select "host_id", date_bin(${bucket}, "ts", ${origin}) as "bucket", e->>'name' as "name",
              count(*)::int as "n", avg(${f('cpu')}) as "cpu", max(${f('cpu')}) as "cpu_max",
              avg(${f('rss')}) as "rss", max(${f('rss')}) as "rss_max"
            from "metric_samples", jsonb_array_elements("detail"->'processes') e
            where "ts" >= ${start} and "ts" < ${end} and jsonb_typeof("detail"->'processes') = 'array'
            group by 1, 2, 3`
          : sql`
            select "host_id", date_bin(${bucket}, "ts", ${origin}) as "bucket", e->>'name' as "name",
              sum(${f('n')})::int as "n",
              sum(${f('cpu')} * ${f('n')}) / nullif(sum(case when e->>'cpu' is null then 0 else ${f('n')} end), 0) as "cpu",
              max(${f('cpu_max')}) as "cpu_max",
              sum(${f('rss')} * ${f('n')}) / nullif(sum(case when e->>'rss' is null then 0 else ${f('n')} end), 0) as "rss",
              max(${f('rss_max')}) as "rss_max"
            from "metric_rollups_1m", jsonb_array_elements("processes") e
            where "ts" >= ${start} and "ts" < ${end} and jsonb_typeof("processes") = 'array'
            group by 1, 2, 3`;
      const result = await db.execute(sql`
        update ${target} r set "processes" = p."agg"
        from (
          select "host_id", "bucket", jsonb_agg(jsonb_build_object('name', "name", 'n', "n", 'cpu', "cpu",
            'cpu_max', "cpu_max", 'rss', "rss", 'rss_max', "rss_max") order by "name") as "agg"
          from (${perProcess}) q
          group by 1, 2
        ) p
        where r."host_id" = p."host_id" and r."ts" = p."bucket"`);
      return rowCount(result);
    },

    async processRange(hostId, resolution, from, to, stepMs) {
      if (!isUuid(hostId)) throw new KeelError('host.not_found');
      if (!Number.isSafeInteger(stepMs) || stepMs < 1) throw new KeelError('request.invalid', 'Bad step.');
      const table = sql.raw(`"${resolutions[resolution].table}"`);
      const list = sql.raw(resolution === 'raw' ? `"detail"->'processes'` : `"processes"`);
      const step = sql`${stepMs / 1000} * interval '1 second'`;
      const result = await db.execute(sql`
        select (extract(epoch from date_bin(${step}, "ts", timestamptz '1970-01-01 00:00:00+00')) * 1000)::float8 as "b",
          e->>'name' as "name", avg((e->>'cpu')::float8)::float8 as "cpu", avg((e->>'rss')::float8)::float8 as "rss"
        from ${table}, jsonb_array_elements(${list}) e
        where "host_id" = ${hostId}::uuid and "ts" >= ${from.toISOString()}::timestamptz
          and "ts" < ${to.toISOString()}::timestamptz and jsonb_typeof(${list}) = 'array'
        group by 1, 2 order by 1`);
      const rows = rowsOf(result);
      const x = [...new Set(rows.map((r) => Number(r.b)))].sort((a, b) => a - b);
      const names = [...new Set(rows.map((r) => String(r.name)))].sort();
      const at = new Map(x.map((b, i) => [b, i]));
      const col = new Map(names.map((n, i) => [n, i]));
      const cpu = names.map(() => x.map((): number | null => null));
      const rss = names.map(() => x.map((): number | null => null));
      for (const r of rows) {
        const i = at.get(Number(r.b))!;
        const k = col.get(String(r.name))!;
        cpu[k]![i] = num(r.cpu);
        rss[k]![i] = num(r.rss);
      }
      return { x: x.map((b) => b / 1000), names, cpu, rss };
    },

    async overview(hostIds, from, to, stepMs, since) {
      const ids = hostIds.filter(isUuid);
      if (ids.length === 0) return { buckets: [], latest: [] };
      if (!Number.isSafeInteger(stepMs) || stepMs < 1) throw new KeelError('request.invalid', 'Bad step.');
      const list = JSON.stringify(ids);
      const step = sql`${stepMs / 1000} * interval '1 second'`;
      const buckets = rowsOf(
        await db.execute(sql`
          select "host_id"::text as "h",
            (extract(epoch from date_bin(${step}, "ts", timestamptz '1970-01-01 00:00:00+00')) * 1000)::float8 as "b",
            avg("cpu")::float8 as "cpu", avg("mem_used" / nullif("mem_total", 0) * 100)::float8 as "mem"
          from "metric_rollups_1m"
          where "ts" >= ${from.toISOString()}::timestamptz and "ts" < ${to.toISOString()}::timestamptz
            and "host_id" in (select (jsonb_array_elements_text(${list}::jsonb))::uuid)
          group by 1, 2`),
      ).map((r) => ({ hostId: String(r.h), b: Number(r.b), cpu: num(r.cpu), mem: num(r.mem) }));
      const latest = rowsOf(
        await db.execute(sql`
          select h."id"::text as "h", (extract(epoch from s."ts") * 1000)::float8 as "t", s."cpu"::float8 as "cpu",
            (s."mem_used" / nullif(s."mem_total", 0) * 100)::float8 as "mem",
            s."disk_used_max_pct"::float8 as "disk", s."net_rx_bps"::float8 as "rx", s."net_tx_bps"::float8 as "tx"
          from (select (jsonb_array_elements_text(${list}::jsonb))::uuid as "id") h
          cross join lateral (
            select "ts", "cpu", "mem_used", "mem_total", "disk_used_max_pct", "net_rx_bps", "net_tx_bps"
            from "metric_samples" m
            where m."host_id" = h."id" and m."ts" >= ${since.toISOString()}::timestamptz
            order by m."ts" desc limit 1
          ) s`),
      ).map((r) => ({
        hostId: String(r.h),
        ts: Number(r.t),
        cpu: num(r.cpu),
        mem: num(r.mem),
        disk: num(r.disk),
        rx: num(r.rx),
        tx: num(r.tx),
      }));
      return { buckets, latest };
    },

    async intervals(hostIds) {
      const ids = hostIds.filter(isUuid);
      if (ids.length === 0) return new Map();
      const result = await db.execute(sql`
        select "host_id"::text as "host", "interval_seconds" as "s" from "metric_settings"
        where "host_id" in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
      return new Map(rowsOf(result).map((r) => [String(r.host), Number(r.s)]));
    },

    async setInterval(hostId, seconds) {
      if (!isUuid(hostId)) throw new KeelError('host.not_found');
      try {
        if (seconds === null) {
          await db.execute(sql`delete from "metric_settings" where "host_id" = ${hostId}::uuid`);
        } else {
          await db.execute(sql`
            insert into "metric_settings" ("host_id", "interval_seconds") values (${hostId}::uuid, ${seconds})
            on conflict ("host_id") do update set "interval_seconds" = excluded."interval_seconds", "updated_at" = now()`);
        }
      } catch (err) {
        throw storeError(err);
      }
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
      const cols = columnsOf(series);
      const rows = rowsOf(await db.execute(rangeStatement(hostId, resolution, from, to, stepMs, cols)));
      const x: number[] = new Array(rows.length);
      const values: (number | null)[][] = cols.map(() => new Array(rows.length));
      for (let r = 0; r < rows.length; r++) {
        const row = rows[r]!;
        x[r] = Number(row.b);
        for (let i = 0; i < cols.length; i++) values[i]![r] = num(row[cols[i]!]);
      }
      return { x, values };
    },
  };
  return repo;
}

/**
 * The statement of a range read (exported for the benchmark's EXPLAIN). When the step is the
 * resolution's own (a roll-up read at its bucket: the 30-day chart's 720 hourly rows), each row is
 * a bucket already and is returned as stored, in key order; otherwise rows are averaged into
 * epoch-aligned buckets. Either way only `host_id`, `ts` and the requested averages are read, all
 * held in the roll-up key's index (INCLUDE, migration 0016), so a roll-up read is an index-only
 * scan of one host's contiguous leaf pages rather than a page visit per row.
 */
export function rangeStatement(
  hostId: string,
  resolution: MetricResolution,
  from: Date,
  to: Date,
  stepMs: number,
  series: readonly string[],
): SQL {
  if (!isUuid(hostId)) throw new KeelError('host.not_found');
  const cols = columnsOf(series);
  if (!Number.isSafeInteger(stepMs) || stepMs < 1) throw new KeelError('request.invalid', 'Bad step.');
  const table = sql.raw(`"${resolutions[resolution].table}"`);
  const where = sql`"host_id" = ${hostId}::uuid and "ts" >= ${from.toISOString()}::timestamptz and "ts" < ${to.toISOString()}::timestamptz`;
  if (resolution !== 'raw' && stepMs === resolutions[resolution].stepMs) {
    const picked = cols.map((c) => sql`, ${ident(c)}::float8 as ${ident(c)}`);
    return sql`
      select extract(epoch from "ts")::float8 as "b"${sql.join(picked, sql``)}
      from ${table} where ${where}
      order by "ts"`;
  }
  const step = sql`${stepMs / 1000} * interval '1 second'`;
  const averaged = cols.map((c) => sql`, avg(${ident(c)})::float8 as ${ident(c)}`);
  return sql`
    select extract(epoch from date_bin(${step}, "ts", timestamptz '1970-01-01 00:00:00+00'))::float8 as "b"${sql.join(averaged, sql``)}
    from ${table} where ${where}
    group by 1 order by 1`;
}

/** A host deleted meanwhile (foreign key) is a host that does not exist. */
function storeError(err: unknown): unknown {
  return pgErrorCode(err) === '23503' ? new KeelError('host.not_found') : err;
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
