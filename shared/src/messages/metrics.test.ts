// Proves the metrics tick's fast check is never looser than its schema: on a well-formed tick and
// on thousands of mutations of it (wrong types, extra and missing keys, bad numbers, bad labels,
// oversized arrays), whatever the hand-written check accepts zod accepts too, and
// `parseMetricSample` answers exactly as `metricSampleSchema.parse` does (the same value, or a
// refusal).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isWellFormedMetricSample,
  metricSampleSchema,
  metricSeriesNames,
  parseMetricSample,
} from './metrics.ts';

const tick = () => ({
  t: 1_700_000_000_000,
  v: Object.fromEntries(metricSeriesNames.map((n, i) => [n, i % 5 === 0 ? null : i * 1.5])),
  cores: [12.5, null, 3],
  mounts: [{ mount: '/', fs: 'ext4', size: 100e9, used: 40e9 }],
  ifaces: [{ name: 'eth0', rxBps: 1, txBps: null, rxBytes: 1e9, txBytes: 2e9 }],
  temps: [{ name: 'cpu', c: 51.5 }],
  processes: [{ name: 'web-1', cpu: 3.5, rss: 1e8 }],
});

/** Values a field is replaced with. */
const odd: unknown[] = [
  undefined,
  null,
  0,
  -1,
  -0,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 53,
  '',
  '1',
  'x'.repeat(129),
  'a\u0000b',
  'a\ud800',
  '🚀 disk',
  'Web',
  true,
  [],
  [1],
  {},
  { extra: 1 },
  Array.from({ length: 1025 }, () => 1),
];

/** Every tick that differs from a good one in one place (recursively, up to a depth). */
function* mutations(value: unknown, depth = 0): Generator<(root: unknown) => unknown> {
  if (depth > 3 || typeof value !== 'object' || value === null) return;
  const keys = Array.isArray(value) ? value.map((_, i) => String(i)) : Object.keys(value);
  for (const k of keys) {
    for (const o of odd) {
      yield (root) => {
        (root as Record<string, unknown>)[k] = o;
        return root;
      };
    }
    yield (root) => {
      delete (root as Record<string, unknown>)[k];
      return root;
    };
    for (const inner of mutations((value as Record<string, unknown>)[k], depth + 1)) {
      yield (root) => {
        inner((root as Record<string, unknown>)[k]);
        return root;
      };
    }
  }
  if (!Array.isArray(value)) {
    yield (root) => {
      (root as Record<string, unknown>).unknown_key = 1;
      return root;
    };
    yield (root) => {
      Object.defineProperty(root, '__proto__', { value: 1, enumerable: true });
      return root;
    };
  }
}

test('a well-formed tick takes the fast path and equals what zod returns', () => {
  const t = tick();
  assert.equal(isWellFormedMetricSample(t), true);
  assert.deepEqual(parseMetricSample(JSON.parse(JSON.stringify(t))), metricSampleSchema.parse(t));
  assert.equal(isWellFormedMetricSample({ t: 0, v: {} }), true, 'the smallest tick');
});

test('the fast check accepts nothing zod refuses, and parseMetricSample answers as zod does', () => {
  let tried = 0;
  let fast = 0;
  let refused = 0;
  for (const mutate of mutations(tick())) {
    const x = mutate(tick());
    tried++;
    const z = metricSampleSchema.safeParse(x);
    if (isWellFormedMetricSample(x)) {
      fast++;
      assert.ok(z.success, `fast check accepted what zod refuses: ${JSON.stringify(x)}`);
      assert.deepEqual(x, z.data);
    }
    if (z.success) {
      assert.deepEqual(parseMetricSample(x), z.data);
    } else {
      refused++;
      assert.throws(() => parseMetricSample(x));
    }
  }
  // The mutations cover both sides: many refused, some still valid (e.g. a null figure).
  assert.ok(tried > 1_000, `${tried} mutations`);
  assert.ok(refused > 500 && fast > 20, `${refused} refused, ${fast} fast`);
});

test('ticks zod accepts but the fast check leaves to it (unusual, not invalid) still pass', () => {
  const t = tick();
  t.mounts[0]!.mount = '/mnt/🚀';
  assert.equal(isWellFormedMetricSample(t), false);
  assert.deepEqual(parseMetricSample(t), metricSampleSchema.parse(t));
});
