// The metrics capability: samples the host every `intervalSeconds` (5 by default, 1-60) and appends
// one JSON record per tick to the `metrics` stream's spool. The spool keeps what the controller has
// not acked across outages and agent restarts and the link replays it, so history has no gap
// (until the spool bound; then the loss is numbered and shown as a gap by the controller).
// Ticks are aligned to multiples of the interval, so a fleet's samples line up in time.
// The controller may set the interval per host (`metrics.configure`, sent on every change and each
// time the host comes online); it takes effect from the next tick, without a restart. `null` goes
// back to the agent's own setting (KEEL_AGENT_METRICS_INTERVAL).
import {
  METRICS_INTERVAL_DEFAULT_SECONDS,
  METRICS_INTERVAL_MAX_SECONDS,
  METRICS_INTERVAL_MIN_SECONDS,
  metricsStream,
  parseMetricSample,
  type MetricSample,
} from '@keel/shared';
import type { AgentCapability } from '../capabilities.ts';
import { MetricsSampler, type SamplerOptions } from './sampler.ts';

/** Default sampling interval, seconds. */
export const DEFAULT_METRICS_INTERVAL_SECONDS = METRICS_INTERVAL_DEFAULT_SECONDS;

/** Reads `KEEL_AGENT_METRICS_INTERVAL` (seconds, 1-60); throws on anything else. */
export function metricsIntervalFromEnv(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_METRICS_INTERVAL_SECONDS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < METRICS_INTERVAL_MIN_SECONDS || n > METRICS_INTERVAL_MAX_SECONDS) {
    throw new Error(
      `KEEL_AGENT_METRICS_INTERVAL must be a whole number of seconds from ${METRICS_INTERVAL_MIN_SECONDS} to ${METRICS_INTERVAL_MAX_SECONDS}, got "${raw}"`,
    );
  }
  return n;
}

export function metricsCapability(
  opts: {
    intervalSeconds?: number;
    sampler?: SamplerOptions;
    /** Replaces the /proc sampler (tests). */
    sample?: (now: number) => Promise<MetricSample>;
    now?: () => number;
  } = {},
) {
  const ownSeconds = opts.intervalSeconds ?? DEFAULT_METRICS_INTERVAL_SECONDS;
  let intervalMs = ownSeconds * 1000;
  const now = opts.now ?? Date.now;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let started = false;
  let tick: (() => Promise<void>) | null = null;
  let ticking: Promise<void> | null = null;

  // One timer at a time: the next tick is scheduled after the current one finished, at the next
  // multiple of the interval in force then (so a change applies from the next tick).
  const schedule = () => {
    if (stopped || !tick) return;
    if (timer) clearTimeout(timer);
    const wait = intervalMs - (now() % intervalMs);
    timer = setTimeout(() => {
      timer = null;
      const run = tick!;
      ticking = run().finally(() => {
        ticking = null;
        schedule();
      });
    }, wait);
    timer.unref();
  };

  const capability = {
    name: 'metrics',
    streams: [metricsStream.name],
    requests: {
      'metrics.configure': ({ intervalSeconds }) => {
        const next = (intervalSeconds ?? ownSeconds) * 1000;
        if (next !== intervalMs) {
          intervalMs = next;
          // A tick in progress reschedules itself when done; otherwise move the waiting timer.
          if (started && !ticking) schedule();
        }
        return { intervalSeconds: intervalMs / 1000 };
      },
    },
    start(ctx) {
      started = true;
      const spool = ctx.stream(metricsStream.name);
      const sampler = new MetricsSampler(opts.sampler);
      const sample = opts.sample ?? ((t: number) => sampler.sample(t));
      let failures = 0;
      tick = async () => {
        const t = Math.floor(now() / intervalMs) * intervalMs;
        try {
          // The hand-written check the controller runs (zod only for a tick it does not pass): no
          // copy of each tick, and zod's metrics schema is never built in an agent whose ticks pass.
          const record = parseMetricSample(await sample(t));
          spool.append([{ ts: t, payload: Buffer.from(JSON.stringify(record)) }]);
        } catch (err) {
          failures++;
          // Never more than one log line a minute for a persisting failure.
          if (failures === 1 || failures % Math.ceil(60_000 / intervalMs) === 0) {
            ctx.log.error({ err, failures }, 'metrics sample failed');
          }
        }
      };
      // The first tick only primes the counters (rates need two readings); it is stored too.
      ticking = tick().finally(() => {
        ticking = null;
        schedule();
      });
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  } satisfies AgentCapability;
  return Object.assign(capability, {
    /** The interval in force, seconds. */
    intervalSeconds: (): number => intervalMs / 1000,
  });
}
