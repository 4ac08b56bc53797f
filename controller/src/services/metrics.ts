// Metrics as a rule: the `metrics` stream's sink (stores ticks, notes which time the roll-ups must
// revisit), the roll-up and retention job, and range queries that pick the resolution so a chart
// gets at most two points per pixel. Reading a host's metrics needs host.view on that host.
// It also holds each host's sampling interval (host.manage, audited) and sends it to the agent
// (`metrics.configure`) on every change and whenever the host comes online.
import type { Logger } from 'pino';
import {
  decodeRecords,
  KeelError,
  METRICS_INTERVAL_MAX_SECONDS,
  METRICS_INTERVAL_MIN_SECONDS,
  metricSeriesNames,
  type MetricSeriesName,
} from '@keel/shared';
import type { FleetBus } from '../bus/index.ts';
import type { StreamSink } from '../gateway/sinks.ts';
import type { AgentGateway } from '../gateway/types.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type { TrafficReading, TrafficRepository } from '../repositories/traffic.ts';
import {
  resolutions,
  type MetricResolution,
  type MetricsAppendInput,
  type MetricsAppendResult,
  type MetricsRepository,
} from '../repositories/metrics.ts';
import { canSeeHost, requireHostAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** How long each resolution is kept, ms. */
export interface MetricsRetention {
  raw: number;
  '1m': number;
  '1h': number;
}

/** Defaults: raw 48 h, minutes 30 days, hours a year. */
export const defaultMetricsRetention: MetricsRetention = { raw: 48 * HOUR, '1m': 30 * DAY, '1h': 365 * DAY };

/**
 * Reads retention from `KEEL_METRICS_RAW_RETENTION_HOURS`, `KEEL_METRICS_1M_RETENTION_DAYS` and
 * `KEEL_METRICS_1H_RETENTION_DAYS` (whole numbers >= 1; defaults 48, 30, 365).
 */
export function metricsRetentionFromEnv(env: NodeJS.ProcessEnv = process.env): MetricsRetention {
  const read = (name: string, fallback: number, unit: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback * unit;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number >= 1, got "${raw}"`);
    return n * unit;
  };
  return {
    raw: read('KEEL_METRICS_RAW_RETENTION_HOURS', 48, HOUR),
    '1m': read('KEEL_METRICS_1M_RETENTION_DAYS', 30, DAY),
    '1h': read('KEEL_METRICS_1H_RETENTION_DAYS', 365, DAY),
  };
}

/** What a range query answers: uPlot's columnar data (x in epoch seconds, then one array per series). */
export interface MetricsRangeView {
  resolution: MetricResolution;
  /** Bucket width, ms. */
  stepMs: number;
  from: number;
  to: number;
  series: MetricSeriesName[];
  data: [number[], ...(number | null)[][]];
}

/** Series a chart gets when the query names none. */
export const defaultChartSeries: MetricSeriesName[] = [
  'cpu',
  'load1',
  'mem_used',
  'mem_total',
  'disk_used_max_pct',
  'net_rx_bps',
  'net_tx_bps',
];

/** Largest width a query may ask for (pixels). */
export const MAX_WIDTH = 10_000;

/**
 * The resolution and bucket for a range: the coarsest stored resolution whose step still fits the
 * bucket a `maxPoints` chart needs (finer rows would only be averaged again), among those whose
 * retention reaches back to `from`; the bucket is never finer than the resolution's step and
 * always wide enough that [from, to) holds at most `maxPoints` buckets.
 */
export function pickResolution(
  from: number,
  to: number,
  maxPoints: number,
  now: number,
  retention: MetricsRetention,
): { resolution: MetricResolution; stepMs: number } {
  const span = Math.max(1, to - from);
  // Buckets are aligned to the epoch, so a range can straddle one more than span/step.
  const bucket = Math.ceil(span / Math.max(1, maxPoints - 1));
  const order: MetricResolution[] = ['raw', '1m', '1h'];
  const usable = order.filter((r) => from >= now - retention[r]);
  const candidates = usable.length > 0 ? usable : (['1h'] as MetricResolution[]);
  let resolution = candidates[0]!;
  for (const r of candidates) if (resolutions[r].stepMs <= bucket) resolution = r;
  // Among roll-ups, a coarser one that still gives a point per two pixels (maxPoints is two per
  // pixel) is read instead: a 30-day chart from 720 hourly rows rather than 43,200 minute rows
  // (~40x fewer rows; docs/benchmarks.md, query). Raw ticks are kept where they fit, so a short
  // chart shows the newest tick before the roll-up job has run.
  if (resolution !== 'raw') {
    for (const r of candidates) {
      if (
        resolutions[r].stepMs > resolutions[resolution].stepMs &&
        span / resolutions[r].stepMs >= maxPoints / 4
      ) {
        resolution = r;
      }
    }
  }
  return { resolution, stepMs: Math.max(resolutions[resolution].stepMs, bucket) };
}

/** Most ticks one group commit stores (a bound on the statement's size and the transaction's time). */
export const MAX_GROUP_TICKS = 20_000;

/** How often the write queue accounts traffic from the ticks it stored meanwhile (ms). */
export const TRAFFIC_EVERY_MS = 1_000;
/** Most deferred readings kept when accounting fails (past it the oldest go; see docs/metrics.md). */
const MAX_DEFERRED_READINGS = 500_000;

/**
 * The metrics write queue: batches of every host wait here while a commit runs, then the next
 * commit stores all of them in one transaction (`appendMany`) and answers each — a group commit, as
 * the agent's spool does. One commit at a time, so a busy fleet gets larger groups, not more
 * transactions: at one tick per batch, 1,000 hosts cost one commit instead of 1,000.
 *
 * Traffic accounting (when the repository offers `accountTraffic`) is taken out of the group
 * commits: each commit hands back its new ticks' interface readings, and the queue accounts all of
 * them at most once every `trafficEveryMs` (and, under load, at most a fifth of the time: not
 * sooner than four times the last accounting's duration after it), in its own transaction
 * between two commits. Every
 * reading still goes through the delta rules in order; what changes is how often the per-day and
 * last-reading rows are rewritten (once a second per interface instead of once a commit — under
 * load those rewrites cost more than storing the ticks; docs/benchmarks.md, metrics ingest).
 */
export function createMetricsWriteQueue(
  metrics: Pick<MetricsRepository, 'appendMany'> & Partial<Pick<MetricsRepository, 'accountTraffic'>>,
  options: { trafficEveryMs?: number; onTrafficError?: (err: unknown) => void } = {},
) {
  type Waiter = {
    input: MetricsAppendInput;
    ticks: number;
    resolve: (r: MetricsAppendResult) => void;
    reject: (e: unknown) => void;
  };
  const trafficEveryMs = options.trafficEveryMs ?? TRAFFIC_EVERY_MS;
  const defer = metrics.accountTraffic !== undefined;
  let waiting: Waiter[] = [];
  let running = false;
  let idle: Promise<void> = Promise.resolve();
  let pending: TrafficReading[] = [];
  let lastTraffic = performance.now();
  /** How long the last accounting took: it runs at most a fifth of the queue's time (under load). */
  let lastTrafficMs = 0;
  const trafficDue = () => performance.now() - lastTraffic >= Math.max(trafficEveryMs, 4 * lastTrafficMs);
  let trafficTimer: NodeJS.Timeout | null = null;

  async function accountPending(): Promise<void> {
    if (pending.length === 0) return;
    const readings = pending;
    pending = [];
    const started = performance.now();
    try {
      await metrics.accountTraffic!(readings);
    } catch (err) {
      // Kept for the next turn (bounded): the counters are cumulative, so readings dropped past the
      // bound only move their bytes to the next reading that is accounted.
      pending = readings.concat(pending).slice(-MAX_DEFERRED_READINGS);
      options.onTrafficError?.(err);
    } finally {
      lastTraffic = performance.now();
      lastTrafficMs = lastTraffic - started;
    }
  }

  function scheduleTraffic(): void {
    if (!defer || trafficTimer || pending.length === 0) return;
    trafficTimer = setTimeout(() => {
      trafficTimer = null;
      if (running) return; // the running drain sets the timer again when it ends
      start(true);
    }, trafficEveryMs);
    trafficTimer.unref();
  }

  async function drain(timerTurn = false): Promise<void> {
    try {
      while (waiting.length > 0) {
        let ticks = 0;
        let take = 0;
        while (take < waiting.length && (take === 0 || ticks + waiting[take]!.ticks <= MAX_GROUP_TICKS)) {
          ticks += waiting[take]!.ticks;
          take++;
        }
        const group = waiting.slice(0, take);
        waiting = waiting.slice(take);
        let outcomes: Awaited<ReturnType<MetricsRepository['appendMany']>>;
        try {
          outcomes = await (defer
            ? metrics.appendMany(
                group.map((w) => w.input),
                pending,
              )
            : metrics.appendMany(group.map((w) => w.input)));
        } catch (err) {
          for (const w of group) w.reject(err);
          continue;
        }
        group.forEach((w, i) => {
          const o = outcomes[i];
          if (o?.ok) w.resolve(o.result);
          else w.reject(o ? o.error : new Error('metrics group commit gave no outcome'));
        });
        if (defer && trafficDue()) await accountPending();
      }
      if (timerTurn && trafficDue()) await accountPending();
    } finally {
      running = false;
      // A batch that arrived while this drain was past its loop (the timer's turn, accounting
      // traffic) found it running and started nothing: start again for it. Otherwise it waited for
      // the next append, which for a lone host never came: the gateway stores a host's stream one
      // batch at a time, so its stream stopped there (the metrics footprint benchmark's controller
      // stored 7-95 ticks of its one agent at 1 s sampling, then none, 30 Nov 2026).
      if (waiting.length > 0) start();
      else scheduleTraffic();
    }
  }

  function start(timerTurn = false): void {
    running = true;
    idle = drain(timerTurn);
  }

  return {
    /** Queues one batch; resolves once the commit that stored it is durable. */
    append(input: MetricsAppendInput): Promise<MetricsAppendResult> {
      return new Promise((resolve, reject) => {
        waiting.push({ input, ticks: Math.max(1, input.batch.count), resolve, reject });
        // Start on the next turn of the event loop, so batches that arrived on other sockets in
        // the same turn join the first commit.
        if (!running) {
          running = true;
          setImmediate(() => start());
        }
      });
    },
    /** Batches waiting for the next commit. */
    get waiting(): number {
      return waiting.length;
    },
    /** Waits for the queued batches and accounts every deferred reading now (at a stop). */
    async flush(): Promise<void> {
      while (running) {
        await idle;
        await new Promise((r) => setImmediate(r)); // a drain about to start (append's turn)
      }
      if (trafficTimer) clearTimeout(trafficTimer);
      trafficTimer = null;
      running = true;
      try {
        await accountPending();
      } finally {
        running = false;
      }
      if (waiting.length > 0) {
        start();
        await idle;
      }
    },
  };
}

export interface MetricsServiceDeps {
  hosts: Pick<HostRepository, 'get' | 'list'>;
  metrics: MetricsRepository;
  /** Traffic days are pruned with the metrics (kept as long as hourly roll-ups, plus a cycle). */
  traffic?: Pick<TrafficRepository, 'prune'>;
  log: Logger;
  retention?: MetricsRetention;
  now?: () => number;
  /** For the per-host sampling interval (without them the interval cannot be set). */
  gateway?: Pick<AgentGateway, 'isOnline' | 'isReachable' | 'request'>;
  bus?: Pick<FleetBus, 'subscribe'>;
  audit?: Pick<AuditService, 'record'>;
}

/** A host's sampling interval: the one set from the controller (null: the agent's own setting). */
export interface MetricsSettingsView {
  hostId: string;
  intervalSeconds: number | null;
  /** The interval the agent confirmed it uses now, when it was reached (online and new enough). */
  appliedSeconds: number | null;
  bounds: { min: number; max: number; default: number };
}

/** The fleet overview: sparklines (CPU %, memory %) and the newest figures of every visible host. */
export interface FleetMetricsView {
  from: number;
  to: number;
  stepMs: number;
  /** Bucket starts, epoch seconds, shared by every host's sparklines. */
  x: number[];
  hosts: Record<
    string,
    {
      cpu: (number | null)[];
      mem: (number | null)[];
      latest: {
        at: number;
        cpu: number | null;
        mem: number | null;
        disk: number | null;
        rx: number | null;
        tx: number | null;
      } | null;
    }
  >;
}

/** Span and points of the fleet sparklines: the last hour in 24 buckets of 2.5 minutes. */
export const FLEET_SPARK = { spanMs: HOUR, stepMs: 150_000 };

/** Supervised processes' CPU and RSS as uPlot columns (x in epoch seconds, one column per process). */
export interface ProcessMetricsView {
  resolution: MetricResolution;
  stepMs: number;
  from: number;
  to: number;
  processes: string[];
  cpu: [number[], ...(number | null)[][]];
  rss: [number[], ...(number | null)[][]];
}

export function createMetricsService(deps: MetricsServiceDeps) {
  const { metrics, log } = deps;
  const retention = deps.retention ?? defaultMetricsRetention;
  const now = deps.now ?? Date.now;
  /** Earliest tick stored since the roll-ups last ran (replays after an outage land in the past). */
  let dirtyFrom: number | null = null;
  let lastRun: number | null = null;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;

  const queue = createMetricsWriteQueue(metrics, {
    onTrafficError: (err) => log.error({ err }, 'traffic accounting failed (kept for the next turn)'),
  });
  const sink: StreamSink = {
    async append(hostId, stream, batch) {
      const result = await queue.append({ hostId, stream, batch });
      if (result.stored > 0) {
        const first = decodeRecords(batch.body, batch.count).reduce((m, r) => Math.min(m, r.ts), Infinity);
        if (Number.isFinite(first)) dirtyFrom = Math.min(dirtyFrom ?? first, first);
      }
      if (result.rejected > 0) {
        log.warn(
          { host: hostId, rejected: result.rejected },
          'metrics records that are not samples were skipped',
        );
      }
      if (result.gap) log.warn({ host: hostId, gap: result.gap }, 'metrics ticks lost on the agent');
      return { ackedSeq: result.ackedSeq };
    },
  };

  /** Rolls up what changed since the last run (or the last `catchUpMs` after a start) and prunes. */
  async function maintain(catchUpMs = 2 * HOUR): Promise<void> {
    const at = now();
    const since = Math.min(dirtyFrom ?? Infinity, lastRun ?? at - catchUpMs);
    dirtyFrom = null;
    const minuteFrom = Math.floor(since / 60_000) * 60_000;
    const hourFrom = Math.floor(since / HOUR) * HOUR;
    const end = new Date(at + 1);
    const minuteStart = new Date(Math.max(minuteFrom, at - retention['1m']));
    const hourStart = new Date(Math.max(hourFrom, at - retention['1h']));
    await metrics.rollup('1m', minuteStart, end);
    await metrics.rollupProcesses('1m', minuteStart, end);
    await metrics.rollup('1h', hourStart, end);
    await metrics.rollupProcesses('1h', hourStart, end);
    const pruned = await metrics.prune({
      raw: new Date(at - retention.raw),
      '1m': new Date(at - retention['1m']),
      '1h': new Date(at - retention['1h']),
    });
    if (deps.traffic) {
      const cutoff = new Date(at - retention['1h'] - 31 * DAY).toISOString().slice(0, 10);
      await deps.traffic.prune(cutoff);
    }
    lastRun = at;
    if (pruned.raw + pruned['1m'] + pruned['1h'] > 0) log.debug({ pruned }, 'metrics retention');
  }

  let unsubscribe: (() => void) | null = null;

  /** Sends a host its interval (null: back to its own); the interval the agent now uses, or null. */
  async function pushInterval(hostId: string, seconds: number | null): Promise<number | null> {
    const gateway = deps.gateway;
    // A host held by another replica gets it through that replica (an interval set through this one).
    if (!gateway || !((await gateway.isReachable?.(hostId)) ?? gateway.isOnline(hostId))) return null;
    try {
      const r = await gateway.request(hostId, 'metrics.configure', { intervalSeconds: seconds });
      return r.intervalSeconds;
    } catch (err) {
      const code = err instanceof KeelError ? err.code : undefined;
      if (code === 'agent.unsupported') log.debug({ host: hostId }, 'agent cannot change its interval');
      else log.warn({ err, host: hostId }, 'sending the sampling interval failed');
      return null;
    }
  }

  const bounds = {
    min: METRICS_INTERVAL_MIN_SECONDS,
    max: METRICS_INTERVAL_MAX_SECONDS,
    default: 5,
  };

  async function requireHost(actor: Actor, hostId: string, permission: 'host.view' | 'host.manage') {
    requireHostAccess(actor, permission, [hostId]);
    const host = await deps.hosts.get(hostId);
    if (!host) throw new KeelError('host.not_found');
  }

  return {
    sink,
    maintain,
    pushInterval,

    /** A host's sampling interval as set (host.view). */
    async settings(actor: Actor, hostId: string): Promise<MetricsSettingsView> {
      await requireHost(actor, hostId, 'host.view');
      const set = (await metrics.intervals([hostId])).get(hostId) ?? null;
      return { hostId, intervalSeconds: set, appliedSeconds: null, bounds };
    },

    /**
     * Sets a host's sampling interval (1-60 s; null: the agent's own setting), host.manage,
     * audited; sent to the agent at once when it is online, else when it comes online.
     */
    async setSettings(
      actor: Actor,
      hostId: string,
      body: { intervalSeconds: number | null },
      ip: string | null = null,
    ): Promise<MetricsSettingsView> {
      await requireHost(actor, hostId, 'host.manage');
      const s = body.intervalSeconds;
      if (s !== null && (!Number.isInteger(s) || s < bounds.min || s > bounds.max)) {
        throw new KeelError(
          'request.invalid',
          `intervalSeconds must be a whole number of seconds from ${bounds.min} to ${bounds.max}, or null.`,
        );
      }
      await metrics.setInterval(hostId, s);
      await deps.audit?.record(
        actor.id,
        'host.metrics_settings',
        `host:${hostId}`,
        { intervalSeconds: s },
        ip,
      );
      const applied = await pushInterval(hostId, s);
      return { hostId, intervalSeconds: s, appliedSeconds: applied, bounds };
    },

    /**
     * Sparklines and newest figures for every host the actor sees (host.view on each), in two
     * statements whatever the fleet's size.
     */
    async overview(actor: Actor): Promise<FleetMetricsView> {
      const ids = (await deps.hosts.list()).map((h) => h.id).filter((id) => canSeeHost(actor, id));
      const { spanMs, stepMs } = FLEET_SPARK;
      const to = Math.ceil(now() / stepMs) * stepMs;
      const from = to - spanMs;
      const x = Array.from({ length: spanMs / stepMs }, (_, i) => (from + i * stepMs) / 1000);
      const rows = await metrics.overview(
        ids,
        new Date(from),
        new Date(to),
        stepMs,
        new Date(now() - 5 * 60_000),
      );
      const hosts: FleetMetricsView['hosts'] = {};
      for (const id of ids) hosts[id] = { cpu: x.map(() => null), mem: x.map(() => null), latest: null };
      for (const r of rows.buckets) {
        const h = hosts[r.hostId];
        const i = Math.round((r.b - from) / stepMs);
        if (!h || i < 0 || i >= x.length) continue;
        h.cpu[i] = r.cpu;
        h.mem[i] = r.mem;
      }
      for (const r of rows.latest) {
        const h = hosts[r.hostId];
        if (h) h.latest = { at: r.ts, cpu: r.cpu, mem: r.mem, disk: r.disk, rx: r.rx, tx: r.tx };
      }
      return { from, to, stepMs, x, hosts };
    },

    /** Supervised processes' CPU and RSS of one host over [from, to), at most 2 points per pixel. */
    async processRange(
      actor: Actor,
      hostId: string,
      q: { from?: number; to?: number; width?: number },
    ): Promise<ProcessMetricsView> {
      await requireHost(actor, hostId, 'host.view');
      const to = q.to ?? now();
      const from = q.from ?? to - HOUR;
      if (!(from < to)) throw new KeelError('request.invalid', 'from must be before to.');
      const width = q.width ?? 1_000;
      if (!Number.isInteger(width) || width < 1 || width > MAX_WIDTH) {
        throw new KeelError('request.invalid', `width must be a whole number from 1 to ${MAX_WIDTH}.`);
      }
      const { resolution, stepMs } = pickResolution(from, to, width * 2, now(), retention);
      const c = await metrics.processRange(hostId, resolution, new Date(from), new Date(to), stepMs);
      return {
        resolution,
        stepMs,
        from,
        to,
        processes: c.names,
        cpu: [c.x, ...c.cpu],
        rss: [c.x, ...c.rss],
      };
    },
    /** Metrics batches waiting for the next group commit (the /metrics exposition shows it). */
    get queueWaiting(): number {
      return queue.waiting;
    },
    /** Runs `maintain` now and then every `everyMs` (default a minute) until stop(). */
    start(everyMs = 60_000): void {
      const run = () => {
        running ??= maintain()
          .catch((err: unknown) => log.error({ err }, 'metrics roll-up failed'))
          .finally(() => (running = null));
      };
      run();
      timer = setInterval(run, everyMs);
      timer.unref();
      // A host that comes online gets the interval set for it (an agent restart forgets it).
      unsubscribe =
        deps.bus?.subscribe((event) => {
          if (event.type !== 'host' || !event.host.online) return;
          const id = event.host.id;
          void metrics
            .intervals([id])
            .then((m) => (m.has(id) ? pushInterval(id, m.get(id)!) : null))
            .catch((err: unknown) => log.warn({ err, host: id }, 'reading the sampling interval failed'));
        }) ?? null;
    },
    async stop(): Promise<void> {
      unsubscribe?.();
      unsubscribe = null;
      if (timer) clearInterval(timer);
      timer = null;
      await running;
      await queue.flush();
    },

    /** One host's series over [from, to) for a chart `width` pixels wide (at most 2 points per pixel). */
    async range(
      actor: Actor,
      hostId: string,
      q: { from?: number; to?: number; width?: number; series?: string[] },
    ): Promise<MetricsRangeView> {
      requireHostAccess(actor, 'host.view', [hostId]);
      const host = await deps.hosts.get(hostId);
      if (!host) throw new KeelError('host.not_found');
      const to = q.to ?? now();
      const from = q.from ?? to - HOUR;
      if (!(from < to)) throw new KeelError('request.invalid', 'from must be before to.');
      const width = q.width ?? 1_000;
      if (!Number.isInteger(width) || width < 1 || width > MAX_WIDTH) {
        throw new KeelError('request.invalid', `width must be a whole number from 1 to ${MAX_WIDTH}.`);
      }
      const series = (q.series && q.series.length > 0 ? q.series : defaultChartSeries) as MetricSeriesName[];
      for (const s of series) {
        if (!metricSeriesNames.includes(s))
          throw new KeelError('request.invalid', `Unknown metric series "${s}".`);
      }
      const { resolution, stepMs } = pickResolution(from, to, width * 2, now(), retention);
      const { x, values } = await metrics.range(
        hostId,
        resolution,
        new Date(from),
        new Date(to),
        stepMs,
        series,
      );
      return { resolution, stepMs, from, to, series, data: [x, ...values] };
    },
  };
}

export type MetricsService = ReturnType<typeof createMetricsService>;
