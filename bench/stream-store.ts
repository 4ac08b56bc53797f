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
  process.env.KEEL_BENCH_DATABASE_URL ??
  process.env.KEEL_TEST_DATABASE_URL ??
  'postgres://postgres@127.0.0.1:5432/test';

const paths = ['/api/v1/hosts', '/api/v1/items', '/login', '/static/app.js', '/healthz', '/api/v1/events'];
const levels = ['INFO ', 'INFO ', 'INFO ', 'WARN ', 'DEBUG', 'ERROR'];

/** A plausible ~100-byte access-log line: fixed shape, varying numbers and a random request id. */
function logLine(i: number, ts: number): string {
  const r = (n: number) => Math.floor(Math.random() * n);
  return `${new Date(ts).toISOString()} ${levels[i % levels.length]} api[${1000 + (i % 7)}]: GET ${paths[r(paths.length)]}/${r(100000)} ${r(10) ? 200 : 404} ${r(900)}ms ua=curl/8.5 req=${randomBytes(4).toString('hex')}`;
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

  const t = performance.now();
  let deflated = 0;
  for (const b of batches.slice(0, 500)) deflated += deflateRawSync(b.body, { level: 1 }).length;
  const deflateMs = performance.now() - t;
  const rawSample = batches.slice(0, 500).reduce((n, b) => n + b.body.length, 0);
  console.log(
    `deflateRaw level 1 alone: ${mib(rawSample, deflateMs).toFixed(0)} MiB/s, ratio ${(rawSample / deflated).toFixed(2)}x`,
  );

  const merged = mergeBatches(batches, 16);
  const targets = testDatabaseTargets({ KEEL_TEST_DATABASE_URL: url });
  for (const target of targets.reverse()) {
    const testDb = await target.create();
    try {
      const { db } = await testDb.open();
      const newHost = async () =>
        (
          await db
            .insert(hosts)
            .values({ name: 'bench', publicKey: randomBytes(32).toString('base64url') })
            .returning()
        )[0]!.id;
      const modes = target.driver === 'postgres' ? [true, false] : [true];
      for (const synchronousCommit of modes) {
        const streams = createStreamRepository(db, { synchronousCommit });
        for (const [label, set] of [
          ['64 KiB appends', batches],
          ['1 MiB appends (16 batches merged, as the gateway does under load)', merged],
        ] as const) {
          for (const parallel of [1, 4]) {
            // Each stream appends the same run of batches from seq 1, like `parallel` agents.
            const hostIds = await Promise.all(Array.from({ length: parallel }, newHost));
            let appends = 0;
            let bytes = 0;
            const deadline = performance.now() + SECONDS * 1000;
            const t0 = performance.now();
            await Promise.all(
              hostIds.map(async (host) => {
                for (let i = 0; i < set.length && performance.now() < deadline; i++) {
                  await streams.append(host, 'logs', set[i]!);
                  bytes += set[i]!.body.length;
                  appends++;
                }
              }),
            );
            const ms = performance.now() - t0;
            console.log(
              `${target.driver}${target.driver === 'postgres' ? ` synchronous_commit=${synchronousCommit ? 'on ' : 'off'}` : ''}` +
                ` | ${label} | ${parallel} stream(s) | ${mib(bytes, ms).toFixed(1)} MiB/s raw | ` +
                `${((appends / ms) * 1000).toFixed(0)} appends/s`,
            );
          }
        }
      }
    } finally {
      await testDb.cleanup();
    }
  }
}

/** Concatenates every `n` consecutive batches into one, as the gateway's ingest queue does. */
function mergeBatches(batches: RecordBatch[], n: number): RecordBatch[] {
  const out: RecordBatch[] = [];
  for (let i = 0; i + n <= batches.length; i += n) {
    const group = batches.slice(i, i + n);
    out.push({
      firstSeq: group[0]!.firstSeq,
      count: group.reduce((c, b) => c + b.count, 0),
      body: Buffer.concat(group.map((b) => b.body)),
    });
  }
  return out;
}

await main();
