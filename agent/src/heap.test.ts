// The heap trim: one collection once start-up settled, then one whenever the old generation grew by
// the threshold since the last. The last test runs V8's low-memory collection (through the
// inspector, as the agent does) in a child node on promoted, fragmented garbage and reads RSS.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startHeapTrim } from './heap.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('collects once settled, then only when the old generation grew by the threshold', async () => {
  let heap = 10_000_000;
  let gcs = 0;
  const trim = startHeapTrim({
    collect: async () => {
      gcs++;
      heap = 9_000_000; // what is alive
    },
    used: () => heap,
    settleMs: 30,
    checkMs: 10,
    growthBytes: 1_000_000,
  });
  await sleep(80);
  assert.equal(gcs, 1, 'the settle collection, none since (no growth)');
  heap = 9_500_000;
  await sleep(50);
  assert.equal(gcs, 1, 'grew by less than the threshold');
  heap = 10_100_000;
  await sleep(50);
  assert.equal(gcs, 2, 'grew by the threshold');
  // V8 collected on its own (the heap fell below the last figure): growth counts from there.
  heap = 8_500_000;
  await sleep(30);
  heap = 9_400_000;
  await sleep(50);
  assert.equal(gcs, 2);
  heap = 9_600_000;
  await sleep(50);
  assert.equal(gcs, 3);
  trim.stop();
  heap = 50_000_000;
  await sleep(50);
  assert.equal(gcs, 3, 'stopped');
  assert.equal(trim.collections, 3);
});

test("V8's low-memory collection gives the old generation's pages back (RSS falls)", async () => {
  // A child fills ~15 MB of old generation and keeps every 20th object (fragmented pages, as an
  // agent's start-up leaves them); the trim's first collection must return the pages, which a plain
  // full collection does not (measured: old space 3.2 MB used, 16.5 MB physical after gc()).
  const code = `
    const { startHeapTrim } = await import(${JSON.stringify(join(import.meta.dirname, 'heap.ts'))});
    const { getHeapSpaceStatistics } = await import('node:v8');
    const { readFileSync } = await import('node:fs');
    const oldPhysical = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').physical_space_size;
    const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    let all = [];
    for (let i = 0; i < 200_000; i++) all.push({ i, s: 'y' + i });
    await new Promise((r) => setTimeout(r, 50));
    globalThis.keep = all.filter((_, i) => i % 20 === 0);
    all = null;
    const before = { old: oldPhysical(), anon: anon() };
    const trim = startHeapTrim({ settleMs: 10 });
    while (trim.collections === 0) await new Promise((r) => setTimeout(r, 20));
    trim.stop();
    console.log(JSON.stringify({ before, after: { old: oldPhysical(), anon: anon() }, kept: globalThis.keep.length }));
  `;
  const child = spawn(
    process.execPath,
    ['--max-semi-space-size=1', '--import', 'tsx', '--input-type=module', '-e', code],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exitCode = await new Promise((r) => child.once('exit', r));
  assert.equal(exitCode, 0);
  const { before, after, kept } = JSON.parse(out.trim().split('\n').at(-1)!) as {
    before: { old: number; anon: number };
    after: { old: number; anon: number };
    kept: number;
  };
  assert.equal(kept, 10_000, 'what is alive stays');
  const mb = (n: number) => (n / 1048576).toFixed(1);
  assert.ok(
    before.old - after.old > 4 * 1048576,
    `old space physical ${mb(before.old)} -> ${mb(after.old)} MiB`,
  );
  assert.ok(before.anon - after.anon > 3 * 1048576, `RssAnon ${mb(before.anon)} -> ${mb(after.anon)} MiB`);
});
