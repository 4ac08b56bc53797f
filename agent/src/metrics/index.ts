// The metrics capability: samples the host every `intervalSeconds` (5 by default, 1-60) and appends
// one JSON record per tick to the `metrics` stream's spool. The spool keeps what the controller has
// not acked across outages and agent restarts and the link replays it, so history has no gap
// (until the spool bound; then the loss is numbered and shown as a gap by the controller).
// Ticks are aligned to multiples of the interval, so a fleet's samples line up in time.
import { metricSampleSchema, metricsStream, type MetricSample } from '@keel/shared';
import type { AgentCapability } from '../capabilities.ts';
import { MetricsSampler, type SamplerOptions } from './sampler.ts';

/** Default sampling interval, seconds. */
export const DEFAULT_METRICS_INTERVAL_SECONDS = 5;

/** Reads `KEEL_AGENT_METRICS_INTERVAL` (seconds, 1-60); throws on anything else. */
export function metricsIntervalFromEnv(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_METRICS_INTERVAL_SECONDS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 60) {
    throw new Error(
      `KEEL_AGENT_METRICS_INTERVAL must be a whole number of seconds from 1 to 60, got "${raw}"`,
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
  const intervalMs = (opts.intervalSeconds ?? DEFAULT_METRICS_INTERVAL_SECONDS) * 1000;
  const now = opts.now ?? Date.now;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  return {
    name: 'metrics',
    streams: [metricsStream.name],
    start(ctx) {
      const spool = ctx.stream(metricsStream.name);
      const sampler = new MetricsSampler(opts.sampler);
      const sample = opts.sample ?? ((t: number) => sampler.sample(t));
      let failures = 0;
      const tick = async () => {
        const t = Math.floor(now() / intervalMs) * intervalMs;
        try {
          const record = metricSampleSchema.parse(await sample(t));
          spool.append([{ ts: t, payload: Buffer.from(JSON.stringify(record)) }]);
        } catch (err) {
          failures++;
          // Never more than one log line a minute for a persisting failure.
          if (failures === 1 || failures % Math.ceil(60_000 / intervalMs) === 0) {
            ctx.log.error({ err, failures }, 'metrics sample failed');
          }
        }
      };
      const schedule = () => {
        if (stopped) return;
        const wait = intervalMs - (now() % intervalMs);
        timer = setTimeout(() => {
          void tick().finally(schedule);
        }, wait);
        timer.unref();
      };
      // The first tick only primes the counters (rates need two readings); it is stored too.
      void tick().finally(schedule);
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  } satisfies AgentCapability;
}
