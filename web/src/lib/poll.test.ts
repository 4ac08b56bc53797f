// Proves the polling helper: loads at once and again after each load, reports each outcome,
// never runs two loads at once, and after stop neither reports nor loads again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { poll } from './poll.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `done()` (not a fixed time: on a busy machine a 5 ms timer may fire much later). */
async function until(done: () => boolean, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!done()) {
    assert.ok(Date.now() < end, 'timed out');
    await sleep(5);
  }
}

test('loads now and after each load; reports failures; stop ends it and aborts', async () => {
  let calls = 0;
  let running = 0;
  let overlap = false;
  let lastSignal: AbortSignal | null = null;
  const outcomes: unknown[] = [];
  const stop = poll(
    async (signal) => {
      calls++;
      running++;
      overlap ||= running > 1;
      lastSignal = signal;
      await sleep(5);
      running--;
      if (calls === 2) throw new Error('down');
    },
    5,
    (err) => outcomes.push(err === null ? 'ok' : (err as Error).message),
  );
  await until(() => outcomes.length >= 3);
  stop();
  const seen = calls;
  assert.ok(seen >= 3, `only ${seen} loads`);
  assert.equal(overlap, false);
  assert.deepEqual(outcomes.slice(0, 3), ['ok', 'down', 'ok']);
  assert.equal(lastSignal!.aborted, true);
  const reported = outcomes.length;
  await sleep(30);
  assert.equal(calls, seen, 'no load after stop');
  assert.equal(outcomes.length, reported, 'no report after stop');
});
