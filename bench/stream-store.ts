// Benchmark: how fast streams.append stores 64 KiB batches of ~100-byte log records, in MiB/s of
// raw record body (what the agent sends). Target for the whole pipeline: >= 35 MiB/s.
// Run: node --import tsx bench/stream-store.ts   (PostgreSQL from KEEL_BENCH_DATABASE_URL, else
// KEEL_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test; PGlite is measured too.)
import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { encodeRecords, type RecordBatch, type StreamRecord } from '@keel/shared';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { testDatabaseTargets } from '../controller/src/db/test-databases.ts';
import { createStreamRepository } from '../controller/src/repositories/streams.ts';

const BODY_BYTES = 64 * 1024;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const url =
  process.env.KEEL_BENCH_DATABASE_URL ?? process.env.KEEL_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const paths = ['/api/v1/hosts', '/api/v1/items', '/login', '/static/app.js', '/healthz', '/api/v1/events'];
const levels = ['INFO ', 'INFO ', 'INFO ', 'WARN ', 'DEBUG', 'ERROR'];

/** A plausible ~100-byte access-log line: fixed shape, varying numbers and a random request id. */
function logLine(i: number, ts: number): string {
  const r = (n: number) => Math.floor(Math.random() * n);
  return `${new Date(ts).toISOString()} ${levels[i % levels.length]} api[${1000 + (i % 7)}]: GET ${paths[r(paths.length)]}/${r(100000)} ${r(10) ? 200 : 404} ${r(900)}ms req=${randomBytes(4).toString('hex')}`;
}

/** A run of 64 KiB batches of consecutive records starting at seq 1. */
function makeBatches(n: number): { batches: RecordBatch[]; avgRecordBytes: number } {
  const batches: RecordBatch[] = [];
  let seq = 1;
  let ts = Date.now();
  let records = 0;
  let payloadBytes = 0;
  for (let b = 0; b < n; b++) {
    const recs: StreamRecord[] = [];
    let size = 0;
    while (size < BODY_BYTES - 140) {
      const payload = Buffer.from(logLine(seq + recs.length, (ts += 0.3)));
      recs.push({ ts, payload });
      size += 12 + payload.length;
      payloadBytes += payload.length;
    }
    batches.push({ firstSeq: seq, count: recs.length, body: encodeRecords(recs) });
    seq += recs.length;
    records += recs.length;
  }
  return { batches, avgRecordBytes: payloadBytes / records };
}

const mib = (bytes: number, ms: number) => bytes / 1024 / 1024 / (ms / 1000);

async function main(): Promise<void> {
  const { batches, avgRecordBytes } = makeBatches(2000);
  const rawTotal = batches.reduce((n, b) => n + b.body.length, 0);
  console.log(
    `data: ${batches.length} batches of ${(rawTotal / batches.length / 1024).toFixed(1)} KiB, ` +
      `${batches[0]!.count} records each, avg payload ${avgRecordBytes.toFixed(0)} B`,
  );

  let t = performance.now();
  let deflated = 0;
  for (const b of batches.slice(0, 500)) deflated += deflateRawSync(b.body, { level: 1 }).length;
  const deflateMs = performance.now() - t;
  const rawSample = batches.slice(0, 500).reduce((n, b) => n + b.body.length, 0);
  console.log(
    `deflateRaw level 1 alone: ${mib(rawSample, deflateMs).toFixed(0)} MiB/s, ratio ${(rawSample / deflated).toFixed(2)}x`,
  );

  const targets = testDatabaseTargets({ KEEL_TEST_DATABASE_URL: url });
  for (const target of targets.reverse()) {
    const testDb = await target.create();
    try {
      const { db } = await testDb.open();
      const streams = createStreamRepository(db);
      const newHost = async () =>
        (await db.insert(hosts).values({ name: 'bench', publicKey: randomBytes(32).toString('base64url') }).returning())[0]!
          .id;

      // One stream, one append at a time: what a single agent's log stream gets.
      {
        const host = await newHost();
        let i = 0;
        let bytes = 0;
        t = performance.now();
        while (performance.now() - t < SECONDS * 1000 && i < batches.length) {
          const b = batches[i++]!;
          await streams.append(host, 'logs', b);
          bytes += b.body.length;
        }
        const ms = performance.now() - t;
        console.log(
          `${target.driver}: 1 stream sequential: ${mib(bytes, ms).toFixed(1)} MiB/s raw, ` +
            `${((i / ms) * 1000).toFixed(0)} appends/s, ${(ms / i).toFixed(2)} ms/append`,
        );
      }

      // Several agents at once (the gateway runs one append chain per host stream).
      for (const parallel of [4, 8]) {
        const hostIds = await Promise.all(Array.from({ length: parallel }, newHost));
        let next = 0;
        let bytes = 0;
        const deadline = performance.now() + SECONDS * 1000;
        t = performance.now();
        await Promise.all(
          hostIds.map(async (host) => {
            for (let i = 0; i < batches.length && performance.now() < deadline; i++) {
              const b = batches[i]!;
              await streams.append(host, 'logs', b);
              bytes += b.body.length;
              next++;
            }
          }),
        );
        const ms = performance.now() - t;
        console.log(
          `${target.driver}: ${parallel} streams in parallel: ${mib(bytes, ms).toFixed(1)} MiB/s raw, ` +
            `${((next / ms) * 1000).toFixed(0)} appends/s`,
        );
      }
    } finally {
      await testDb.cleanup();
    }
  }
}

await main();
