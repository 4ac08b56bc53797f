// Host metrics: the `metrics` stream (one JSON record per sampling tick, spooled on the agent and
// replayed after an outage, so history has no gap) and the series a tick carries. The series list
// is the one place a host-wide figure is named: the agent fills it, the controller stores one
// column per series (one row per host per tick) and the API and console chart it by these names.
import { z } from 'zod';
import { defineRequest, defineStream } from '../definitions.ts';
import { storableText } from './facts.ts';
import { processNameSchema } from './processes.ts';

/** The durable stream of metric samples, one record per tick. */
export const metricsStream = defineStream('metrics', { codec: 'json', durability: 'durable' });

/**
 * Every host-wide series, with its unit. Order matters nowhere; names are stable (they are column
 * names on the controller and query parameters in the API).
 */
export const metricSeries = {
  /** CPU busy, % of all cores (100 = every core busy). */
  cpu: 'percent',
  cpu_user: 'percent',
  cpu_system: 'percent',
  cpu_iowait: 'percent',
  /** Time a hypervisor gave to others (VPS "steal"). */
  cpu_steal: 'percent',
  load1: 'load',
  load5: 'load',
  load15: 'load',
  mem_total: 'bytes',
  /** total - available (what applications hold). */
  mem_used: 'bytes',
  mem_available: 'bytes',
  /** Page cache + reclaimable slab. */
  mem_cached: 'bytes',
  swap_total: 'bytes',
  swap_used: 'bytes',
  /** Sums over the real file systems the agent watches (see `mounts` for each). */
  disk_total: 'bytes',
  disk_used: 'bytes',
  /** The fullest watched file system, % used. */
  disk_used_max_pct: 'percent',
  disk_read_bps: 'bytes/s',
  disk_write_bps: 'bytes/s',
  /** Sums over interfaces other than loopback (see `ifaces` for each). */
  net_rx_bps: 'bytes/s',
  net_tx_bps: 'bytes/s',
  /** Established TCP connections (IPv4 + IPv6). */
  tcp_conns: 'count',
  /** UDP sockets in use (IPv4 + IPv6). */
  udp_conns: 'count',
  procs: 'count',
  uptime: 'seconds',
  /** The hottest sensor, when the host exposes any. */
  temp_max: 'celsius',
  /** The agent's own CPU, % of one core, and resident memory. */
  agent_cpu: 'percent',
  agent_rss: 'bytes',
} as const;

export type MetricSeriesName = keyof typeof metricSeries;
export const metricSeriesNames = Object.keys(metricSeries) as MetricSeriesName[];

/** The most supervised processes a tick carries figures for. */
export const MAX_PROCESS_SERIES = 256;

const figure = z.number().finite().nullable();
const label = storableText(128).refine((s) => s.length > 0, 'must not be empty');

/** One tick: host-wide values (null or absent: not known this tick, e.g. the first tick has no rates). */
export const metricSampleSchema = z.strictObject({
  /** Sample time, epoch ms. */
  t: z.number().int().nonnegative(),
  v: z.strictObject(
    Object.fromEntries(metricSeriesNames.map((n) => [n, figure.optional()])) as Record<
      MetricSeriesName,
      z.ZodOptional<typeof figure>
    >,
  ),
  /** CPU busy % per core. */
  cores: z.array(figure).max(1024).optional(),
  /** Watched file systems. */
  mounts: z
    .array(
      z.strictObject({
        mount: label,
        fs: label,
        size: z.number().nonnegative(),
        used: z.number().nonnegative(),
      }),
    )
    .max(256)
    .optional(),
  /** Interfaces: rates since the last tick (null on the first) and the raw counters. */
  ifaces: z
    .array(
      z.strictObject({
        name: label,
        rxBps: figure,
        txBps: figure,
        rxBytes: z.number().nonnegative(),
        txBytes: z.number().nonnegative(),
      }),
    )
    .max(256)
    .optional(),
  temps: z
    .array(z.strictObject({ name: label, c: z.number().finite() }))
    .max(256)
    .optional(),
  /**
   * Supervised processes: CPU (% of one core) and resident bytes of each process's group; null
   * while it is not running (or on its first reading, for CPU).
   */
  processes: z
    .array(z.strictObject({ name: processNameSchema, cpu: figure, rss: figure }))
    .max(MAX_PROCESS_SERIES)
    .optional(),
});
export type MetricSample = z.infer<typeof metricSampleSchema>;

/** Sampling interval bounds, seconds (issue 9: 1-60 s per host; 5 s by default). */
export const METRICS_INTERVAL_MIN_SECONDS = 1;
export const METRICS_INTERVAL_MAX_SECONDS = 60;
export const METRICS_INTERVAL_DEFAULT_SECONDS = 5;

/** A sampling interval, whole seconds within the bounds. */
export const metricsIntervalSchema = z
  .number()
  .int()
  .min(METRICS_INTERVAL_MIN_SECONDS)
  .max(METRICS_INTERVAL_MAX_SECONDS);

/**
 * Sets the host's sampling interval (the controller sends it on every change and whenever the host
 * comes online; `null` returns to the agent's own setting, KEEL_AGENT_METRICS_INTERVAL). The agent
 * applies it from the next tick on, without a restart, and answers the interval it now uses.
 */
export const metricsConfigureRequest = defineRequest('metrics.configure', {
  params: z.strictObject({ intervalSeconds: metricsIntervalSchema.nullable() }),
  result: z.strictObject({ intervalSeconds: metricsIntervalSchema }),
  timeoutMs: 10_000,
});
