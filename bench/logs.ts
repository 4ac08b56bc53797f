// Benchmark: the log pipeline (issue 8). One writer program prints numbered ~100-byte log lines as
// fast as it can — the same lines, the same count, in every leg of one run:
//   raw          into /dev/null (what the program can do);
//   supervisord  Debian's supervisor capturing it to its log file;
//   (a) captured Keel's supervisor (keeper, output file, tailer) into a real on-disk spool, in this
//                process: the agent's capture alone;
//   (b) durable  a real controller on PostgreSQL and the bundled agent it enrolled: the process
//                started through the API, timed until the host's logs stream cursor in PostgreSQL
//                holds every line; then checked: no gap recorded, chunks hold exactly the lines;
//   (c) live     a `process.logs` live channel opened through the API before the writer starts,
//                counting the lines it delivers and what it skipped (a live view skips ahead when
//                its reader is behind; the stored copy is the complete one);
//   search       a regex over the stored lines of that one process through GET /logs/search, next
//                to `grep -cE` over the same lines as a plain file, and to the storage floor:
//                the same chunks fetched from PostgreSQL and decoded, nothing else.
// Every rate is bytes (lines plus newline) over the time from the writer's first line to the last
// line arriving where that leg counts it, and is shown as a ratio to the raw leg.
//
// Rounds: both capture legs are bound by the writer, whose rate on a shared machine moves from one
// minute to the next, so one supervisord leg beside one Keel leg compares two moments. --rounds N
// (default 3) runs raw once, then N rounds of supervisord and (a), alternating, the order swapped
// every round (supervisord first in odd rounds, Keel first in even ones); each round prints both
// legs and its ratio, then the run prints each leg's median rate, the ratio of the medians, every
// round's ratio, and each leg's CPU-s per GiB (median and range). Each capture line also says how
// long after the writer's last write the leg counted its last line (Keel: the tailer ticks every
// 200 ms as in the agent, and again at once only while a tick stopped at its 4 MiB read cap, so a
// caught-up tailer can sleep up to 200 ms past the end; supervisord: the 20 ms poll of its file).
// The fleet legs (b), (c) and the search run once, after the rounds; their "x supervisord" is
// against supervisord's median rate.
//
// The issue asks for 10 s of writing and 1 GiB for the search; on a shared 2-core machine the run is
// bounded by volume instead: --mib (default 256) MiB of lines, or --seconds (default 10) of
// writing, whichever comes first; the output says what it used.
//
// The search runs after the retention job's summary pass has written every chunk's gram filter
// (timed and shown), over --search-mib MiB (default --mib): when the run stored fewer lines, the
// rest of the same writer's lines are appended straight into the stream through the controller's
// stream repository (the gateway's path, 4 MiB batches), so 1 GiB can be searched without
// writing 1 GiB through the agent at once.
//
// Run: npm run bench -- logs [--mib 256] [--seconds 10] [--search-mib N] [--skip-fleet] [--rounds 3]
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import postgres from 'postgres';
import WebSocket from 'ws';
import { drizzle } from 'drizzle-orm/postgres-js';
import { encodeLogLine, encodeRecords, processSpecSchema } from '@keel/shared';
import { schema, type Db } from '../controller/src/db/index.ts';
import { createLogRetentionRepository } from '../controller/src/repositories/log-retention.ts';
import { createStreamRepository } from '../controller/src/repositories/streams.ts';
import { Spool } from '../agent/src/link/spool.ts';
import { LogTailer, tailContinuously } from '../agent/src/supervisor/log-tail.ts';
import { Supervisor } from '../agent/src/supervisor/supervisor.ts';
import { startBundledAgent } from './lib/bundled-agent.ts';
import { logFloorLeg } from './lib/log-floor.ts';
import { decodeChunk } from '../controller/src/repositories/chunk-codec.ts';
import {
  createScratchDatabase,
  machine,
  procCpuMs,
  procMemory,
  procMinorFaults,
  procSystemMs,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '10' },
    'skip-fleet': { type: 'boolean', default: false },
    /** Volume searched (default --mib): lines past what the run stored are appended (see below). */
    'search-mib': { type: 'string' },
    /** Alternating supervisord and Keel capture legs (see the header). */
    rounds: { type: 'string', default: '3' },
    /** Leave out the floor under the durable leg (bench/lib/log-floor.ts). */
    'skip-floor': { type: 'boolean', default: false },
    /** Close (c)'s live channel before the first line: (b) with no one watching. */
    'skip-live': { type: 'boolean', default: false },
    /** Only the raw leg and the floor. */
    'floor-only': { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const LINE_BYTES = 100; // with its newline
const maxLines = Math.floor((Number(args.mib) * MiB) / LINE_BYTES);
const maxMs = Number(args.seconds) * 1000;
const rounds = Math.max(1, Math.floor(Number(args.rounds)));
/**
 * Matches lines whose number ends in 99999: ~1 in 100,000. It requires the literal `99999 `, so a
 * search may skip the chunks whose gram filter shows they lack it (as grep skips lines by it).
 */
const PATTERN = '^n [0-9]*99999 ';
/** The same lines as a counted repeat, which the search turns into the literal `99999`. */
const PATTERN_COUNTED = '^n [0-9]*9{5} ';
/**
 * Lines whose number ends in 99?999 (~1 in 100,000): no literal of a gram's 5 bytes, so the search
 * reads every chunk (a full scan), as grep reads every line.
 */
const PATTERN_FULL_SCAN = '^n [0-9]*99.999 ';
const searchLines = Math.floor((Number(args['search-mib'] ?? args.mib) * MiB) / LINE_BYTES);

const dir = mkdtempSync(join(tmpdir(), 'keel-bench-logs-'));
const writer = join(dir, 'writer.cjs');
// argv: <report file> <max lines> <max ms> [<file that must exist before it starts>]. Lines are a
// function of their number only, so every leg (and the grep file) prints the same text.
writeFileSync(
  writer,
  `const fs = require('fs');
const [report, maxLines, maxMs, go] = process.argv.slice(2);
if (go) while (!fs.existsSync(go)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const paths = ['/api/v1/items', '/api/v1/users', '/healthz', '/static/app.js', '/api/v1/orders', '/login'];
const codes = [200, 200, 200, 200, 201, 204, 304, 404, 500];
const line = (n) => {
  const s = 'n ' + String(n).padStart(9, '0') + ' INFO api[' + (1000 + (n % 32)) + ']: ' + methods[n % 6] + ' ' +
    paths[(n >> 3) % 6] + '/' + ((n * 7919) % 100000) + ' ' + codes[n % 9] + ' ' + (n % 250) + 'ms req=' +
    ((n * 2654435761) >>> 0).toString(16).padStart(8, '0');
  return s.padEnd(${LINE_BYTES - 1}, ' ').slice(0, ${LINE_BYTES - 1}) + '\\n';
};
const limit = Number(maxLines);
const t0 = Date.now();
const end = t0 + Number(maxMs);
let n = 0;
let bytes = 0;
while (n < limit && Date.now() < end) {
  let s = '';
  for (let i = 0; i < 1000 && n < limit; i++) s += line(++n);
  const b = Buffer.from(s);
  let off = 0;
  while (off < b.length) off += fs.writeSync(1, b, off);
  bytes += b.length;
}
const ms = Date.now() - t0;
fs.writeFileSync(report, JSON.stringify({ lines: n, bytes, ms, t0, cpu: process.cpuUsage() }));`,
);

/** Polls `check` every `everyMs` until it holds (a finer grain than the harness's waitFor). */
async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs: number,
) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface WriterReport {
  lines: number;
  bytes: number;
  ms: number;
  t0: number;
  /** The writer's own CPU, µs: its writes into a pipe (supervisord) or into a file (Keel). */
  cpu: { user: number; system: number };
}
/** The writer's own CPU-s per GiB, user + system. */
const writerCpu = (w: WriterReport) =>
  `the writer itself ${((w.cpu.user + w.cpu.system) / 1e6 / (w.bytes / 1024 / MiB)).toFixed(2)} CPU-s per GiB, system ${(w.cpu.system / 1e6 / (w.bytes / 1024 / MiB)).toFixed(2)}`;
const readReport = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as WriterReport;
const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
const fmt = (lines: number, bytes: number, ms: number) =>
  `${Math.round(lines / (ms / 1000)).toLocaleString('en')} lines/s, ${mibps(bytes, ms).toFixed(1)} MiB/s`;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

console.log(`logs benchmark on ${machine()}; load average ${load()}`);
console.log(
  `volume: ${maxLines.toLocaleString('en')} lines of ${LINE_BYTES} bytes (${args.mib} MiB) or ${args.seconds} s of writing, whichever first`,
);

// ---- raw: the same program into /dev/null ------------------------------------------------------
const rawOut = join(dir, 'raw.json');
spawnSync('sh', [
  '-c',
  'exec node "$1" "$2" "$3" "$4" > /dev/null',
  'sh',
  writer,
  rawOut,
  String(maxLines),
  String(maxMs),
]);
const raw = readReport(rawOut);
const lines = raw.lines;
const rawRate = mibps(raw.bytes, raw.ms);
const ratio = (bytes: number, ms: number) => `${(mibps(bytes, ms) / rawRate).toFixed(2)}x raw`;
console.log(
  `raw into /dev/null:        ${fmt(raw.lines, raw.bytes, raw.ms)} (${lines.toLocaleString('en')} lines)`,
);
// Every other leg prints exactly the lines the raw leg managed (same text, same count).
const legArgs = [String(lines), String(24 * 3600 * 1000)];

/**
 * The floor under the durable leg: the same writer's bytes stored durably as LZ4 chunks by the
 * least work that can do it (bench/lib/log-floor.ts), from its output file as Keel reads it and
 * from a pipe; with Keel's durable rate of the same run, Keel's share of it.
 */
async function floorLegs(keelRate: number | null) {
  const label = { file: 'from its file', pipe: 'from a pipe', sealed: 'sealed frames' } as const;
  for (const input of ['file', 'pipe', 'sealed'] as const) {
    const f = await logFloorLeg({ dir, writer, legArgs, expectBytes: raw.bytes, input });
    const rate = mibps(f.bytes, f.ms);
    const share = keelRate === null ? '' : ` — Keel durable ${((keelRate / rate) * 100).toFixed(0)} % of it`;
    const sender = f.cpu.sender === null ? '' : `the sender ${f.cpu.sender.toFixed(1)} s, `;
    console.log(
      `floor, ${label[input].padEnd(13)}:  ${fmt(f.lines, f.bytes, f.ms)} (${ratio(f.bytes, f.ms)}; ${f.chunks} LZ4 chunks, ${(f.storedBytes / MiB).toFixed(1)} MiB; CPU: ${sender}this process ${f.cpu.floor.toFixed(1)} s, PostgreSQL's backend ${f.cpu.pg.toFixed(1)} s, the writer ${(f.cpu.writer / gibOf(f.bytes)).toFixed(2)} per GiB)${share}`,
    );
  }
}

// ---- supervisord and (a) Keel's capture, alternating over --rounds --------------------------------
/** One capture leg's figures: the writer's report, the leg's time and CPU, and how late it ended. */
interface Leg {
  w: WriterReport;
  /** From the writer's first line to the leg's last line where it counts it. */
  ms: number;
  rate: number;
  cpuS: number;
  /** From the writer's last write to the last line counted (the capture's own end). */
  endLagMs: number;
}
const gibOf = (bytes: number) => bytes / 1024 / MiB;

if (args['floor-only']) {
  await floorLegs(null);
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

const hasSupervisord = existsSync('/usr/bin/supervisord');
const supVersion = hasSupervisord ? spawnSync('supervisord', ['--version']).stdout.toString().trim() : '';

/** supervisord capturing the writer to its log file, timed until the file holds every byte. */
async function supervisordLeg(n: number): Promise<Leg> {
  const conf = join(dir, `supervisord-${n}.conf`);
  const supOut = join(dir, `sup-${n}.json`);
  const log = join(dir, `writer-${n}.log`);
  writeFileSync(
    conf,
    `[supervisord]\nnodaemon=true\nlogfile=${dir}/supervisord-${n}.log\npidfile=${dir}/supervisord.pid\n` +
      `[unix_http_server]\nfile=${dir}/s.sock\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n` +
      `[program:writer]\ncommand=node ${writer} ${supOut} ${legArgs.join(' ')}\nstdout_logfile=${log}\n` +
      `stdout_logfile_maxbytes=0\nautorestart=false\nstartsecs=0\n`,
  );
  const d = track(spawn('supervisord', ['-c', conf], { stdio: 'ignore' }));
  await until(
    () => existsSync(supOut) && existsSync(log) && statSync(log).size >= raw.bytes,
    600_000,
    'supervisord wrote every line',
    20,
  );
  const doneAt = Date.now();
  // supervisord's CPU for the whole leg (its start-up included, ~0.2 s): load-independent.
  const cpuS = procCpuMs(d.pid!) / 1000;
  const w = readReport(supOut);
  const exited = new Promise((resolve) => d.once('exit', resolve));
  d.kill('SIGTERM');
  await exited;
  rmSync(log, { force: true });
  const ms = doneAt - w.t0;
  const leg = { w, ms, rate: mibps(w.bytes, ms), cpuS, endLagMs: doneAt - (w.t0 + w.ms) };
  console.log(
    `supervisord to its file:   ${fmt(w.lines, w.bytes, ms)} (${ratio(w.bytes, ms)}; supervisord ${supVersion}, ${cpuS.toFixed(1)} CPU-s, ${(cpuS / gibOf(w.bytes)).toFixed(2)} per GiB; its file complete ${leg.endLagMs} ms after the writer's last write; ${writerCpu(w)})`,
  );
  return leg;
}

/** Keel's supervisor + tailer into a real spool, in this process, timed until the spool has every line. */
async function keelLeg(n: number, sup: Leg | null): Promise<Leg> {
  const keelDir = join(dir, `keel-${n}`);
  const spool = await Spool.open({ dir: join(keelDir, 'spool'), maxBytes: 4 * 1024 * MiB });
  const tailer = new LogTailer({ dir: keelDir, spool });
  const supervisor = new Supervisor({ dir: keelDir, tailer, log: pino({ level: 'silent' }) });
  const cpu0 = process.cpuUsage();
  const stopTail = tailContinuously(tailer, { everyMs: 200, onError: (err) => console.error(err) });
  const out = join(dir, `keel-${n}.json`);
  await supervisor.apply(
    processSpecSchema.parse({
      name: 'writer',
      argv: ['node', writer, out, ...legArgs],
      restart: { policy: 'never' },
    }),
  );
  await until(() => spool.lastSeq >= lines, 600_000, 'the tailer read every line', 10);
  const doneAt = Date.now();
  const cpu = process.cpuUsage(cpu0);
  const w = readReport(out);
  // The spool's bytes per captured byte (line blocks: ~1.00; a record per line: ~1.19).
  const spoolPerByte = spool.bytes / w.bytes;
  stopTail();
  supervisor.close();
  await spool.close();
  removeDir(keelDir);
  const ms = doneAt - w.t0;
  const gib = gibOf(w.bytes);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const leg = { w, ms, rate: mibps(w.bytes, ms), cpuS, endLagMs: doneAt - (w.t0 + w.ms) };
  const vsSup = sup ? `, ${(leg.rate / sup.rate).toFixed(2)}x supervisord` : '';
  console.log(
    `(a) Keel captured (spool): ${fmt(w.lines, w.bytes, ms)} (${ratio(w.bytes, ms)}${vsSup}; the writer alone ${fmt(w.lines, w.bytes, w.ms)}; ${cpuS.toFixed(1)} CPU-s in this process: ${(cpuS / gib).toFixed(2)} per GiB, user ${(cpu.user / 1e6 / gib).toFixed(2)} + system ${(cpu.system / 1e6 / gib).toFixed(2)}; spool ${spoolPerByte.toFixed(3)} bytes per byte; the last line in the spool ${leg.endLagMs} ms after the writer's last write; ${writerCpu(w)})`,
  );
  return leg;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const perGiB = (l: Leg) => l.cpuS / gibOf(l.w.bytes);
const sups: Leg[] = [];
const keels: Leg[] = [];
const roundRatios: number[] = [];
if (!hasSupervisord) console.log('supervisord: not installed (apt-get install supervisor), leg skipped');
for (let r = 1; r <= rounds; r++) {
  // Odd rounds: supervisord first; even rounds: Keel first (neither leg always runs first).
  const supFirst = !hasSupervisord || r % 2 === 1;
  if (rounds > 1) {
    console.log(
      `round ${r} of ${rounds} (${supFirst ? 'supervisord' : 'Keel'} first), load average ${load()}`,
    );
  }
  let sup: Leg | null = null;
  let keel: Leg;
  if (supFirst) {
    if (hasSupervisord) sup = await supervisordLeg(r);
    keel = await keelLeg(r, sup);
  } else {
    keel = await keelLeg(r, null);
    sup = await supervisordLeg(r);
  }
  keels.push(keel);
  if (sup) {
    sups.push(sup);
    roundRatios.push(keel.rate / sup.rate);
    if (rounds > 1) {
      console.log(
        `round ${r}: Keel ${keel.rate.toFixed(1)} MiB/s, supervisord ${sup.rate.toFixed(1)} MiB/s: ${(keel.rate / sup.rate).toFixed(2)}x supervisord`,
      );
    }
  }
}
/** supervisord's median rate over the rounds: the durable and live legs are compared with it. */
const supRate = sups.length > 0 ? median(sups.map((l) => l.rate)) : null;
const toSup = (bytes: number, ms: number) =>
  supRate ? `, ${(mibps(bytes, ms) / supRate).toFixed(2)}x supervisord` : '';
{
  const keelRate = median(keels.map((l) => l.rate));
  const span = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
  const keelGiB = keels.map(perGiB);
  console.log(
    `capture, median of ${rounds} round${rounds > 1 ? 's' : ''}: Keel ${keelRate.toFixed(1)} MiB/s (${(keelRate / rawRate).toFixed(2)}x raw), ${median(keelGiB).toFixed(2)} CPU-s per GiB (${span(keelGiB)}); ` +
      (supRate
        ? `supervisord ${supRate.toFixed(1)} MiB/s, ${median(sups.map(perGiB)).toFixed(2)} CPU-s per GiB (${span(sups.map(perGiB))}); ` +
          `Keel/supervisord ${(keelRate / supRate).toFixed(2)}x (ratio of medians; rounds ${roundRatios.map((x) => x.toFixed(2)).join(', ')})`
        : 'no supervisord'),
  );
  console.log(
    `capture's end after the writer's last write, median: Keel ${median(keels.map((l) => l.endLagMs))} ms (${keels.map((l) => l.endLagMs).join(', ')})` +
      (sups.length > 0
        ? `, supervisord ${median(sups.map((l) => l.endLagMs))} ms (${sups.map((l) => l.endLagMs).join(', ')})`
        : ''),
  );
}

// ---- (b) durable in PostgreSQL, (c) live subscriber, search --------------------------------------
if (!args['skip-fleet']) {
  const db = await createScratchDatabase('keel_bench_logs');
  const dataDir = tempDir('keel-bench-logs-ctl-');
  const ctl = await startController({ dataDir, databaseUrl: db.url });
  // The agent's default spool (64 MiB): while the controller takes records, the tailer leaves lines
  // in the output file rather than overflow the spool, so a burst larger than the spool is not lost.
  const agent = await startBundledAgent(ctl);
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const go = join(dir, 'go');
    const out = join(dir, 'fleet.json');
    const created = await ctl.api.post(`/hosts/${agent.hostId}/processes`, {
      name: 'writer',
      argv: [process.execPath, writer, out, ...legArgs, go],
      restart: { policy: 'never' },
    });
    if (created.status !== 200) throw new Error(`process not created: ${JSON.stringify(created.body)}`);

    // (c) The live subscriber connects before the first line.
    const ticket = await ctl.api.post<{ url: string }>(`/hosts/${agent.hostId}/channels`, {
      kind: 'process.logs',
      params: { name: 'writer', backlogBytes: 0 },
    });
    if (ticket.status !== 201) throw new Error(`no channel ticket: ${JSON.stringify(ticket.body)}`);
    const ws = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}${ticket.body.url}`, {
      headers: { origin: ctl.url },
    });
    let live = 0;
    let skipped = 0;
    let lastLiveAt = 0;
    let rest = '';
    const opened = new Promise<void>((resolve, reject) => {
      ws.on('message', (data, isBinary) => {
        if (!isBinary) {
          if (String(data).includes('"opened"')) resolve();
          return;
        }
        const text = rest + String(data);
        const parts = text.split('\n');
        rest = parts.pop() ?? '';
        for (const p of parts) {
          if (p.startsWith('{"skipped"')) skipped += (JSON.parse(p) as { skipped: number }).skipped;
          else live++;
        }
        lastLiveAt = Date.now();
      });
      ws.once('error', reject);
    });
    await opened;
    // --skip-live: the durable leg with no one watching (the live view's share of it).
    if (args['skip-live']) ws.close();

    // PostgreSQL's share: the backends serving the controller (this database, on this machine).
    const backendsCpuMs = async () => {
      const rows = await sql<
        { pid: number }[]
      >`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
      let ms = 0;
      for (const { pid } of rows) {
        try {
          ms += procCpuMs(pid);
        } catch {
          // a backend that ended meanwhile
        }
      }
      return ms;
    };
    const cpu0 = { agent: procCpuMs(agent.pid), controller: procCpuMs(ctl.pid), pg: await backendsCpuMs() };
    const sys0 = { agent: procSystemMs(agent.pid), controller: procSystemMs(ctl.pid) };
    const flt0 = { agent: procMinorFaults(agent.pid), controller: procMinorFaults(ctl.pid) };
    writeFileSync(go, '');
    const cursor = async () =>
      Number(
        (
          await sql`select seq_base + acked_seq as n from stream_cursors where host_id = ${agent.hostId} and stream = 'logs'`
        )[0]?.n ?? 0,
      );
    await until(async () => (await cursor()) >= lines, 900_000, 'every line stored in PostgreSQL', 50);
    const durableAt = Date.now();
    const cpu = {
      agent: (procCpuMs(agent.pid) - cpu0.agent) / 1000,
      controller: (procCpuMs(ctl.pid) - cpu0.controller) / 1000,
      pg: ((await backendsCpuMs()) - cpu0.pg) / 1000,
    };
    const sys = {
      agent: (procSystemMs(agent.pid) - sys0.agent) / 1000,
      controller: (procSystemMs(ctl.pid) - sys0.controller) / 1000,
    };
    const faults = {
      agent: procMinorFaults(agent.pid) - flt0.agent,
      controller: procMinorFaults(ctl.pid) - flt0.controller,
    };
    const ctlMemory = procMemory(ctl.pid);
    const w = readReport(out);
    const ms = durableAt - w.t0;
    const [gaps] =
      await sql`select count(*)::int as n from stream_gaps where host_id = ${agent.hostId} and stream = 'logs'`;
    const [stored] =
      await sql`select coalesce(sum(count), 0)::int as n from stream_chunks where host_id = ${agent.hostId} and stream = 'logs'`;
    const zeroLoss = gaps!.n === 0 && stored!.n === lines;
    console.log(
      `(b) Keel durable (PG):     ${fmt(w.lines, w.bytes, ms)} (${ratio(w.bytes, ms)}${toSup(w.bytes, ms)}; ${zeroLoss ? 'zero loss' : 'LOSS'}: ${stored!.n.toLocaleString('en')} of ${lines.toLocaleString('en')} lines stored, ${gaps!.n} gaps; CPU meanwhile: agent ${cpu.agent.toFixed(1)} s (system ${sys.agent.toFixed(1)}, ${faults.agent.toLocaleString('en')} page faults), controller ${cpu.controller.toFixed(1)} s (system ${sys.controller.toFixed(1)}, ${faults.controller.toLocaleString('en')} page faults), PostgreSQL's backends ${cpu.pg.toFixed(1)} s over ${(ms / 1000).toFixed(1)} s; controller RSS ${(ctlMemory.rss / MiB).toFixed(0)} MiB, peak ${(ctlMemory.hwm / MiB).toFixed(0)})`,
    );
    // The live view has nothing more to say once it was quiet for 2 s after storage caught up.
    await until(() => Date.now() - Math.max(lastLiveAt, durableAt) > 2_000, 60_000, 'live view quiet', 100);
    ws.close();
    const liveMs = lastLiveAt - w.t0;
    if (args['skip-live']) console.log('(c) Keel live subscriber:  not run (--skip-live)');
    else
      console.log(
        `(c) Keel live subscriber:  ${fmt(live, live * LINE_BYTES, liveMs)} delivered (${ratio(live * LINE_BYTES, liveMs)}); ${live.toLocaleString('en')} of ${lines.toLocaleString('en')} lines (${((live / lines) * 100).toFixed(1)} %), ${(skipped / MiB).toFixed(1)} MiB skipped ahead`,
      );

    if (!args['skip-floor']) await floorLegs(mibps(w.bytes, ms));

    // Search: a regex over the stored lines of this one process, next to grep -cE on a plain file.
    const total = Math.max(lines, searchLines);
    const plain = join(dir, 'plain.log');
    spawnSync('sh', [
      '-c',
      'exec node "$1" "$2" "$3" "$4" > "$5"',
      'sh',
      writer,
      join(dir, 'plain.json'),
      String(total),
      legArgs[1]!,
      plain,
    ]);
    const pg = postgres(db.url, { max: 2, onnotice: () => {} });
    const pgDb = drizzle({ client: pg, schema }) as unknown as Db;
    try {
      if (total > lines) {
        // The rest of the writer's lines, appended as the gateway appends what an agent sends.
        const streams = createStreamRepository(pgDb);
        const [cur] =
          await sql`select acked_seq from stream_cursors where host_id = ${agent.hostId} and stream = 'logs'`;
        let seq = Number(cur!.acked_seq) + 1;
        const fd = openSync(plain, 'r');
        const block = Buffer.alloc(40_000 * LINE_BYTES);
        const a0 = performance.now();
        for (let at = lines * LINE_BYTES; at < total * LINE_BYTES;) {
          const n = readSync(fd, block, 0, Math.min(block.length, total * LINE_BYTES - at), at);
          at += n;
          const records = [];
          for (let o = 0; o < n; o += LINE_BYTES) {
            records.push({
              ts: Date.now(),
              payload: encodeLogLine({
                process: 'writer',
                stream: 'stdout',
                continued: false,
                line: block.subarray(o, o + LINE_BYTES - 1),
              }),
            });
          }
          await streams.append(agent.hostId, 'logs', {
            firstSeq: seq,
            count: records.length,
            body: encodeRecords(records),
          });
          seq += records.length;
        }
        closeSync(fd);
        console.log(
          `search volume: ${(total - lines).toLocaleString('en')} more of the writer's lines appended through the stream repository (${((performance.now() - a0) / 1000).toFixed(1)} s), ${total.toLocaleString('en')} lines in all`,
        );
      }
      // The retention job's summary pass (every KEEL_LOG_RETENTION_INTERVAL_SECONDS in the
      // controller): per-process summaries and each chunk's gram filter, the search's skip index.
      const retention = createLogRetentionRepository(pgDb);
      const sc0 = process.cpuUsage();
      const s0 = performance.now();
      let summarised = 0;
      for (let n; (n = await retention.summariseMissing(agent.hostId, 100)) > 0;) summarised += n;
      const summariseMs = performance.now() - s0;
      const sc = process.cpuUsage(sc0);
      const [sizes] = await sql`select count(*)::int as chunks, sum(octet_length(data))::bigint as data,
        sum(octet_length(grams))::bigint as grams from stream_chunks where host_id = ${agent.hostId} and stream = 'logs'`;
      console.log(
        `summary pass (gram filters): ${summarised} chunks in ${(summariseMs / 1000).toFixed(2)} s, ${((sc.user + sc.system) / 1e6).toFixed(1)} CPU-s in the pass; filters ${(Number(sizes!.grams) / MiB).toFixed(1)} MiB beside ${(Number(sizes!.data) / MiB).toFixed(1)} MiB of chunks (${((Number(sizes!.grams) / Number(sizes!.data)) * 100).toFixed(0)} %)`,
      );
    } finally {
      await pg.end();
    }
    const plainMiB = statSync(plain).size / MiB;
    // The literal pattern three times, each next to its own grep (one reading on a shared machine
    // says little), then the counted repeat, then the full scan.
    for (const pattern of [PATTERN, PATTERN, PATTERN, PATTERN_COUNTED, PATTERN_FULL_SCAN]) {
      const q = new URLSearchParams({
        q: pattern,
        regex: 'true',
        hostId: agent.hostId,
        process: 'writer',
        limit: '2000',
        maxSeconds: '120',
      });
      const searchCpu0 = procCpuMs(ctl.pid);
      const s0 = performance.now();
      const res = await ctl.api.fetchRaw(`/logs/search?${q}`);
      const body = await res.text();
      const searchMs = performance.now() - s0;
      const searchCpu = (procCpuMs(ctl.pid) - searchCpu0) / 1000;
      const events = body
        .trim()
        .split('\n')
        .map(
          (l) => JSON.parse(l) as { type: string; matches?: number; readRecords?: number; reason?: string },
        );
      const end = events.find((e) => e.type === 'end');
      const g0 = performance.now();
      const grep = spawnSync('grep', ['-cE', pattern, plain]);
      const grepMs = performance.now() - g0;
      const grepCount = Number(grep.stdout.toString().trim());
      console.log(
        `search regex /${pattern}/ over ${plainMiB.toFixed(0)} MiB stored: ${(searchMs / 1000).toFixed(2)} s, ${end?.matches} matches, ${end?.readRecords?.toLocaleString('en')} of ${total.toLocaleString('en')} records read, end ${end?.reason}, controller CPU ${searchCpu.toFixed(1)} s` +
          ` — grep -cE over the same lines as a file: ${(grepMs / 1000).toFixed(2)} s, ${grepCount} matches (${(searchMs / grepMs).toFixed(1)}x grep)`,
      );
    }
    // The storage floor under a search that reads everything: the same chunks fetched from
    // PostgreSQL and decoded (LZ4; deflate for chunks stored before it), nothing else.
    const f0 = performance.now();
    let inflated = 0;
    for (let after = -1; ;) {
      const rows = await sql<{ first_seq: number; codec: number; data: Buffer }[]>`
        select first_seq, codec, data from stream_chunks
        where host_id = ${agent.hostId} and stream = 'logs' and first_seq > ${after}
        order by first_seq limit 32`;
      if (rows.length === 0) break;
      for (const r of rows) inflated += (await decodeChunk(r.codec, r.data)).length;
      after = Number(rows.at(-1)!.first_seq);
    }
    const floorMs = performance.now() - f0;
    const g0 = performance.now();
    spawnSync('grep', ['-cE', PATTERN, plain]);
    const grepMs = performance.now() - g0;
    console.log(
      `fetching and decoding every chunk alone: ${(floorMs / 1000).toFixed(2)} s (${(inflated / MiB).toFixed(0)} MiB of records, ${(floorMs / grepMs).toFixed(1)}x grep's ${(grepMs / 1000).toFixed(2)} s just after)`,
    );
  } finally {
    await sql.end();
    await agent.stop();
    await ctl.stop();
    removeDir(dataDir);
    await db.drop();
  }
}
// The raw leg again: on a shared machine the first one alone says little about the others' moment.
spawnSync('sh', ['-c', 'exec node "$1" "$2" "$3" "$4" > /dev/null', 'sh', writer, rawOut, ...legArgs]);
const raw2 = readReport(rawOut);
console.log(`raw into /dev/null again:  ${fmt(raw2.lines, raw2.bytes, raw2.ms)}`);
console.log(`load average at the end ${load()}`);
rmSync(dir, { recursive: true, force: true });
