// Proves the V8 settings the agent's launcher (agent/bin/keel-agent.mjs) sets on its process take
// effect when set that way (Node refuses them in NODE_OPTIONS): an idle process whose old
// generation grew gets V8's memory reducer (a full collection, then more ~0.5 s apart) within
// ~4 s, where V8's default waits 8 s, and gets it too while it is busy allocating (a start on a
// loaded host), where V8 would wait for a quiet moment. The child is plain node that sets the
// launcher's flags first thing, as the launcher does before it loads the bundle; it exits at its
// first full collection and prints when it came.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const launcher = readFileSync(join(import.meta.dirname, '../bin/keel-agent.mjs'), 'utf8');
const heapFlags = JSON.parse(
  /^const heapFlags = (\[[^\]]*\]);$/m
    .exec(launcher)![1]!
    .replaceAll("'", '"')
    .replace(/,(\s*)\]$/, '$1]'),
) as string[];

const child = (withFlags: boolean, busy = false) => `
  const { setFlagsFromString } = await import('node:v8');
  ${withFlags ? `for (const f of ${JSON.stringify(heapFlags)}) setFlagsFromString(f);` : ''}
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  const t0 = performance.now();
  // ~2 MB kept a moment and dropped: the old generation grows (what starts the memory reducer)
  // without a full collection (after one, V8 waits its fixed 8 s whatever the flag).
  let keep = [];
  for (let i = 0; i < 20_000; i++) keep.push({ i, s: 'x'.repeat(64) + i });
  await new Promise((r) => setTimeout(r, 50));
  keep = null;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        console.log(String(Math.round(performance.now() - t0)));
        process.exit(0);
      }
  }).observe({ entryTypes: ['gc'] });
  ${busy ? 'let sink; setInterval(() => { for (let i = 0; i < 8000; i++) sink = { i, a: [i, i + 1] }; }, 10);' : ''}
  setTimeout(() => { console.log('none'); process.exit(0); }, 12_000);
`;

/**
 * Asynchronous on purpose: this file may share a node process with other light files (the test
 * runner's batches), whose in-process controllers must keep answering their agents' heartbeats
 * while these children run for up to 12 s each. A spawnSync here once failed jobs-scheduler's runs.
 */
async function firstFullCollectionMs(withFlags: boolean, busy = false): Promise<number | 'none'> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '--max-semi-space-size=1', '-e', child(withFlags, busy)],
    { encoding: 'utf8', timeout: 30_000 },
  );
  const out = stdout.trim();
  return out === 'none' ? 'none' : Number(out);
}

test('the launcher sets its V8 flags before it loads the agent', () => {
  assert.deepEqual(heapFlags, [
    '--gc-memory-reducer-start-delay-ms=4000',
    '--bytecode-old-age=1',
    '--optimize-for-size',
    '--interrupt-budget=675840',
  ]);
  assert.ok(launcher.indexOf('setFlagsFromString(flag)') < launcher.indexOf('await import('));
  // --optimize-for-size is for the start only: switched off again after 30 s.
  assert.match(launcher, /^const startOnlyMs = 30_000;$/m);
  assert.match(launcher, /setTimeout\(\(\) => setFlagsFromString\('--no-optimize-for-size'\), startOnlyMs\)/);
});

test(
  'the memory reducer returns start-up garbage after ~4 s instead of 8 s',
  { timeout: 60_000 },
  async () => {
    const withFlags = await firstFullCollectionMs(true);
    const without = await firstFullCollectionMs(false);
    assert.notEqual(withFlags, 'none', 'no full collection within 12 s with the flags');
    assert.ok((withFlags as number) < 7_500, `first full collection after ${withFlags} ms with the flags`);
    // V8's default, for comparison: not before its 8 s (or none in the 12 s).
    assert.ok(without === 'none' || without >= 7_500, `without the flags: ${without} ms`);
  },
);

test(
  'with the flags a busy process gets its first full collection at ~4 s too',
  { timeout: 60_000 },
  async () => {
    // Allocating ~100 MB/s of short-lived objects: V8's memory reducer alone would find the
    // allocation rate high and wait (measured: no full collection in 10 s without
    // --optimize-for-size).
    const busy = await firstFullCollectionMs(true, true);
    assert.notEqual(busy, 'none', 'no full collection within 12 s while busy');
    assert.ok((busy as number) < 7_500, `first full collection after ${busy} ms while busy`);
  },
);
