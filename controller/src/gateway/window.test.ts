// Proves the stream window shrinks with the fleet so all sessions together stay near the ingest
// budget, and never below one batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamWindow } from './index.ts';

test('full window for a small fleet, a share of the budget for a large one, one batch at least', () => {
  const MiB = 1024 * 1024;
  assert.equal(streamWindow(8 * MiB, 1), 8 * MiB);
  assert.equal(streamWindow(8 * MiB, 64), 8 * MiB);
  assert.equal(streamWindow(8 * MiB, 1024), 512 * 1024);
  assert.ok(streamWindow(8 * MiB, 1024) * 1024 <= 512 * MiB);
  assert.equal(streamWindow(8 * MiB, 100_000), 256 * 1024);
});
