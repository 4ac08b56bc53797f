// Benchmark: metrics ingest — samples/s stored into PostgreSQL through the metrics repository (one
// row per host per tick) from 1,000 simulated hosts, each sending batches of ticks as an agent does
// (one tick per batch live, a minute of ticks after a reconnect). Target: >= 200,000 samples/s.
// The agent-footprint and 30-day query parts of issue 9's benchmark are not here yet (docs/metrics.md).
// Run: npm run bench -- metrics   (PostgreSQL from KEEL_BENCH_DATABASE_URL, else
// KEEL_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test.)
import { randomBytes } from 'node:crypto';
import { encodeRecords, metricSeriesNames, type MetricSample, type RecordBatch } from '@keel/shared';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { testDatabaseTargets } from '../controller/src/db/test-databases.ts';
import { createMetricsRepository } from '../controller/src/repositories/metrics.ts';

const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 8);
const url =
  process.env.KEEL_BENCH_DATABASE_URL ??
  process.env.KEEL_TEST_DATABASE_URL ??
  'postgres://postgres@127.0.0.1:5432/test';

/** A tick as a 2-core host with one disk and two interfaces sends it (every series set). */
function sample(t: number): MetricSample {
  const r = () => Math.random() * 100;
  return {
    t,
    v: Object.fromEntries(metricSeriesNames.map((n) => [n, r()])) as MetricSample['v'],
    cores: [r(), r()],
    mounts: [{ mount: '/', fs: 'ext4', size: 100e9, used: 40e9 }],
    ifaces: [
      { name: 'eth0', rxBps: r(), txBps: r(), rxBytes: 1e9, txBytes: 2e9 },
      { name: 'wg0', rxBps: r(), txBps: r(), rxBytes: 1e6, txBytes: 2e6 },
    ],
  };
}

function batch(firstSeq: number, t0: number, ticks: number): RecordBatch {
  const records = Array.from({ length: ticks }, (_, i) => {
    const t = t0 + i * 5_000;
    return { ts: t, payload: Buffer.from(JSON.stringify(sample(t))) };
  });
  return { firstSeq, count: ticks, body: encodeRecords(records) };
}

async function main(): Promise<void> {
  const target = testDatabaseTargets({ KEEL_TEST_DATABASE_URL: url }).find((t) => t.driver === 'postgres');
  if (!target) throw new Error('no PostgreSQL target');
  const testDb = await target.create();
  try {
    const { db } = await testDb.open();
    const ids: string[] = [];
    for (let i = 0; i < HOSTS; i += 500) {
      const rows = await db
        .insert(hosts)
        .values(
          Array.from({ length: Math.min(500, HOSTS - i) }, (_, k) => ({
            name: `bench-${i + k}`,
            publicKey: randomBytes(32).toString('base64url'),
          })),
        )
        .returning({ id: hosts.id });
      ids.push(...rows.map((r) => r.id));
    }
    const metrics = createMetricsRepository(db);
    for (const ticksPerBatch of [1, 12]) {
      const seq = new Map(ids.map((id) => [id, 1]));
      const clock = new Map(ids.map((id) => [id, Date.UTC(2030, 0, 1)]));
      let rows = 0;
      let next = 0;
      const deadline = performance.now() + SECONDS * 1000;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: PARALLEL }, async () => {
          while (performance.now() < deadline) {
            const id = ids[next++ % ids.length]!;
            const b = batch(seq.get(id)!, clock.get(id)!, ticksPerBatch);
            const r = await metrics.append(id, 'metrics', b);
            rows += r.stored;
            seq.set(id, seq.get(id)! + ticksPerBatch);
            clock.set(id, clock.get(id)! + ticksPerBatch * 5_000);
          }
        }),
      );
      const s = (performance.now() - t0) / 1000;
      console.log(
        `postgres | ${HOSTS} hosts | ${ticksPerBatch} tick(s) per batch | ${PARALLEL} appends in flight | ` +
          `${(rows / s).toFixed(0)} rows/s = ${((rows * metricSeriesNames.length) / s).toFixed(0)} samples/s ` +
          `(${metricSeriesNames.length} series a row; target 200,000)`,
      );
    }
  } finally {
    await testDb.cleanup();
  }
}

await main();
