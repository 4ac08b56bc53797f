// Keeps the idle agent's JavaScript heap near what it holds alive (issue 9: agent RSS <= 60 MB,
// as the maximum over 5 minutes, not only the mean). Measured (docs/benchmarks.md, metrics
// footprint): an idle agent holds 58.7-59.1 MiB for its first ~20 s (start-up garbage: parsing, the
// handshake, the first facts) and spikes to 59.5 when V8's memory reducer finally compacts, then
// settles at 56.0-56.8 MiB (a young-generation sawtooth of 0.8 MiB). A plain full collection
// (`--expose-gc`'s gc()) frees the objects but keeps the old generation's pages (RSS unchanged);
// what gives them back is V8's low-memory collection (mark-compact that compacts and shrinks, as the
// memory reducer runs it), which Node offers only through the inspector protocol's
// `HeapProfiler.collectGarbage` (an in-process session; no port is opened).
//
// So the agent runs it once shortly after its first session is up (start-up garbage gone before the
// first minute), then whenever the old generation grew by `growthBytes` since the last collection,
// looked at every `checkMs`: at 5 s sampling the idle agent promotes a few KB a second, so that is
// one collection every few minutes, each a few tens of milliseconds of CPU.
import type * as Inspector from 'node:inspector';
import { getHeapSpaceStatistics } from 'node:v8';

export interface HeapTrimOptions {
  /** The collector (default: V8's low-memory collection through node:inspector). */
  collect?: () => Promise<void>;
  /** First collection this long after start, ms. */
  settleMs?: number;
  /** How often the heap's growth is looked at, ms. */
  checkMs?: number;
  /** Collect when the old generation grew by this many bytes since the last collection. */
  growthBytes?: number;
  /** The old generation's used bytes (tests). */
  used?: () => number;
}

export interface HeapTrim {
  stop(): void;
  /** Collections made so far. */
  readonly collections: number;
}

/** V8's low-memory collection (what `isolate->LowMemoryNotification()` runs), or null without an inspector. */
export async function lowMemoryCollection(): Promise<void> {
  let inspector: typeof Inspector;
  try {
    inspector = await import('node:inspector');
  } catch {
    return; // Node built without the inspector: V8's own memory reducer is all there is.
  }
  const session = new inspector.Session();
  session.connect();
  try {
    await new Promise<void>((resolve, reject) =>
      session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())),
    );
  } finally {
    session.disconnect();
  }
}

export function startHeapTrim(opts: HeapTrimOptions = {}): HeapTrim {
  const collect = opts.collect ?? lowMemoryCollection;
  const used = opts.used ?? oldGenerationUsed;
  const growth = opts.growthBytes ?? 1024 * 1024;
  let collections = 0;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let busy = false;
  let base = Infinity;
  const run = () => {
    if (busy || stopped) return;
    busy = true;
    collect().then(
      () => {
        collections++;
        base = used();
        busy = false;
      },
      () => {
        busy = false; // tried again at the next check
      },
    );
  };
  const first = setTimeout(() => {
    run();
    timer = setInterval(() => {
      const now = used();
      // V8 may have collected on its own since: growth counts from the lowest figure seen.
      base = Math.min(base, now);
      if (now - base >= growth) run();
    }, opts.checkMs ?? 15_000);
    timer.unref();
  }, opts.settleMs ?? 3_000);
  first.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(first);
      if (timer) clearInterval(timer);
    },
    get collections() {
      return collections;
    },
  };
}

/** Bytes used outside the young generation (old, code, large-object spaces): what a scavenge keeps. */
function oldGenerationUsed(): number {
  let sum = 0;
  for (const s of getHeapSpaceStatistics()) {
    if (!s.space_name.startsWith('new_')) sum += s.space_used_size;
  }
  return sum;
}
