// The checks capability: holds the set of service checks the controller pushed (`checks.apply`,
// kept on disk with its generation so a restart keeps running them and an older push never
// replaces a newer one), runs each on its interval, and appends every result to the `checks`
// stream's spool. A check that a push adds or changes runs at once (then on its interval), so a new
// check shows a result within seconds instead of after a whole interval; a check the push leaves as
// it was keeps its timer (a reconnect's push of the same set restarts nothing). The spool keeps what the controller has not acked across outages, so results made
// while it is unreachable arrive afterwards under the time they were made.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  checkResultSchema,
  checkSpecSchema,
  checksStream,
  MAX_CHECKS_PER_HOST,
  type CheckSpec,
} from '@keel/shared';
import type { AgentCapability, CapabilityContext } from '../capabilities.ts';
import { runProbe } from './probes.ts';

const stateSchema = z.strictObject({
  generation: z.number().int().nonnegative(),
  checks: z.array(checkSpecSchema).max(MAX_CHECKS_PER_HOST),
});
type ChecksState = z.output<typeof stateSchema>;

/** Probes running at once at most; a check due while all slots are busy waits for one. */
const MAX_CONCURRENT = 16;

function readState(file: string): ChecksState {
  try {
    return stateSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return { generation: 0, checks: [] };
  }
}

function writeState(file: string, state: ChecksState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/**
 * The checks capability. `dir` holds `checks.json` (the pushed set); `probe` replaces the real
 * probes (tests).
 */
export function checksCapability(opts: {
  dir: string;
  probe?: typeof runProbe;
  now?: () => number;
}): AgentCapability {
  const file = join(opts.dir, 'checks.json');
  const probe = opts.probe ?? runProbe;
  const now = opts.now ?? Date.now;
  let state: ChecksState = { generation: 0, checks: [] };
  const timers = new Map<string, NodeJS.Timeout>();
  /** What each scheduled check runs (its spec as JSON), to tell a changed check from a kept one. */
  const scheduled = new Map<string, string>();
  /** Runs in flight, by spec: an edited check's first run does not wait for the old spec's. */
  const running = new Set<string>();
  let slots = MAX_CONCURRENT;
  const waiting: (() => void)[] = [];
  let ctx: CapabilityContext | null = null;
  let stopped = false;
  let failures = 0;

  const acquire = () =>
    slots > 0 ? (slots--, Promise.resolve()) : new Promise<void>((r) => waiting.push(r));
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else slots++;
  };

  async function runOnce(spec: CheckSpec, key: string): Promise<void> {
    if (running.has(key)) return; // the previous run is still going: skip, do not pile up
    running.add(key);
    await acquire();
    try {
      if (stopped || scheduled.get(spec.id) !== key) return; // removed or changed meanwhile
      const result = checkResultSchema.parse(await probe(spec, now));
      ctx?.stream(checksStream.name).append([{ ts: result.t, payload: Buffer.from(JSON.stringify(result)) }]);
    } catch (err) {
      failures++;
      if (failures === 1 || failures % 100 === 0)
        ctx?.log.error({ err, failures }, 'check result not spooled');
    } finally {
      release();
      running.delete(key);
    }
  }

  function unschedule(id: string): void {
    const t = timers.get(id);
    if (t) clearInterval(t); // a pending first setTimeout is cleared the same way
    timers.delete(id);
    scheduled.delete(id);
  }

  /**
   * Runs `list` from now on. `fresh`: the set was pushed (not read back at start), so a check it
   * adds or changes runs at once — unless the push brings more than MAX_CONCURRENT of them (a new
   * host's whole set), whose first runs are spread over up to 5 s, as at start, so they do not all
   * fire together every interval. A check whose spec is unchanged keeps its timer.
   */
  function schedule(list: readonly CheckSpec[], fresh: boolean): void {
    const wanted = new Map(list.map((spec) => [spec.id, JSON.stringify(spec)] as const));
    for (const id of [...timers.keys()]) if (scheduled.get(id) !== wanted.get(id)) unschedule(id);
    const starting = list.filter((spec) => !timers.has(spec.id));
    const atOnce = fresh && starting.length <= MAX_CONCURRENT;
    for (const spec of starting) {
      const key = wanted.get(spec.id)!;
      const every = spec.intervalSeconds * 1000;
      // Spread the first runs over the interval (by id) so a large set does not fire at once.
      const offset = atOnce ? 0 : parseInt(spec.id.slice(0, 8), 16) % Math.min(every, 5_000);
      scheduled.set(spec.id, key);
      const first = setTimeout(() => {
        if (scheduled.get(spec.id) !== key) return;
        void runOnce(spec, key);
        const t = setInterval(() => void runOnce(spec, key), every);
        t.unref();
        timers.set(spec.id, t);
      }, offset);
      first.unref();
      timers.set(spec.id, first);
    }
  }

  return {
    name: 'checks',
    streams: [checksStream.name],
    requests: {
      'checks.apply': (params) => {
        if (params.generation < state.generation) {
          return { generation: state.generation, count: state.checks.length };
        }
        state = stateSchema.parse({ generation: params.generation, checks: params.checks });
        mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
        writeState(file, state);
        if (!stopped) schedule(state.checks, true);
        ctx?.log.info({ generation: state.generation, checks: state.checks.length }, 'checks applied');
        return { generation: state.generation, count: state.checks.length };
      },
    },
    start(c) {
      ctx = c;
      state = readState(file);
      schedule(state.checks, false);
    },
    stop() {
      stopped = true;
      for (const id of [...timers.keys()]) unschedule(id);
    },
  };
}
