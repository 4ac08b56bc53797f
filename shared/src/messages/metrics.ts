// Host metrics: the `metrics` stream (one JSON record per sampling tick, spooled on the agent and
// replayed after an outage, so history has no gap) and the series a tick carries. The series list
// is the one place a host-wide figure is named: the agent fills it, the controller stores one
// column per series (one row per host per tick) and the API and console chart it by these names.
import { z } from 'zod';
import { defineRequest, defineStream, lazySchema } from '../definitions.ts';
import { storableText } from './facts.ts';
import { PROCESS_NAME_PATTERN, processNameSchema } from './processes.ts';

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

const figure = lazySchema(() => z.number().finite().nullable());
const label = lazySchema(() => storableText(128).refine((s) => s.length > 0, 'must not be empty'));

/** One tick: host-wide values (null or absent: not known this tick, e.g. the first tick has no rates). */
export const metricSampleSchema = lazySchema(() =>
  z.strictObject({
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
  }),
);
export type MetricSample = z.infer<typeof metricSampleSchema>;

/** Sampling interval bounds, seconds (issue 9: 1-60 s per host; 5 s by default). */
export const METRICS_INTERVAL_MIN_SECONDS = 1;
export const METRICS_INTERVAL_MAX_SECONDS = 60;
export const METRICS_INTERVAL_DEFAULT_SECONDS = 5;

/** A sampling interval, whole seconds within the bounds. */
export const metricsIntervalSchema = lazySchema(() =>
  z.number().int().min(METRICS_INTERVAL_MIN_SECONDS).max(METRICS_INTERVAL_MAX_SECONDS),
);

/**
 * Sets the host's sampling interval (the controller sends it on every change and whenever the host
 * comes online; `null` returns to the agent's own setting, KEEL_AGENT_METRICS_INTERVAL). The agent
 * applies it from the next tick on, without a restart, and answers the interval it now uses.
 */
export const metricsConfigureRequest = defineRequest('metrics.configure', {
  params: lazySchema(() => z.strictObject({ intervalSeconds: metricsIntervalSchema.nullable() })),
  result: lazySchema(() => z.strictObject({ intervalSeconds: metricsIntervalSchema })),
  timeoutMs: 10_000,
});

// ---- the fast check ----------------------------------------------------------------------------
// The controller checks every tick an agent sends (an agent is untrusted). `parseMetricSample`
// first runs a hand-written structural check that accepts only what `metricSampleSchema` accepts
// unchanged (strict keys, finite numbers, labels of 1-128 characters without NUL or any surrogate,
// process names by their pattern, the array bounds); anything it does not accept — invalid or
// merely unusual, such as a label with an emoji — goes to zod, which decides and gives the error.
// So the check can only be stricter than the schema, never looser (shared/src/messages/
// metrics.test.ts compares the two on mutated ticks).

const SERIES_KEYS: ReadonlySet<string> = new Set(metricSeriesNames);
// eslint-disable-next-line no-control-regex -- NUL is what the label must not hold
const SAFE_LABEL = /^[^\u0000\uD800-\uDFFF]{1,128}$/;

type Plain = Record<string, unknown>;
const isPlain = (o: unknown): o is Plain =>
  typeof o === 'object' && o !== null && !Array.isArray(o) && Object.getPrototypeOf(o) === Object.prototype;
const isFigure = (x: unknown) => x === null || (typeof x === 'number' && Number.isFinite(x));
const isAmount = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
const isLabel = (x: unknown) => typeof x === 'string' && SAFE_LABEL.test(x);

/** True when `o` has exactly the keys `keys` (own, enumerable) and nothing else. */
function hasExactly(o: Plain, keys: readonly string[]): boolean {
  let n = 0;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) return false;
    n++;
  }
  if (n !== keys.length) return false;
  for (const k of keys) if (!Object.hasOwn(o, k)) return false;
  return true;
}

const MOUNT_KEYS = ['mount', 'fs', 'size', 'used'] as const;
const IFACE_KEYS = ['name', 'rxBps', 'txBps', 'rxBytes', 'txBytes'] as const;
const TEMP_KEYS = ['name', 'c'] as const;
const PROCESS_KEYS = ['name', 'cpu', 'rss'] as const;

function fastList(x: unknown, max: number, item: (o: Plain) => boolean): boolean {
  if (!Array.isArray(x) || x.length > max) return false;
  for (const o of x) if (!isPlain(o) || !item(o)) return false;
  return true;
}

/** The hand-written check: true only for values `metricSampleSchema` accepts as they are. */
export function isWellFormedMetricSample(x: unknown): x is MetricSample {
  if (!isPlain(x)) return false;
  let hasT = false;
  for (const k in x) {
    if (!Object.hasOwn(x, k)) return false;
    const value = x[k];
    switch (k) {
      case 't':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return false;
        hasT = true;
        break;
      case 'v': {
        if (!isPlain(value)) return false;
        for (const s in value) {
          if (!Object.hasOwn(value, s) || !SERIES_KEYS.has(s) || !isFigure(value[s])) return false;
        }
        break;
      }
      case 'cores':
        if (!Array.isArray(value) || value.length > 1024) return false;
        for (const c of value) if (!isFigure(c)) return false;
        break;
      case 'mounts':
        if (
          !fastList(
            value,
            256,
            (m) =>
              hasExactly(m, MOUNT_KEYS) &&
              isLabel(m.mount) &&
              isLabel(m.fs) &&
              isAmount(m.size) &&
              isAmount(m.used),
          )
        )
          return false;
        break;
      case 'ifaces':
        if (
          !fastList(
            value,
            256,
            (i) =>
              hasExactly(i, IFACE_KEYS) &&
              isLabel(i.name) &&
              isFigure(i.rxBps) &&
              isFigure(i.txBps) &&
              isAmount(i.rxBytes) &&
              isAmount(i.txBytes),
          )
        )
          return false;
        break;
      case 'temps':
        if (
          !fastList(
            value,
            256,
            (t) =>
              hasExactly(t, TEMP_KEYS) && isLabel(t.name) && typeof t.c === 'number' && Number.isFinite(t.c),
          )
        )
          return false;
        break;
      case 'processes':
        if (
          !fastList(
            value,
            MAX_PROCESS_SERIES,
            (p) =>
              hasExactly(p, PROCESS_KEYS) &&
              typeof p.name === 'string' &&
              PROCESS_NAME_PATTERN.test(p.name) &&
              isFigure(p.cpu) &&
              isFigure(p.rss),
          )
        )
          return false;
        break;
      default:
        return false;
    }
  }
  return hasT && Object.hasOwn(x, 'v');
}

/**
 * A tick checked as `metricSampleSchema.parse` checks it (throws zod's error on a bad one), fast for
 * the well-formed ticks agents send: those are returned as they are, without zod's copy.
 */
export function parseMetricSample(x: unknown): MetricSample {
  return isWellFormedMetricSample(x) ? x : metricSampleSchema.parse(x);
}
