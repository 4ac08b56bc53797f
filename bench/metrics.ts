// Benchmark: issue 9's metrics figures, each beside its peer or target in the same run.
//  ingest     samples/s stored into PostgreSQL from 1,000 simulated hosts through the metrics write
//             queue (group commits, as the controller's sink runs it), each host with one batch in
//             flight as the gateway allows; beside it, in the same run, one transaction per batch
//             (the path before the queue). Target: >= 200,000 samples/s.
//  query      a 30-day CPU chart of one host (the API's range read, 800 px) with a year of hourly and
//             30 days of minute roll-ups for 1,000 hosts loaded (rows made by generate_series).
//             Target: p95 < 50 ms.
//  footprint  the agent (dist bundle, connected to a controller) started as its systemd unit starts
//             it: the unit's Node options and its glibc MALLOC_* variables (bench/lib/bundled-agent.ts
//             reads both from systemd/keel-agent.service), at 5 s and 1 s sampling beside Debian's prometheus-node-exporter scraped at the same
//             interval: CPU and RSS of both over the same minutes. Targets: agent RSS <= 60 MB, CPU
//             at or below node_exporter's.
// Run: npm run bench -- metrics [--part ingest,query,footprint] [--seconds 10] [--hosts 1000]
//      [--footprint-seconds 300] [--minute-hosts N (default: --hosts)] [--keep-db NAME]
// PostgreSQL from KEEL_BENCH_DATABASE_URL, else KEEL_TEST_DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/test (a scratch database is made and dropped).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { encodeRecords, metricSeriesNames, type MetricSample, type RecordBatch } from '@keel/shared';
import { openDatabase, type Db } from '../controller/src/db/index.ts';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { testDatabaseTargets } from '../controller/src/db/test-databases.ts';
import { createMetricsRepository, rangeStatement } from '../controller/src/repositories/metrics.ts';
import {
  createMetricsWriteQueue,
  pickResolution,
  defaultMetricsRetention,
} from '../controller/src/services/metrics.ts';
import { startBundledAgent } from './lib/bundled-agent.ts';
import {
  createScratchDatabase,
  freePort,
  machine,
  mib,
  percentile,
  procCpuMs,
  procMemory,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
  waitFor,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    part: { type: 'string', default: 'ingest,query,footprint' },
    seconds: { type: 'string', default: '10' },
    hosts: { type: 'string', default: '1000' },
    'footprint-seconds': { type: 'string', default: '300' },
    // The 30-day chart reads hourly rows only; 30 days of minute rows for 1,000 hosts is ~43 M rows
    // (~17 GB), so a shared machine may load them for fewer hosts (the figure says how many).
    'minute-hosts': { type: 'string' },
    // Keep the loaded database under this name and reuse it on the next run (a year of hourly rows
    // for 1,000 hosts takes many minutes to load here); migrations still run on it.
    'keep-db': { type: 'string' },
  },
});
const parts = new Set(args.part.split(','));
const HOSTS = Number(args.hosts);
const SECONDS = Number(args.seconds);
const FOOTPRINT_SECONDS = Number(args['footprint-seconds']);
const url =
  process.env.KEEL_BENCH_DATABASE_URL ??
  process.env.KEEL_TEST_DATABASE_URL ??
  'postgres://postgres@127.0.0.1:5432/test';
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

/** A tick as a 2-core host with one disk and two interfaces sends it (every series set). */
function sample(t: number, counter: number): MetricSample {
  const r = () => Math.round(Math.random() * 10_000) / 100;
  return {
    t,
    v: Object.fromEntries(metricSeriesNames.map((n) => [n, r()])) as MetricSample['v'],
    cores: [r(), r()],
    mounts: [{ mount: '/', fs: 'ext4', size: 100e9, used: 40e9 }],
    ifaces: [
      { name: 'eth0', rxBps: r(), txBps: r(), rxBytes: 1e9 + counter, txBytes: 2e9 + counter },
      { name: 'wg0', rxBps: r(), txBps: r(), rxBytes: 1e6 + counter, txBytes: 2e6 + counter },
    ],
  };
}

// Each host's ticks come from one JSON template with the time and the counters patched in, so the
// benchmark process spends its CPU on what the controller does with a tick, not on making one.
const T_MARK = 1_111_111_111_111;
const C_MARK = 777_777_777;
const templates: string[] = Array.from({ length: 64 }, () => JSON.stringify(sample(T_MARK, C_MARK)));

function batch(firstSeq: number, t0: number, ticks: number): RecordBatch {
  const template = templates[firstSeq % templates.length]!;
  const records = Array.from({ length: ticks }, (_, i) => {
    const t = t0 + i * 5_000;
    const payload = template
      .replace(String(T_MARK), String(t))
      .replaceAll(String(1e9 + C_MARK), String(1e9 + t / 1000))
      .replaceAll(String(2e9 + C_MARK), String(2e9 + t / 1000))
      .replaceAll(String(1e6 + C_MARK), String(1e6 + t / 1000))
      .replaceAll(String(2e6 + C_MARK), String(2e6 + t / 1000));
    return { ts: t, payload: Buffer.from(payload) };
  });
  return { firstSeq, count: ticks, body: encodeRecords(records) };
}

/** CPU ms used so far by this process and by the database's backends serving it. */
async function cpuNow(db: Db): Promise<{ node: number; pg: number }> {
  const rows = (await db.execute(
    sql`select pid from pg_stat_activity where datname = current_database()`,
  )) as unknown as { pid: number }[];
  let pg = 0;
  for (const r of rows) {
    try {
      pg += procCpuMs(r.pid);
    } catch {
      // a backend that ended meanwhile
    }
  }
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1000, pg };
}

/** The peer in the same run: narrow rows (host, ts, metric, value) with their key, by COPY. */
async function copyNarrowRows(url: string, seconds: number): Promise<number> {
  const pg = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await pg`create table "bench_narrow" ("host_id" uuid not null, "ts" timestamptz not null, "metric" smallint not null, "value" real, primary key ("host_id", "ts", "metric"))`;
    const host = randomUUID();
    let rows = 0;
    let t = Date.UTC(2030, 0, 1);
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      const lines: string[] = [];
      for (let i = 0; i < 10_000; i++, t += 1) {
        const ts = new Date(t).toISOString();
        lines.push(`${host}\t${ts}\t${i % 28}\t${(i % 1000) / 10}`);
      }
      const stream = await pg`copy "bench_narrow" from stdin`.writable();
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject);
        stream.on('finish', resolve);
        stream.end(lines.join('\n') + '\n');
      });
      rows += lines.length;
    }
    return rows / ((performance.now() - t0) / 1000);
  } finally {
    await pg`drop table if exists "bench_narrow"`;
    await pg.end();
  }
}

/**
 * The machine's ceiling, in the same run: PostgreSQL alone storing the same rows into the same
 * table (`metric_samples`: its key, its foreign key, the jsonb detail), by COPY from text made
 * before the clock starts, 1,000 rows (one tick of every host) a transaction — what a group commit
 * of one tick a host would cost with no controller work at all (no decoding, validation, cursors,
 * traffic accounting). Returns rows/s; the rows are deleted afterwards.
 */
async function copyWideRows(url: string, ids: string[], seconds: number): Promise<number> {
  const pg = postgres(url, { max: 1, onnotice: () => {} });
  const cols = ['host_id', 'ts', ...metricSeriesNames, 'detail'].map((c) => `"${c}"`).join(', ');
  const t0 = Date.UTC(2040, 0, 1);
  try {
    // Each host's line with the time left out, made up front (same values and detail as `sample`);
    // a tick's text is these joined around its time (~0.2 ms for 1,000 hosts).
    const tails = ids.map((id) => {
      const s = sample(0, 0);
      const detail = JSON.stringify({ cores: s.cores, mounts: s.mounts, ifaces: s.ifaces });
      return [
        `${id}\t`,
        `\t${metricSeriesNames.map((n) => s.v[n] ?? '\\N').join('\t')}\t${detail}\n`,
      ] as const;
    });
    let rows = 0;
    let k = 0;
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      const ts = new Date(t0 + k * 5_000).toISOString();
      let text = '';
      for (const [head, tail] of tails) text += head + ts + tail;
      const stream = await pg.unsafe(`copy "metric_samples" (${cols}) from stdin`).writable();
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject);
        stream.on('finish', resolve);
        stream.end(text);
      });
      rows += ids.length;
      k++;
    }
    return rows / ((performance.now() - started) / 1000);
  } finally {
    await pg`delete from "metric_samples" where "ts" >= ${new Date(t0).toISOString()}::timestamptz`;
    await pg.end();
  }
}

async function makeHosts(db: Db, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 500) {
    const rows = await db
      .insert(hosts)
      .values(
        Array.from({ length: Math.min(500, n - i) }, (_, k) => ({
          name: `bench-${i + k}`,
          publicKey: randomBytes(32).toString('base64url'),
        })),
      )
      .returning({ id: hosts.id });
    ids.push(...rows.map((r) => r.id));
  }
  return ids;
}

// ---- ingest ----------------------------------------------------------------------------------

async function ingest(db: Db, ids: string[], dbUrl: string): Promise<void> {
  const metrics = createMetricsRepository(db);
  const queue = createMetricsWriteQueue(metrics);
  const seq = new Map(ids.map((id) => [id, 1]));
  const clock = new Map(ids.map((id) => [id, Date.UTC(2030, 0, 1)]));
  /** Runs for `seconds` with `lanes` senders; returns rows stored per second. */
  const run = async (
    label: string,
    ticksPerBatch: number,
    lanes: number,
    store: (id: string, b: RecordBatch) => Promise<{ stored: number }>,
    seconds: number,
  ) => {
    let rows = 0;
    let next = 0;
    let commits = 0;
    const cpu0 = await cpuNow(db);
    const deadline = performance.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (performance.now() < deadline) {
          const id = ids[next++ % ids.length]!;
          const b = batch(seq.get(id)!, clock.get(id)!, ticksPerBatch);
          seq.set(id, seq.get(id)! + ticksPerBatch);
          clock.set(id, clock.get(id)! + ticksPerBatch * 5_000);
          const r = await store(id, b);
          rows += r.stored;
          commits++;
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    const cpu1 = await cpuNow(db);
    const perSec = rows / s;
    const samples = rows * metricSeriesNames.length;
    // CPU per 1,000 samples: this process (decode, validate, queue, driver) and PostgreSQL.
    const nodeMs = ((cpu1.node - cpu0.node) / samples) * 1000;
    const pgMs = ((cpu1.pg - cpu0.pg) / samples) * 1000;
    console.log(
      `${label.padEnd(44)} | ${String(ticksPerBatch).padStart(2)} tick(s)/batch | ${String(lanes).padStart(4)} in flight | ` +
        `${perSec.toFixed(0).padStart(6)} rows/s = ${(perSec * metricSeriesNames.length).toFixed(0).padStart(7)} samples/s` +
        ` (${(commits / s).toFixed(0)} batches/s) | CPU per 1,000 samples: node ${nodeMs.toFixed(2)} ms, PostgreSQL ${pgMs.toFixed(2)} ms` +
        ` -> ${(1_000_000 / Math.max(nodeMs, pgMs, 1e-9) / 1000).toFixed(0)}k samples/s with a free core each`,
    );
    return perSec * metricSeriesNames.length;
  };
  console.log(
    `\ningest into PostgreSQL, ${ids.length} hosts, ${metricSeriesNames.length} series a row (+ per-core, mount and interface detail, traffic accounting); load average ${load()}`,
  );
  const best: number[] = [];
  for (const ticks of [1, 12]) {
    // Peer in the same run: one transaction per batch, as before the queue (8 in flight).
    await run(
      'one transaction per batch (before)',
      ticks,
      8,
      (id, b) => metrics.append(id, 'metrics', b),
      Math.min(5, SECONDS),
    );
    best.push(
      await run(
        'write queue, group commits (controller sink)',
        ticks,
        ids.length,
        (id, b) => queue.append({ hostId: id, stream: 'metrics', batch: b }),
        SECONDS,
      ),
    );
  }
  const ceiling = (await copyWideRows(dbUrl, ids, Math.min(5, SECONDS))) * metricSeriesNames.length;
  console.log(
    `ceiling, same run: PostgreSQL alone storing the same rows (COPY into metric_samples, ${ids.length} rows a transaction): ` +
      `${ceiling.toFixed(0)} samples/s; Keel's write queue stores ${best.map((b) => `${((b / ceiling) * 100).toFixed(0)} %`).join(' / ')} of it (1 / 12 ticks a batch); load average ${load()}`,
  );
  const copyRows = await copyNarrowRows(dbUrl, Math.min(5, SECONDS));
  console.log(
    `peer, same run: COPY of narrow rows (host, ts, metric, value) with their key: ${copyRows.toFixed(0)} rows/s = samples/s as one row per sample`,
  );
  console.log(
    `ingest: ${best.map((b) => b.toFixed(0)).join(' / ')} samples/s (1 / 12 ticks a batch) against the target 200,000; load average ${load()}`,
  );
}

// ---- query -----------------------------------------------------------------------------------

async function query(db: Db, ids: string[]): Promise<void> {
  const metrics = createMetricsRepository(db);
  const now = Date.now();
  const hour = 3_600_000;
  const cols = metricSeriesNames.flatMap((n) => [n, `${n}_min`, `${n}_max`]);
  const values = cols.map(() => 'random() * 100').join(', ');
  const colList = cols.map((c) => `"${c}"`).join(', ');
  console.log(
    `\nquery: loading a year of hourly roll-ups for ${ids.length} hosts and 30 days of minute roll-ups for ${Math.min(ids.length, Number(args['minute-hosts'] ?? ids.length))} (generate_series)…`,
  );
  const t0 = performance.now();
  const [{ have }] = (await db.execute(
    sql`select count(*)::int as "have" from "metric_rollups_1h"`,
  )) as unknown as [{ have: number }];
  // Per host: 8,760 hourly rows and 43,200 minute rows (the retention defaults), written time by
  // time across the hosts of a chunk as the roll-up job writes them (a host's rows are spread over
  // the table, not packed together).
  const minuteHosts = Math.min(ids.length, Number(args['minute-hosts'] ?? ids.length));
  for (let i = 0; have === 0 && i < ids.length; i += 50) {
    const chunk = JSON.stringify(ids.slice(i, i + 50));
    const minuteChunk = JSON.stringify(ids.slice(i, Math.min(i + 50, minuteHosts)));
    await db.execute(
      sql.raw(`insert into "metric_rollups_1h" ("host_id", "ts", "n", ${colList})
        select h::uuid, g, 720, ${values}
        from generate_series(date_trunc('hour', now()) - interval '365 days', now(), interval '1 hour') g
          cross join lateral (select jsonb_array_elements_text('${chunk}'::jsonb) as h) hs`),
    );
    if (i >= minuteHosts) continue;
    await db.execute(
      sql.raw(`insert into "metric_rollups_1m" ("host_id", "ts", "n", ${colList})
        select h::uuid, g, 12, ${values}
        from generate_series(date_trunc('minute', now()) - interval '30 days', now(), interval '1 minute') g
          cross join lateral (select jsonb_array_elements_text('${minuteChunk}'::jsonb) as h) hs`),
    );
  }
  // What autovacuum does to rows that stopped changing (the migration asks it to, after 1 % of a
  // roll-up table changed): sets the visibility map an index-only scan relies on, and statistics.
  await db.execute(sql`vacuum analyze "metric_rollups_1h"`);
  await db.execute(sql`vacuum analyze "metric_rollups_1m"`);
  const [{ rows1h, rows1m }] = (await db.execute(
    sql`select (select count(*) from "metric_rollups_1h")::int as "rows1h", (select count(*) from "metric_rollups_1m")::int as "rows1m"`,
  )) as unknown as [{ rows1h: number; rows1m: number }];
  console.log(
    `${have === 0 ? 'loaded' : 'reused'} ${rows1h} hourly + ${rows1m} minute rows in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average ${load()}`,
  );
  // The chart the console draws for "30 d": 800 px wide, 2 points per pixel.
  const from = now - 30 * 24 * hour;
  const { resolution, stepMs } = pickResolution(from, now, 1_600, now, defaultMetricsRetention);
  // The plan of the statement the repository runs, as it ran (buffers: pages visited).
  const plan = (await db.execute(
    sql`explain (analyze, buffers) ${rangeStatement(ids[0]!, resolution, new Date(from), new Date(now), stepMs, ['cpu'])}`,
  )) as unknown as { 'QUERY PLAN': string }[];
  console.log(`plan:\n  ${plan.map((r) => r['QUERY PLAN']).join('\n  ')}`);
  const times: number[] = [];
  // Peer in the same run, interleaved: the same rows' `cpu_max`, a column only the heap holds —
  // what every range read cost before migration 0016 (a heap page per row).
  const heapTimes: number[] = [];
  const table = resolution === '1m' ? 'metric_rollups_1m' : 'metric_rollups_1h';
  const loadBefore = load();
  let bytes = 0;
  for (let i = 0; i < 200; i++) {
    const id = ids[Math.floor(Math.random() * ids.length)]!;
    const peerId = ids[Math.floor(Math.random() * ids.length)]!;
    const peerStarted = performance.now();
    await db.execute(
      sql`select extract(epoch from "ts")::float8 as "b", "cpu_max"::float8 from ${sql.raw(`"${table}"`)}
        where "host_id" = ${peerId}::uuid and "ts" >= ${new Date(from).toISOString()}::timestamptz
          and "ts" < ${new Date(now).toISOString()}::timestamptz order by "ts"`,
    );
    heapTimes.push(performance.now() - peerStarted);
    const started = performance.now();
    const r = await metrics.range(id, resolution, new Date(from), new Date(now), stepMs, ['cpu']);
    // The API's answer as the route sends it (uPlot's columns as JSON).
    bytes = JSON.stringify({
      resolution,
      stepMs,
      from,
      to: now,
      series: ['cpu'],
      data: [r.x, ...r.values],
    }).length;
    times.push(performance.now() - started);
    if (i === 0 && r.x.length === 0) throw new Error('the range read returned nothing');
  }
  times.sort((a, b) => a - b);
  console.log(
    `30-day CPU chart (${resolution} roll-ups, ${stepMs / 1000} s buckets), 200 reads of random hosts: ` +
      `p50 ${percentile(times, 50).toFixed(1)} ms, p95 ${percentile(times, 95).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms ` +
      `(target p95 < 50 ms; ${bytes} bytes of JSON an answer); load average ${loadBefore} before the reads, ${load()} after`,
  );
  heapTimes.sort((a, b) => a - b);
  console.log(
    `peer, same run, interleaved: the same rows' cpu_max (heap only, as every read was before migration 0016): ` +
      `p50 ${percentile(heapTimes, 50).toFixed(1)} ms, p95 ${percentile(heapTimes, 95).toFixed(1)} ms, p99 ${percentile(heapTimes, 99).toFixed(1)} ms`,
  );
}

// ---- footprint -------------------------------------------------------------------------------

/** CPU % of one core and memory of a process over `seconds`, sampled every second. */
async function watch(
  pid: number,
  seconds: number,
): Promise<{ cpuPct: number; rss: number[]; anon: number[]; file: number[]; at: number[] }> {
  const rss: number[] = [];
  const anon: number[] = [];
  const file: number[] = [];
  /** Seconds since the watch began, of each reading. */
  const at: number[] = [];
  const cpu0 = procCpuMs(pid);
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await sleep(1_000);
    const m = procMemory(pid);
    rss.push(m.rss);
    anon.push(m.anon);
    file.push(m.rss - m.anon);
    at.push((performance.now() - t0) / 1000);
  }
  return { cpuPct: ((procCpuMs(pid) - cpu0) / (performance.now() - t0)) * 100, rss, anon, file, at };
}

/**
 * Where the agent's RSS goes over the window: per minute its mean, range and the second of its
 * maximum, anonymous (heap, malloc) against file-backed (the node binary's pages), and every fall
 * of anonymous memory by 0.5 MiB or more between two readings (a collection that gave pages back).
 * A start-up transient shows as a high first minute; a garbage-collector sawtooth as maxima in
 * every minute with falls between them.
 */
function timeline(w: Awaited<ReturnType<typeof watch>>, offsetS: number): string[] {
  const out: string[] = [];
  const f = (b: number) => mib(b).toFixed(1);
  const minutes = Math.ceil((w.at.at(-1) ?? 0) / 60);
  for (let m = 0; m < minutes; m++) {
    const ix = w.at.flatMap((t, i) => (t > m * 60 && t <= (m + 1) * 60 ? [i] : []));
    if (!ix.length) continue;
    const pick = (xs: number[]) => ix.map((i) => xs[i]!);
    const rss = pick(w.rss);
    const top = ix.reduce((a, i) => (w.rss[i]! > w.rss[a]! ? i : a), ix[0]!);
    const anon = pick(w.anon);
    out.push(
      `  minute ${m + 1} (+${(m * 60 + offsetS).toFixed(0)}-${(Math.min((m + 1) * 60, w.at.at(-1)!) + offsetS).toFixed(0)} s after online): ` +
        `RSS mean ${f(avg(rss))}, ${f(Math.min(...rss))}-${f(Math.max(...rss))} MiB, max at +${(w.at[top]! + offsetS).toFixed(0)} s | ` +
        `anon ${f(Math.min(...anon))}-${f(Math.max(...anon))} (at max ${f(w.anon[top]!)}) | file ${f(avg(pick(w.file)))}, at max ${f(w.file[top]!)}`,
    );
  }
  const falls: string[] = [];
  for (let i = 1; i < w.anon.length; i++) {
    const d = w.anon[i - 1]! - w.anon[i]!;
    if (d >= 0.5 * 1024 * 1024) falls.push(`+${(w.at[i]! + offsetS).toFixed(0)} s -${f(d)}`);
  }
  const over = w.rss.filter((r) => r > 60e6).length;
  out.push(`  readings above 57.2 MiB (60 MB): ${over} of ${w.rss.length}`);
  out.push(
    `  anon falls >= 0.5 MiB (a collection returning pages): ${falls.length ? falls.join(', ') : 'none'}`,
  );
  return out;
}

async function footprint(): Promise<void> {
  const exporterBin = '/usr/bin/prometheus-node-exporter';
  if (!existsSync(exporterBin)) {
    console.log('\nfootprint: skipped (Debian prometheus-node-exporter is not installed)');
    return;
  }
  for (const interval of [5, 1]) {
    console.log(
      `\nfootprint at ${interval} s sampling, ${FOOTPRINT_SECONDS} s each, side by side; load average ${load()}`,
    );
    const dataDir = tempDir('keel-bench-ctl-');
    // The controller on a scratch PostgreSQL database: it starts in a second (PGlite's first start
    // runs initdb, which on a loaded machine outlasts the harness's wait).
    const scratchDb = await createScratchDatabase('keel_bench_footprint');
    const ctl = await startController({ dataDir, databaseUrl: scratchDb.url });
    let exporter: ChildProcess | null = null;
    const agent = await startBundledAgent(ctl, { KEEL_AGENT_METRICS_INTERVAL: String(interval) });
    try {
      const port = await freePort();
      exporter = track(
        spawn(exporterBin, [`--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
          stdio: 'ignore',
        }),
      );
      const target = `http://127.0.0.1:${port}/metrics`;
      await waitFor(
        async () => (await fetch(target).catch(() => null))?.ok === true,
        15_000,
        'node_exporter up',
      );
      // Prometheus scrapes node_exporter at the interval the agent samples at.
      let scrapes = 0;
      let scraping = true;
      const scraper = (async () => {
        while (scraping) {
          const r = await fetch(target);
          await r.arrayBuffer();
          scrapes++;
          await sleep(interval * 1000);
        }
      })();
      const settleS = 5;
      await sleep(settleS * 1000); // both settled (the agent's first ticks, the exporter's first scrape)
      const [a, e] = await Promise.all([
        watch(agent.pid, FOOTPRINT_SECONDS),
        watch(exporter.pid!, FOOTPRINT_SECONDS),
      ]);
      scraping = false;
      await scraper;
      const line = (name: string, w: Awaited<ReturnType<typeof watch>>) =>
        `${name.padEnd(40)} CPU ${w.cpuPct.toFixed(2).padStart(5)} % of one core | RSS mean ${mib(avg(w.rss)).toFixed(1)} MiB, max ${mib(Math.max(...w.rss)).toFixed(1)} MiB (anon ${mib(avg(w.anon)).toFixed(1)})`;
      console.log(line(`keel-agent (dist, ${agent.nodeArgs.join(' ') || 'V8 defaults'})`, a));
      console.log(line(`prometheus-node-exporter (${scrapes} scrapes)`, e));
      console.log(
        `agent CPU / node_exporter CPU = ${(a.cpuPct / Math.max(e.cpuPct, 1e-9)).toFixed(2)}; agent RSS ${mib(Math.max(...a.rss)).toFixed(1)} MiB (target <= 57.2 MiB = 60 MB); load average ${load()}`,
      );
      console.log(
        `keel-agent RSS over time (1 s readings; the watch began ${settleS} s after the agent was online):`,
      );
      for (const l of timeline(a, settleS)) console.log(l);
      // Whether the controller kept storing (and so acking) the agent's ticks: an agent whose
      // stream is not acked keeps what it sent in flight, which is not the agent at rest a host runs.
      const pg = postgres(scratchDb.url, { max: 1, onnotice: () => {} });
      try {
        const [row] = await pg<{ n: number; last: Date | null }[]>`
          select count(*)::int as n, max(ts) as last from metric_samples where host_id = ${agent.hostId}`;
        const lagS = row?.last ? (Date.now() - row.last.getTime()) / 1000 : null;
        console.log(
          `  ticks stored by the controller: ${row?.n ?? 0} (~${Math.round((FOOTPRINT_SECONDS + settleS) / interval)} taken since online); ` +
            `newest ${lagS === null ? 'none' : `${lagS.toFixed(0)} s old`}`,
        );
      } finally {
        await pg.end();
      }
    } finally {
      exporter?.kill('SIGTERM');
      await agent.stop();
      await ctl.stop();
      await scratchDb.drop();
      removeDir(dataDir);
    }
  }
}

const avg = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

async function main(): Promise<void> {
  console.log(`metrics benchmark on ${machine()}; parts: ${[...parts].join(', ')}; load average ${load()}`);
  if (args['keep-db'] && parts.has('query')) {
    const name = args['keep-db'];
    if (!/^[a-z0-9_]+$/.test(name)) throw new Error('--keep-db: lower-case letters, digits and _');
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    const [exists] = await admin`select 1 from pg_database where datname = ${name}`;
    if (!exists) await admin.unsafe(`create database "${name}"`);
    await admin.end();
    const kept = new URL(url);
    kept.pathname = `/${name}`;
    const { db, close } = await openDatabase({ url: kept.toString(), dataDir: tempDir('keel-bench-') });
    try {
      const have = (await db.execute(
        sql`select "id"::text as "id" from "hosts" where "name" like 'bench-%' order by "name"`,
      )) as unknown as { id: string }[];
      const ids = have.length >= HOSTS ? have.slice(0, HOSTS).map((r) => r.id) : await makeHosts(db, HOSTS);
      console.log(`kept database ${name}: ${have.length >= HOSTS ? 'reused' : 'new'}`);
      await query(db, ids);
    } finally {
      await close();
    }
    parts.delete('query');
  }
  if (parts.has('ingest') || parts.has('query')) {
    const target = testDatabaseTargets({ KEEL_TEST_DATABASE_URL: url }).find((t) => t.driver === 'postgres');
    if (!target) throw new Error('no PostgreSQL target');
    const testDb = await target.create();
    try {
      const { db } = await testDb.open();
      const ids = await makeHosts(db, HOSTS);
      if (parts.has('ingest')) await ingest(db, ids, (testDb.options as { url: string }).url);
      if (parts.has('query')) await query(db, ids);
    } finally {
      await testDb.cleanup();
    }
  }
  if (parts.has('footprint')) await footprint();
}

await main();
process.exit(0);
