// Proves metrics storage on every test driver: one row per host per tick (a resend stores nothing
// twice, a lost run of ticks is a gap, a malformed record is skipped and still acked), roll-ups
// over a known synthetic series are exact (minute from raw, hour from minutes with a weighted
// average), retention deletes only what is older than each cutoff, and range reads bucket to the
// requested step; supervised processes' CPU/RSS roll up exactly too and read back per process; a
// host's sampling interval is set and cleared.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { encodeRecords, KeelError, type MetricSample, type RecordBatch } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { hosts as hostsTable } from '../db/schema/hosts.ts';
import { metricRollups1h, metricRollups1m, metricSamples } from '../db/schema/metrics.ts';
import { streamCursors, streamGaps } from '../db/schema/streams.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { createMetricsRepository, type MetricsRepository } from './metrics.ts';

const T0 = Date.UTC(2030, 0, 1); // a whole hour
const TICK = 5_000;

/** The synthetic series: tick i has cpu = i % 12 and load1 = i (integers: exact in float4). */
function sample(i: number): MetricSample {
  return { t: T0 + i * TICK, v: { cpu: i % 12, load1: i, mem_used: null }, cores: [i % 12] };
}

function batch(firstSeq: number, ticks: number[], payloads?: Buffer[]): RecordBatch {
  const records = ticks.map((i, k) => ({
    ts: T0 + i * TICK,
    payload: payloads?.[k] ?? Buffer.from(JSON.stringify(sample(i))),
  }));
  return { firstSeq, count: records.length, body: encodeRecords(records) };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => from + k);

for (const target of testDatabaseTargets()) {
  describe(`metrics repository (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let metrics: MetricsRepository;

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
    });
    after(() => testDb.cleanup());

    test('one row per tick; a resend is a no-op; a jump is a gap; garbage is skipped and acked', async () => {
      const host = await newHost();
      assert.deepEqual(await metrics.append(host, 'metrics', batch(1, range(0, 9))), {
        ackedSeq: 10,
        stored: 10,
        rejected: 0,
      });
      // Overlapping resend: only ticks 10..14 are new.
      const again = await metrics.append(host, 'metrics', batch(6, range(5, 14)));
      assert.deepEqual(again, { ackedSeq: 15, stored: 5, rejected: 0 });
      // seq 16..19 lost on the agent: a gap; a malformed record in the batch is skipped.
      const jumped = await metrics.append(
        host,
        'metrics',
        batch(
          20,
          [19, 20, 21],
          [Buffer.from('{"t":1}x'), ...[20, 21].map((i) => Buffer.from(JSON.stringify(sample(i))))],
        ),
      );
      assert.deepEqual(jumped, { ackedSeq: 22, stored: 2, rejected: 1, gap: { fromSeq: 16, toSeq: 19 } });
      const rows = await db
        .select({
          ts: metricSamples.ts,
          cpu: metricSamples.cpu,
          load1: metricSamples.load1,
          detail: metricSamples.detail,
        })
        .from(metricSamples)
        .where(eq(metricSamples.hostId, host))
        .orderBy(asc(metricSamples.ts));
      assert.deepEqual(
        rows.map((r) => (r.ts.getTime() - T0) / TICK),
        [...range(0, 14), 20, 21],
      );
      assert.deepEqual(rows[3], { ts: new Date(T0 + 3 * TICK), cpu: 3, load1: 3, detail: { cores: [3] } });
      const gaps = await db
        .select({ fromSeq: streamGaps.fromSeq, toSeq: streamGaps.toSeq })
        .from(streamGaps)
        .where(and(eq(streamGaps.hostId, host), eq(streamGaps.stream, 'metrics')));
      assert.deepEqual(gaps, [{ fromSeq: 16, toSeq: 19 }]);
    });

    test('the write queue group as one statement: new streams, gaps, resends, cursors', async () => {
      // appendMany with traffic deferred and one batch per stream: the single-statement path.
      const a = await newHost();
      const b = await newHost();
      const deferred: unknown[] = [];
      const first = await metrics.appendMany(
        [
          { hostId: a, stream: 'metrics', batch: batch(1, [0, 1]) },
          { hostId: b, stream: 'metrics', batch: batch(5, [0]) },
        ],
        deferred as never,
      );
      assert.deepEqual(first, [
        { ok: true, result: { ackedSeq: 2, stored: 2, rejected: 0 } },
        { ok: true, result: { ackedSeq: 5, stored: 1, rejected: 0, gap: { fromSeq: 1, toSeq: 4 } } },
      ]);
      const second = await metrics.appendMany(
        [
          { hostId: a, stream: 'metrics', batch: batch(6, [5]) },
          { hostId: b, stream: 'metrics', batch: batch(6, [1]) },
        ],
        deferred as never,
      );
      assert.deepEqual(second, [
        { ok: true, result: { ackedSeq: 6, stored: 1, rejected: 0, gap: { fromSeq: 3, toSeq: 5 } } },
        { ok: true, result: { ackedSeq: 6, stored: 1, rejected: 0 } },
      ]);
      // A resend of a's last batch stores nothing and records no gap; the cursor stays.
      const again = await metrics.appendMany(
        [{ hostId: a, stream: 'metrics', batch: batch(6, [5]) }],
        deferred as never,
      );
      assert.deepEqual(again, [{ ok: true, result: { ackedSeq: 6, stored: 0, rejected: 0 } }]);
      const gapsOf = (host: string) =>
        db
          .select({ fromSeq: streamGaps.fromSeq, toSeq: streamGaps.toSeq })
          .from(streamGaps)
          .where(eq(streamGaps.hostId, host));
      assert.deepEqual(await gapsOf(a), [{ fromSeq: 3, toSeq: 5 }]);
      assert.deepEqual(await gapsOf(b), [{ fromSeq: 1, toSeq: 4 }]);
      const cursors = await db
        .select({ host: streamCursors.hostId, acked: streamCursors.ackedSeq })
        .from(streamCursors)
        .where(inArray(streamCursors.hostId, [a, b]));
      assert.deepEqual(
        cursors.map((c) => [c.host, Number(c.acked)]).sort(),
        [
          [a, 6],
          [b, 6],
        ].sort(),
      );
      const stored = await db
        .select({ ts: metricSamples.ts })
        .from(metricSamples)
        .where(eq(metricSamples.hostId, a))
        .orderBy(asc(metricSamples.ts));
      assert.deepEqual(
        stored.map((r) => (r.ts.getTime() - T0) / TICK),
        [0, 1, 5],
      );
    });

    test('an unknown host and a malformed batch are refused', async () => {
      await assert.rejects(
        metrics.append('00000000-0000-4000-8000-000000000000', 'metrics', batch(1, [0])),
        (e: unknown) => e instanceof KeelError && e.code === 'host.not_found',
      );
      const host = await newHost();
      await assert.rejects(
        metrics.append(host, 'metrics', { firstSeq: 1, count: 3, body: Buffer.from('xx') }),
        (e: unknown) => e instanceof KeelError && e.code === 'stream.invalid',
      );
      // Ticks that parse as JSON but break the schema (a value as text, an unknown series, a NUL
      // in a label, an extra key, a negative size) are refused one by one and never stored; the
      // good tick beside them is.
      const bad = [
        { t: T0, v: { cpu: '9' } },
        { t: T0 + TICK, v: { nope: 1 } },
        { t: T0 + 2 * TICK, v: {}, mounts: [{ mount: '/\u0000', fs: 'ext4', size: 1, used: 0 }] },
        { t: T0 + 3 * TICK, v: {}, extra: true },
        { t: T0 + 4 * TICK, v: {}, mounts: [{ mount: '/', fs: 'ext4', size: -1, used: 0 }] },
      ].map((x) => Buffer.from(JSON.stringify(x)));
      const mixed = await metrics.append(
        host,
        'metrics',
        batch(1, [0, 1, 2, 3, 4, 5], [...bad, Buffer.from(JSON.stringify(sample(5)))]),
      );
      assert.deepEqual(mixed, { ackedSeq: 6, stored: 1, rejected: 5 });
      const stored = await db
        .select({ ts: metricSamples.ts })
        .from(metricSamples)
        .where(eq(metricSamples.hostId, host));
      assert.deepEqual(stored, [{ ts: new Date(T0 + 5 * TICK) }]);
    });

    test('roll-ups over a known series are exact, and the range read buckets them', async () => {
      const host = await newHost();
      // Two hours of 5 s ticks, minus one missing minute (ticks 24..35) in the first hour.
      const ticks = range(0, 2 * 720 - 1).filter((i) => i < 24 || i > 35);
      await metrics.append(host, 'metrics', batch(1, ticks));
      const end = new Date(T0 + 2 * 3_600_000);
      // Roll-ups cover every host (earlier tests' hosts have ticks in this range too).
      assert.ok((await metrics.rollup('1m', new Date(T0), end)) >= 119);
      assert.ok((await metrics.rollup('1h', new Date(T0), end)) >= 2);
      // Re-running is idempotent (an upsert of the same buckets).
      await metrics.rollup('1m', new Date(T0), end);

      const minutes = await db
        .select()
        .from(metricRollups1m)
        .where(eq(metricRollups1m.hostId, host))
        .orderBy(asc(metricRollups1m.ts));
      assert.equal(minutes.length, 119);
      // Minute 0 holds ticks 0..11: cpu 0..11, load1 0..11.
      const m0 = minutes[0]!;
      assert.deepEqual(
        [m0.n, m0.cpu, m0.cpu_min, m0.cpu_max, m0.load1, m0.load1_max],
        [12, 5.5, 0, 11, 5.5, 11],
      );
      // Minute 1 is ticks 12..23; minute 2 is missing; minute 3 is ticks 36..47.
      assert.equal((minutes[2]!.ts.getTime() - T0) / 60_000, 3);
      assert.deepEqual([minutes[2]!.load1_min, minutes[2]!.load1_max], [36, 47]);
      assert.equal(minutes[0]!.mem_used, null);

      const hours = await db
        .select()
        .from(metricRollups1h)
        .where(eq(metricRollups1h.hostId, host))
        .orderBy(asc(metricRollups1h.ts));
      const kept = ticks.filter((i) => i < 720);
      const h0 = hours[0]!;
      assert.equal(h0.n, kept.length);
      assert.equal(h0.load1_min, 0);
      assert.equal(h0.load1_max, 719);
      // The weighted average of minute averages equals the average over every tick.
      const exact = kept.reduce((a, i) => a + i, 0) / kept.length;
      assert.ok(Math.abs(h0.load1! - exact) < 1e-3 * exact, `${h0.load1} vs ${exact}`);
      assert.equal(h0.cpu, 5.5);

      // Range reads: raw bucketed to 60 s equals the minute averages; 1h rows as they are.
      const raw = await metrics.range(host, 'raw', new Date(T0), end, 60_000, ['load1', 'cpu']);
      assert.equal(raw.x.length, 119);
      assert.equal(raw.x[0], T0 / 1000);
      assert.deepEqual(raw.values[0]!.slice(0, 2), [5.5, 17.5]);
      const byMinute = await metrics.range(host, '1m', new Date(T0), end, 600_000, ['cpu']);
      assert.equal(byMinute.x.length, 12);
      assert.equal(byMinute.values[0]![0], 5.5);
      const hourly = await metrics.range(host, '1h', new Date(T0), end, 3_600_000, ['load1']);
      assert.deepEqual(hourly.x, [T0 / 1000, T0 / 1000 + 3600]);
      await assert.rejects(
        metrics.range(host, 'raw', new Date(T0), end, 1000, ['cpu; drop table hosts']),
        (e: unknown) => e instanceof KeelError && e.code === 'request.invalid',
      );
    });

    test("supervised processes' series roll up exactly and read back as one column per process", async () => {
      const host = await newHost();
      const T1 = T0 + 10 * 3_600_000;
      // Two hours of 5 s ticks; "a" runs throughout (cpu i % 12, rss 1000 i); "b" only in the first
      // hour, with no CPU figure on even ticks (its first reading after a restart).
      const records = range(0, 2 * 720 - 1).map((i) => {
        const s: MetricSample = {
          t: T1 + i * TICK,
          v: { cpu: 1 },
          processes: [{ name: 'a', cpu: i % 12, rss: 1000 * i }],
        };
        if (i < 720) s.processes!.push({ name: 'b', cpu: i % 2 === 0 ? null : 50, rss: 7 });
        return { ts: s.t, payload: Buffer.from(JSON.stringify(s)) };
      });
      await metrics.append(host, 'metrics', {
        firstSeq: 1,
        count: records.length,
        body: encodeRecords(records),
      });
      const end = new Date(T1 + 2 * 3_600_000);
      await metrics.rollup('1m', new Date(T1), end);
      assert.ok((await metrics.rollupProcesses('1m', new Date(T1), end)) >= 120);
      await metrics.rollup('1h', new Date(T1), end);
      assert.ok((await metrics.rollupProcesses('1h', new Date(T1), end)) >= 2);

      const [m0] = await db
        .select({ processes: metricRollups1m.processes })
        .from(metricRollups1m)
        .where(and(eq(metricRollups1m.hostId, host), eq(metricRollups1m.ts, new Date(T1))));
      // Minute 0: ticks 0..11.
      assert.deepEqual(m0!.processes, [
        { name: 'a', n: 12, cpu: 5.5, cpu_max: 11, rss: 5500, rss_max: 11000 },
        { name: 'b', n: 12, cpu: 50, cpu_max: 50, rss: 7, rss_max: 7 },
      ]);
      const hours = await db
        .select({ processes: metricRollups1h.processes })
        .from(metricRollups1h)
        .where(eq(metricRollups1h.hostId, host))
        .orderBy(asc(metricRollups1h.ts));
      assert.equal(hours.length, 2);
      const h0a = hours[0]!.processes!.find((p) => p.name === 'a')!;
      assert.equal(h0a.n, 720);
      assert.equal(h0a.cpu, 5.5);
      assert.equal(h0a.rss_max, 719_000);
      assert.ok(Math.abs(h0a.rss! - 359_500) < 1e-6, `weighted rss ${h0a.rss}`);
      assert.deepEqual(
        hours[1]!.processes!.map((p) => p.name),
        ['a'],
        'b stopped in the first hour',
      );

      // Raw in 10-minute buckets; hourly rows as they are.
      const raw = await metrics.processRange(host, 'raw', new Date(T1), end, 600_000);
      assert.deepEqual(raw.names, ['a', 'b']);
      assert.equal(raw.x.length, 12);
      assert.equal(raw.x[0], T1 / 1000);
      assert.equal(raw.cpu[0]![0], 5.5);
      assert.equal(raw.rss[0]![0], (1000 * (0 + 119)) / 2);
      assert.equal(raw.cpu[1]![0], 50, 'null readings do not count in the average');
      assert.equal(raw.cpu[1]![11], null, 'b is absent in the second hour');
      const hourly = await metrics.processRange(host, '1h', new Date(T1), end, 3_600_000);
      assert.deepEqual(hourly.x, [T1 / 1000, T1 / 1000 + 3600]);
      assert.deepEqual(hourly.cpu, [
        [5.5, 5.5],
        [50, null],
      ]);
      const none = await metrics.processRange(host, '1m', new Date(T0 - 3_600_000), new Date(T0), 60_000);
      assert.deepEqual(none, { x: [], names: [], cpu: [], rss: [] });
    });

    test("a host's sampling interval is set, changed and cleared", async () => {
      const host = await newHost();
      const other = await newHost();
      assert.equal((await metrics.intervals([host])).size, 0);
      await metrics.setInterval(host, 10);
      await metrics.setInterval(host, 2);
      await metrics.setInterval(other, 60);
      assert.deepEqual(
        [...(await metrics.intervals([host, other, 'not-a-uuid']))].sort(),
        [
          [host, 2],
          [other, 60],
        ].sort(),
      );
      await metrics.setInterval(host, null);
      assert.deepEqual([...(await metrics.intervals([host, other]))], [[other, 60]]);
      await assert.rejects(
        metrics.setInterval('00000000-0000-4000-8000-000000000000', 5),
        (e: unknown) => e instanceof KeelError && e.code === 'host.not_found',
      );
    });

    test('retention deletes only what is older than each cutoff', async () => {
      const host = await newHost();
      await metrics.append(host, 'metrics', batch(1, range(0, 720 * 3 - 1)));
      await metrics.rollup('1m', new Date(T0), new Date(T0 + 3 * 3_600_000));
      await metrics.rollup('1h', new Date(T0), new Date(T0 + 3 * 3_600_000));
      const deleted = await metrics.prune({
        raw: new Date(T0 + 2 * 3_600_000),
        '1m': new Date(T0 + 3_600_000),
        '1h': new Date(T0 + 3_600_000),
      });
      // Other hosts' rows from earlier tests are older still, so count this host's rows that remain.
      assert.ok(deleted.raw >= 1440 && deleted['1m'] >= 60 && deleted['1h'] >= 1);
      const count = async (table: typeof metricSamples | typeof metricRollups1m | typeof metricRollups1h) =>
        (await db.select({ ts: table.ts }).from(table).where(eq(table.hostId, host))).length;
      assert.equal(await count(metricSamples), 720);
      assert.equal(await count(metricRollups1m), 120);
      assert.equal(await count(metricRollups1h), 2);
    });
  });
}
