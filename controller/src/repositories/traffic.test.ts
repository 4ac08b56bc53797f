// Proves traffic accounting on every test driver: interface counters of stored metrics ticks become
// exact bytes per UTC day and per billing cycle across a reboot (counters back to zero), a 32-bit
// wrap, a re-created interface and a cycle boundary; a resent tick and loopback are never counted;
// a group commit of many hosts stores each host's batch while an unknown host fails alone; and the
// metrics write queue, which accounts after its commits, counts the same bytes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { asc, eq } from 'drizzle-orm';
import { encodeRecords, KeelError, type MetricSample, type RecordBatch } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { hosts as hostsTable } from '../db/schema/hosts.ts';
import { trafficDaily } from '../db/schema/traffic.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { createMetricsWriteQueue } from '../services/metrics.ts';
import { billingCycle, createTrafficService } from '../services/traffic.ts';
import { createMetricsRepository, type MetricsRepository } from './metrics.ts';
import { counterDelta, createTrafficRepository, trafficDay, type TrafficRepository } from './traffic.ts';

const TICK = 5_000;
/** 2030-01-14 23:59:45 UTC: four ticks before the 15th, the host's reset day. */
const T0 = Date.UTC(2030, 0, 15) - 3 * TICK;

interface Reading {
  /** Tick index from T0. */
  i: number;
  uptime: number;
  eth0: [number, number];
  wg0?: [number, number];
  lo?: [number, number];
}

function sample(r: Reading): MetricSample {
  const ifaces = [
    { name: 'eth0', rxBps: null, txBps: null, rxBytes: r.eth0[0], txBytes: r.eth0[1] },
    ...(r.wg0 ? [{ name: 'wg0', rxBps: null, txBps: null, rxBytes: r.wg0[0], txBytes: r.wg0[1] }] : []),
    ...(r.lo ? [{ name: 'lo', rxBps: null, txBps: null, rxBytes: r.lo[0], txBytes: r.lo[1] }] : []),
  ];
  return { t: T0 + r.i * TICK, v: { cpu: 1, uptime: r.uptime }, ifaces };
}

function batch(firstSeq: number, readings: Reading[]): RecordBatch {
  const records = readings.map((r) => ({
    ts: T0 + r.i * TICK,
    payload: Buffer.from(JSON.stringify(sample(r))),
  }));
  return { firstSeq, count: records.length, body: encodeRecords(records) };
}

test('counterDelta: forward, reboot, 32-bit wrap, reset', () => {
  assert.equal(counterDelta(100, 250, 5, false), 150);
  assert.equal(counterDelta(5_000_000_000, 700, 5, true), 700, 'a reboot counts from zero');
  assert.equal(counterDelta(2 ** 32 - 100, 50, 5, false), 150, 'a 32-bit counter in its upper half wrapped');
  assert.equal(
    counterDelta(1_000_000, 300, 5, false),
    300,
    'low 32-bit value going back: a reset, not a wrap',
  );
  assert.equal(counterDelta(10_000_000_000, 300, 5, false), 300, 'a 64-bit counter going back: a reset');
  assert.equal(
    trafficDay(Date.UTC(2030, 0, 15)),
    '2030-01-14',
    'a delta ending at midnight belongs to the day before',
  );
  assert.equal(trafficDay(Date.UTC(2030, 0, 15) + 1), '2030-01-15');
});

test('billingCycle: reset day, short months, year boundary', () => {
  const iso = (c: { start: number; end: number }) => [
    new Date(c.start).toISOString(),
    new Date(c.end).toISOString(),
  ];
  assert.deepEqual(iso(billingCycle(15, Date.UTC(2030, 0, 20))), [
    '2030-01-15T00:00:00.000Z',
    '2030-02-15T00:00:00.000Z',
  ]);
  assert.deepEqual(iso(billingCycle(15, Date.UTC(2030, 0, 10))), [
    '2029-12-15T00:00:00.000Z',
    '2030-01-15T00:00:00.000Z',
  ]);
  assert.deepEqual(iso(billingCycle(15, Date.UTC(2030, 0, 15))), [
    '2030-01-15T00:00:00.000Z',
    '2030-02-15T00:00:00.000Z',
  ]);
  // The 31st in February is its last day; March's cycle starts on the 31st again.
  assert.deepEqual(iso(billingCycle(31, Date.UTC(2030, 2, 10))), [
    '2030-02-28T00:00:00.000Z',
    '2030-03-31T00:00:00.000Z',
  ]);
  assert.deepEqual(iso(billingCycle(1, Date.UTC(2030, 11, 31, 23))), [
    '2030-12-01T00:00:00.000Z',
    '2031-01-01T00:00:00.000Z',
  ]);
});

for (const target of testDatabaseTargets()) {
  describe(`traffic accounting (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let metrics: MetricsRepository;
    let traffic: TrafficRepository;

    const newHost = async () => {
      const [row] = await db
        .insert(hostsTable)
        .values({ name: 'h', publicKey: randomBytes(32).toString('base64url') })
        .returning({ id: hostsTable.id });
      return row!.id;
    };

    before(async () => {
      testDb = await target.create();
      handle = await testDb.open();
      db = handle.db;
      metrics = createMetricsRepository(db);
      traffic = createTrafficRepository(db);
    });
    after(() => testDb.cleanup());

    test('exact across a reboot, a wrap, a re-created interface and a cycle boundary', async () => {
      const host = await newHost();
      const audited: unknown[] = [];
      const service = createTrafficService({
        hosts: { get: async () => ({ id: host }) as never },
        traffic,
        audit: { record: async (...a: unknown[]) => void audited.push(a) } as never,
      });
      const owner = { id: 'u', role: 'owner' as const };
      await service.setPlan(owner, host, { resetDay: 15, quotaBytes: 10_000 });
      assert.equal(audited.length, 1);

      // Ticks 0..2 on the 14th (23:59:45, :50, :55), tick 3 is 00:00:00 on the 15th (its delta
      // belongs to the 14th), then the 15th.
      const readings: Reading[] = [
        // Baseline: what moved before the first reading is unknown, not counted.
        { i: 0, uptime: 1000, eth0: [1_000, 2_000], wg0: [2 ** 32 - 300, 10], lo: [5, 5] },
        { i: 1, uptime: 1005, eth0: [1_100, 2_050], wg0: [2 ** 32 - 100, 20], lo: [900, 900] },
        // wg0 rx wrapped at 2^32: 100 + 40.
        { i: 2, uptime: 1010, eth0: [1_300, 2_100], wg0: [40, 30], lo: [1_000, 1_000] },
        { i: 3, uptime: 1015, eth0: [1_310, 2_101], wg0: [41, 31] },
      ];
      const r1 = await metrics.append(host, 'metrics', batch(1, readings));
      assert.equal(r1.stored, 4);
      // Resent (after a reconnect) with the next ticks: the resent ones count nothing.
      const more: Reading[] = [
        ...readings.slice(2),
        // 00:00:05 on the 15th.
        { i: 4, uptime: 1020, eth0: [1_500, 2_300], wg0: [45, 35] },
        // Rebooted: uptime 3 s, counters from zero (eth0 moved 70/80 since boot).
        { i: 5, uptime: 3, eth0: [70, 80], wg0: [1, 1] },
        { i: 6, uptime: 8, eth0: [170, 180], wg0: [2, 2] },
        // wg0 re-created (counter reset, no reboot, low value: not a wrap).
        { i: 7, uptime: 13, eth0: [270, 280], wg0: [5, 6] },
      ];
      const r2 = await metrics.append(host, 'metrics', batch(3, more));
      assert.equal(r2.stored, 4, 'ticks 2 and 3 were already stored');

      const days = await db
        .select({
          iface: trafficDaily.iface,
          day: trafficDaily.day,
          rx: trafficDaily.rxBytes,
          tx: trafficDaily.txBytes,
        })
        .from(trafficDaily)
        .where(eq(trafficDaily.hostId, host))
        .orderBy(asc(trafficDaily.day), asc(trafficDaily.iface));
      assert.deepEqual(days, [
        // 14th: eth0 100+200+10 / 50+50+1; wg0 200+140+1 / 10+10+1 (tick 3 ends at midnight).
        { iface: 'eth0', day: '2030-01-14', rx: 310, tx: 101 },
        { iface: 'wg0', day: '2030-01-14', rx: 341, tx: 21 },
        // 15th: eth0 190+70+100+100 / 199+80+100+100; wg0 4+1+1+3 / 4+1+1+4.
        { iface: 'eth0', day: '2030-01-15', rx: 460, tx: 479 },
        { iface: 'wg0', day: '2030-01-15', rx: 9, tx: 10 },
      ]);

      const now = await service.usage(host, Date.UTC(2030, 0, 20));
      assert.deepEqual(now.cycle, { start: Date.UTC(2030, 0, 15), end: Date.UTC(2030, 1, 15) });
      assert.deepEqual(now.interfaces, [
        { iface: 'eth0', rxBytes: 460, txBytes: 479 },
        { iface: 'wg0', rxBytes: 9, txBytes: 10 },
      ]);
      assert.equal(now.totalBytes, 958);
      assert.equal(now.quotaUsedPct, 9.58);
      const before15 = await service.usage(host, Date.UTC(2030, 0, 10));
      assert.equal(before15.rxBytes, 651);
      assert.equal(before15.txBytes, 122);
      // Moving the reset day moves the boundary over whole days.
      await service.setPlan(owner, host, { resetDay: 14, quotaBytes: null });
      const moved = await service.usage(host, Date.UTC(2030, 0, 20));
      assert.equal(moved.totalBytes, 651 + 122 + 958);
      assert.equal(moved.quotaUsedPct, null);
      const many = await service.usageMany([host], Date.UTC(2030, 0, 20));
      assert.equal(many.get(host)!.totalBytes, 651 + 122 + 958);
      await assert.rejects(
        service.setPlan(owner, host, { resetDay: 32, quotaBytes: null }),
        (e: unknown) => e instanceof KeelError && e.code === 'request.invalid',
      );
    });

    test('one group commit for many hosts; an unknown host fails alone', async () => {
      const a = await newHost();
      const b = await newHost();
      const ghost = '00000000-0000-4000-8000-000000000000';
      const outcomes = await metrics.appendMany([
        {
          hostId: a,
          stream: 'metrics',
          batch: batch(1, [
            { i: 0, uptime: 1, eth0: [0, 0] },
            { i: 1, uptime: 6, eth0: [10, 20] },
          ]),
        },
        { hostId: ghost, stream: 'metrics', batch: batch(1, [{ i: 0, uptime: 1, eth0: [0, 0] }]) },
        { hostId: b, stream: 'metrics', batch: batch(5, [{ i: 0, uptime: 1, eth0: [0, 0] }]) },
        { hostId: b, stream: 'metrics', batch: { firstSeq: 1, count: 2, body: Buffer.from('x') } },
      ]);
      assert.deepEqual(outcomes[0], { ok: true, result: { ackedSeq: 2, stored: 2, rejected: 0 } });
      assert.ok(
        !outcomes[1]!.ok &&
          outcomes[1]!.error instanceof KeelError &&
          outcomes[1]!.error.code === 'host.not_found',
      );
      assert.deepEqual(outcomes[2], {
        ok: true,
        result: { ackedSeq: 5, stored: 1, rejected: 0, gap: { fromSeq: 1, toSeq: 4 } },
      });
      assert.ok(
        !outcomes[3]!.ok &&
          outcomes[3]!.error instanceof KeelError &&
          outcomes[3]!.error.code === 'stream.invalid',
      );
      assert.deepEqual(await traffic.totals(a, '2030-01-01', '2030-02-01'), [
        { iface: 'eth0', rxBytes: 10, txBytes: 20 },
      ]);
    });

    test('the write queue accounts traffic after its commits: exact bytes, a resend and a deleted host', async () => {
      const a = await newHost();
      const gone = await newHost();
      // A long interval: nothing is accounted until flush() (or the next due turn).
      const queue = createMetricsWriteQueue(metrics, { trafficEveryMs: 60_000 });
      const append = (hostId: string, firstSeq: number, readings: Reading[]) =>
        queue.append({ hostId, stream: 'metrics', batch: batch(firstSeq, readings) });
      // Batches of one host in order across several commits, a reboot in the middle, a midnight
      // (T0 + 3 ticks) between them.
      await append(a, 1, [{ i: 0, uptime: 100, eth0: [1_000, 2_000] }]);
      await append(a, 2, [{ i: 1, uptime: 105, eth0: [1_300, 2_050] }]);
      await append(a, 3, [{ i: 2, uptime: 2, eth0: [40, 7] }]); // rebooted: from zero
      await append(a, 4, [
        { i: 3, uptime: 7, eth0: [90, 17] },
        { i: 4, uptime: 12, eth0: [190, 18] },
      ]);
      await append(a, 3, [{ i: 2, uptime: 2, eth0: [40, 7] }]); // a resend: stored nothing, counts nothing
      await append(gone, 1, [{ i: 0, uptime: 1, eth0: [0, 0] }]);
      await append(gone, 2, [{ i: 1, uptime: 6, eth0: [500, 500] }]);
      assert.deepEqual(await traffic.totals(a, '2030-01-01', '2030-02-01'), [], 'deferred until flushed');
      await db.delete(hostsTable).where(eq(hostsTable.id, gone));
      await queue.flush();
      // Day 14: 300 + 40 (after the reboot) + 50 (the tick at midnight closes the 14th); day 15: 100.
      assert.deepEqual(await traffic.totals(a, '2030-01-14', '2030-01-15'), [
        { iface: 'eth0', rxBytes: 300 + 40 + 50, txBytes: 50 + 7 + 10 },
      ]);
      assert.deepEqual(await traffic.totals(a, '2030-01-15', '2030-01-16'), [
        { iface: 'eth0', rxBytes: 100, txBytes: 1 },
      ]);
    });
  });
}
