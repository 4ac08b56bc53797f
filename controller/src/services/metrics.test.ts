// Proves the metrics service's rules without a database: a range picks the coarsest resolution
// that still fills the chart and whose retention reaches back far enough, never returns more
// buckets than two per pixel, retention settings read from the environment in their units, and
// the write queue groups batches that wait into one commit while answering each on its own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createMetricsWriteQueue,
  defaultMetricsRetention,
  MAX_GROUP_TICKS,
  metricsRetentionFromEnv,
  pickResolution,
} from './metrics.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const now = Date.UTC(2030, 5, 1);

test('pickResolution: raw for short ranges, roll-ups as ranges grow or leave raw retention', () => {
  const pick = (span: number, width = 800, to = now) =>
    pickResolution(to - span, to, width * 2, now, defaultMetricsRetention);
  assert.deepEqual(pick(15 * 60_000), { resolution: 'raw', stepMs: 1_000 });
  assert.equal(pick(2 * HOUR).resolution, 'raw');
  assert.equal(pick(DAY).resolution, 'raw'); // 54 s buckets: finer than a minute
  assert.equal(pick(2 * DAY).resolution, '1m');
  assert.equal(pick(7 * DAY).resolution, '1m'); // 168 hours would be under a point per 2 px
  // 30 days: hourly roll-ups give 720 points for 800 px, enough; 43,200 minute rows are not read.
  assert.deepEqual(pick(30 * DAY), { resolution: '1h', stepMs: HOUR });
  assert.equal(pick(30 * DAY, 2_000).resolution, '1m', 'a wide chart still gets minutes');
  assert.equal(pick(365 * DAY).resolution, '1h');
  // An hour from three days ago: raw is gone, minutes remain.
  assert.equal(pick(HOUR, 800, now - 3 * DAY).resolution, '1m');
  // Two months ago: only hours.
  assert.equal(pick(HOUR, 800, now - 60 * DAY).resolution, '1h');
});

test('pickResolution: never more buckets than requested points', () => {
  for (const span of [1_000, 59_999, HOUR + 17, 7 * DAY + 3, 400 * DAY]) {
    for (const points of [2, 3, 10, 1999, 20_000]) {
      for (const offset of [0, 1, 499, 59_999]) {
        const to = now - offset;
        const { stepMs } = pickResolution(to - span, to, points, now, defaultMetricsRetention);
        // Buckets are aligned to the epoch: count those [from, to) touches.
        const buckets = Math.floor((to - 1) / stepMs) - Math.floor((to - span) / stepMs) + 1;
        assert.ok(buckets <= points, `span ${span}, ${points} points: ${buckets} buckets of ${stepMs}`);
      }
    }
  }
});

test('metricsRetentionFromEnv: defaults 48 h, 30 d, 365 d; whole units only', () => {
  assert.deepEqual(metricsRetentionFromEnv({}), { raw: 48 * HOUR, '1m': 30 * DAY, '1h': 365 * DAY });
  assert.deepEqual(
    metricsRetentionFromEnv({
      KEEL_METRICS_RAW_RETENTION_HOURS: '6',
      KEEL_METRICS_1M_RETENTION_DAYS: '7',
      KEEL_METRICS_1H_RETENTION_DAYS: '90',
    }),
    { raw: 6 * HOUR, '1m': 7 * DAY, '1h': 90 * DAY },
  );
  assert.throws(() => metricsRetentionFromEnv({ KEEL_METRICS_RAW_RETENTION_HOURS: '0' }));
  assert.throws(() => metricsRetentionFromEnv({ KEEL_METRICS_1H_RETENTION_DAYS: '1.5' }));
});

test('write queue: batches arriving together go in one group commit, each gets its own outcome', async () => {
  const groups: number[] = [];
  let release: () => void = () => {};
  let hold = true;
  const queue = createMetricsWriteQueue({
    async appendMany(inputs) {
      groups.push(inputs.length);
      if (hold) {
        hold = false;
        await new Promise<void>((r) => (release = r));
      }
      return inputs.map((input) =>
        input.hostId === 'bad'
          ? { ok: false as const, error: new Error('bad host') }
          : { ok: true as const, result: { ackedSeq: input.batch.firstSeq, stored: 1, rejected: 0 } },
      );
    },
  });
  const input = (hostId: string, firstSeq: number, count = 1) => ({
    hostId,
    stream: 'metrics',
    batch: { firstSeq, count, body: Buffer.alloc(0) },
  });
  // Three in the same turn: one commit; two more while it runs: the next commit.
  const first = [queue.append(input('a', 1)), queue.append(input('b', 2)), queue.append(input('bad', 3))];
  await new Promise((r) => setImmediate(r));
  const second = [queue.append(input('c', 4)), queue.append(input('d', 5))];
  assert.equal(queue.waiting, 2);
  release();
  assert.deepEqual((await first[0]!).ackedSeq, 1);
  assert.deepEqual((await first[1]!).ackedSeq, 2);
  await assert.rejects(first[2]!, /bad host/);
  assert.deepEqual(
    (await Promise.all(second)).map((r) => r.ackedSeq),
    [4, 5],
  );
  assert.deepEqual(groups, [3, 2]);
  // A group never holds more than MAX_GROUP_TICKS ticks (one oversized batch still goes alone).
  groups.length = 0;
  await Promise.all([
    queue.append(input('e', 1, MAX_GROUP_TICKS - 1)),
    queue.append(input('f', 1, 2)),
    queue.append(input('g', 1, MAX_GROUP_TICKS + 5)),
  ]);
  assert.deepEqual(groups, [1, 1, 1]);
});

test('write queue: a batch that arrives during the timer turn (traffic accounting) is stored', async () => {
  // The timer's turn (no batch waiting, traffic due) awaits the accounting; a batch queued then
  // found the queue running. It must be stored when the turn ends, not at the next append: the
  // gateway sends a host's next batch only after this one is stored, so for a lone host there is
  // no next append.
  let accounting: () => void = () => {};
  let accountingStarted: () => void = () => {};
  const started = new Promise<void>((r) => (accountingStarted = r));
  let accountings = 0;
  const queue = createMetricsWriteQueue(
    {
      async appendMany(inputs, deferTraffic) {
        deferTraffic?.push({ hostId: 'a', ts: 0, ifaces: [] } as unknown as NonNullable<
          typeof deferTraffic
        >[number]);
        return inputs.map((input) => ({
          ok: true as const,
          result: { ackedSeq: input.batch.firstSeq, stored: 1, rejected: 0 },
        }));
      },
      async accountTraffic() {
        accountings++;
        if (accountings === 1) {
          accountingStarted();
          await new Promise<void>((r) => (accounting = r));
        }
      },
    },
    { trafficEveryMs: 5 },
  );
  const input = (firstSeq: number) => ({
    hostId: 'a',
    stream: 'metrics',
    batch: { firstSeq, count: 1, body: Buffer.alloc(0) },
  });
  // The queue's timer is unref'd (it must not keep a controller alive), so this test keeps the
  // event loop alive itself while it waits: in a process with nothing else pending the loop would
  // end and the runner cancel the test (seen in a batch of light files, 2 Dec).
  let timeout: NodeJS.Timeout | undefined;
  const within = <T>(p: Promise<T>, what: string) =>
    Promise.race([
      p,
      new Promise<string>((r) => (timeout = setTimeout(() => r(`${what} after 5 s`), 5_000))),
    ]);
  try {
    assert.equal((await queue.append(input(1))).ackedSeq, 1);
    // The timer's turn is accounting the first batch's reading.
    assert.equal(await within(started, 'no timer turn'), undefined);
    clearTimeout(timeout);
    const second = queue.append(input(2));
    accounting();
    assert.equal(
      await within(
        second.then((r) => r.ackedSeq),
        'still waiting',
      ),
      2,
    );
  } finally {
    clearTimeout(timeout);
  }
});
