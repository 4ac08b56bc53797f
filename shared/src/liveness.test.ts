// Proves the dead-peer rule: dropped after the set number of silent periods, kept when heard, and
// a period in which our own loop stalled is not counted against the peer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Liveness } from './liveness.ts';

test('a silent peer is dead after two whole periods, a heard one never', { timeout: 5_000 }, () => {
  const live = new Liveness(1_000, 2, 0);
  assert.equal(live.tick(1_000), false, 'first period: heard at connect');
  assert.equal(live.tick(2_000), false, 'one silent period');
  assert.equal(live.tick(3_000), true, 'two silent periods');

  const heard = new Liveness(1_000, 2, 0);
  for (let t = 1_000; t <= 10_000; t += 1_000) {
    heard.heard();
    assert.equal(heard.tick(t), false);
  }
});

test('a silence is forgiven once heard again', { timeout: 5_000 }, () => {
  const live = new Liveness(1_000, 2, 0);
  live.tick(1_000);
  assert.equal(live.tick(2_000), false);
  live.heard();
  assert.equal(live.tick(3_000), false, 'heard resets the count');
  assert.equal(live.tick(4_000), false);
  assert.equal(live.tick(5_000), true);
});

test('a period our own loop stalled through is not counted', { timeout: 5_000 }, () => {
  const live = new Liveness(1_000, 2, 0);
  live.tick(1_000);
  assert.equal(live.tick(2_000), false);
  // The timer fired 4 s late: the peer's pong may be queued behind it.
  assert.equal(live.tick(6_000), false);
  live.heard();
  assert.equal(live.tick(7_000), false);
});

test('one miss can be configured', { timeout: 5_000 }, () => {
  const live = new Liveness(500, 1, 0);
  live.tick(500);
  assert.equal(live.tick(1_000), true);
});
