// Host metrics at rest: one row per host per tick (`metric_samples`), and min/avg/max roll-ups per
// minute and per hour. Each series of `metricSeries` (shared/src/messages/metrics.ts) is a `real`
// column: aggregates and roll-ups are plain SQL (`min(cpu)`, `avg(cpu)`), a chart reads only the
// columns it draws, and a row of 28 four-byte values with a null bitmap is ~150 bytes. Per-core,
// per-mount, per-interface and temperature detail rides along in the raw row as jsonb (not rolled
// up). See docs/metrics.md for why columns and not an array, and what retention keeps.
import {
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  smallint,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { metricSeriesNames, type MetricSample, type MetricSeriesName } from '@keel/shared';
import { hosts } from './hosts.ts';

const seriesColumns = () =>
  Object.fromEntries(metricSeriesNames.map((n) => [n, real(n)])) as {
    [K in MetricSeriesName]: ReturnType<typeof real<K>>;
  };

/** What a roll-up keeps per series: the average under the series name, min and max beside it. */
const rollupColumns = () =>
  Object.fromEntries(
    metricSeriesNames.flatMap((n) => [
      [n, real(n)],
      [`${n}_min`, real(`${n}_min`)],
      [`${n}_max`, real(`${n}_max`)],
    ]),
  ) as {
    [K in MetricSeriesName | `${MetricSeriesName}_min` | `${MetricSeriesName}_max`]: ReturnType<
      typeof real<K>
    >;
  };

/** Per-tick detail that is not a host-wide series (supervised processes included). */
export type MetricDetail = Pick<MetricSample, 'cores' | 'mounts' | 'ifaces' | 'temps' | 'processes'>;

/**
 * One supervised process in a roll-up bucket: average and maximum CPU (% of one core) and RSS
 * (bytes), and how many ticks had a value (weights the hourly average).
 */
export interface ProcessRollup {
  name: string;
  n: number;
  cpu: number | null;
  cpu_max: number | null;
  rss: number | null;
  rss_max: number | null;
}

export const metricSamples = pgTable(
  'metric_samples',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    /** The tick, as the agent stamped it (aligned to its interval). */
    ts: timestamp('ts', { withTimezone: true, precision: 3 }).notNull(),
    ...seriesColumns(),
    detail: jsonb('detail').$type<MetricDetail>(),
  },
  // The key is the only index: every read is one host over a time range; a resent tick is a no-op.
  (t) => [primaryKey({ name: 'metric_samples_pk', columns: [t.hostId, t.ts] })],
);

function rollupTable<N extends string>(name: N) {
  return pgTable(
    name,
    {
      hostId: uuid('host_id')
        .notNull()
        .references(() => hosts.id, { onDelete: 'cascade' }),
      /** Start of the bucket. */
      ts: timestamp('ts', { withTimezone: true }).notNull(),
      /** Raw ticks the bucket summarizes (weights the hourly average). */
      n: integer('n').notNull(),
      ...rollupColumns(),
      /** Supervised processes' CPU and RSS in the bucket (null when the host supervises none). */
      processes: jsonb('processes').$type<ProcessRollup[]>(),
    },
    (t) => [primaryKey({ name: `${name}_pk`, columns: [t.hostId, t.ts] }), index(`${name}_ts`).on(t.ts)],
  );
}

/** One row per host per minute. */
export const metricRollups1m = rollupTable('metric_rollups_1m');
/** One row per host per hour. */
export const metricRollups1h = rollupTable('metric_rollups_1h');

/** A host's sampling interval set from the controller (no row: the agent's own setting). */
export const metricSettings = pgTable('metric_settings', {
  hostId: uuid('host_id')
    .primaryKey()
    .references(() => hosts.id, { onDelete: 'cascade' }),
  /** Seconds between ticks, 1-60. */
  intervalSeconds: smallint('interval_seconds').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
