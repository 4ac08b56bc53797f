// Proves the batch loader coalesces concurrent lookups, keeps one batch in flight, caps batch
// size, answers duplicates and misses, and hands a failure to exactly the waiters of that batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchLoader, BatchTimeout } from './batch-loader.ts';

test('concurrent loads become few batches, one in flight at a time', async () => {
  const batches: number[][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const loader = new BatchLoader<number, string>(
    async (keys) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      batches.push(keys);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return new Map(keys.filter((k) => k % 2 === 0).map((k) => [k, `v${k}`]));
    },
    { maxBatch: 100 },
  );
  const keys = Array.from({ length: 250 }, (_, i) => i);
  const results = await Promise.all([...keys, 4, 4].map((k) => loader.load(k)));
  assert.equal(results[4], 'v4');
  assert.equal(results[5], undefined);
  assert.equal(results[250], 'v4');
  assert.equal(maxInFlight, 1);
  assert.deepEqual(
    batches.map((b) => b.length),
    [100, 100, 50],
  );
});

test('a failing batch rejects its waiters only', async () => {
  let calls = 0;
  const loader = new BatchLoader<string, number>(async (keys) => {
    calls++;
    if (calls === 1) throw new Error('db down');
    return new Map(keys.map((k) => [k, k.length]));
  });
  const first = loader.load('a');
  await assert.rejects(first, /db down/);
  assert.equal(await loader.load('abc'), 3);
});

test('with a linger, keys that arrive over a few milliseconds share one batch', async () => {
  const batches: string[][] = [];
  const loader = new BatchLoader<string, string>(
    async (keys) => {
      batches.push(keys);
      return new Map(keys.map((k) => [k, k.toUpperCase()]));
    },
    { lingerMs: 20 },
  );
  const first = loader.load('a');
  await new Promise((r) => setTimeout(r, 5));
  const second = loader.load('b');
  assert.deepEqual(await Promise.all([first, second]), ['A', 'B']);
  assert.deepEqual(batches, [['a', 'b']]);
});

test('a stalled batch times out; while it runs later lookups fail fast, then queries resume', async () => {
  let calls = 0;
  let unstick: (v: Map<string, number>) => void = () => {};
  const loader = new BatchLoader<string, number>(
    (keys) => {
      calls++;
      // The first query hangs (a stuck connection) until released; later ones answer.
      if (calls === 1) return new Promise((resolve) => (unstick = resolve));
      return Promise.resolve(new Map(keys.map((k) => [k, k.length])));
    },
    { timeoutMs: 50 },
  );
  await assert.rejects(loader.load('a'), BatchTimeout);
  // The stuck query still runs: no second query is sent, the lookup fails at once.
  await assert.rejects(loader.load('abc'), BatchTimeout);
  assert.equal(calls, 1);
  unstick(new Map());
  await new Promise((r) => setImmediate(r));
  assert.equal(await loader.load('abcd'), 4);
  assert.equal(calls, 2);
});
