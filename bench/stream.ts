// Benchmark: one agent's stream into the controller's database. A real agent link (AgentLink with a
// real on-disk Spool, in its own process) pushes ~100-byte log lines, appended 256 per spool
// append, through a stream named `bench` as fast as flow control allows; the controller (its own
// process) stores them as compressed chunk rows and acks only after the database commit. We count
// what is ACKNOWLEDGED (durable in the database) per second, on PGlite and on PostgreSQL, with the
// peak memory of both processes, and check afterwards that the database holds every acked record.
//
// Run: npm run bench -- stream [--driver pglite|postgres|both] [--seconds 10] [--batch 256]
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { sql } from 'drizzle-orm';
import { generateSigningIdentity, type StreamRecord } from '@keel/shared';
import { AgentLink } from '../agent/src/link/connection.ts';
import { Spool } from '../agent/src/link/spool.ts';
import { openDatabase } from '../controller/src/db/index.ts';
import {
  benchFacts,
  createJoinToken,
  createScratchDatabase,
  enrollIdentity,
  machine,
  mib,
  procCpuMs,
  procMemory,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
} from './lib/harness.ts';

const RECORD_PAYLOAD = 100;
/** Bytes per record on the wire and in the spool: u32 length + f64 timestamp + payload. */
const RECORD_BYTES = RECORD_PAYLOAD + 12;
const STREAM = 'bench';

// ---- agent process ---------------------------------------------------------------------------

interface AgentStart {
  url: string;
  token: string;
  pin: string;
  warmupMs: number;
  measureMs: number;
  batch: number;
  /** Most unacknowledged bytes the producer lets pile up in the spool before it waits. */
  backlogBytes: number;
}
interface AgentSample {
  t: number;
  acked: number;
  appended: number;
}
interface AgentReport {
  type: 'done';
  samples: AgentSample[];
  windowStart: AgentSample;
  windowEnd: AgentSample;
  dropped: number;
  producerWaits: number;
}

/** ~100-byte log lines that compress like real ones (varying paths, ids, timings). */
function logLines(count: number): Buffer[] {
  const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
  const paths = ['/api/v1/items', '/api/v1/users', '/healthz', '/static/app.js', '/api/v1/orders', '/login'];
  const codes = [200, 200, 200, 200, 201, 204, 304, 404, 500];
  return Array.from({ length: count }, (_, i) => {
    const line =
      `2030-01-0${1 + (i % 9)}T12:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')}.` +
      `${String(i % 1000).padStart(3, '0')}Z INFO api[${1000 + (i % 32)}]: ${methods[i % methods.length]} ` +
      `${paths[i % paths.length]}/${(i * 7919) % 100000} ${codes[i % codes.length]} ${i % 250}ms ` +
      `req=${randomBytes(4).toString('hex')} ua=curl/8.5`;
    return Buffer.from(line.padEnd(RECORD_PAYLOAD, ' ').slice(0, RECORD_PAYLOAD));
  });
}

async function runAgent(): Promise<void> {
  const start = await new Promise<AgentStart>((resolve) =>
    process.once('message', (m) => resolve(m as AgentStart)),
  );
  const identity = generateSigningIdentity();
  await enrollIdentity({
    controllerUrl: start.url,
    identity,
    pin: start.pin,
    token: start.token,
    name: 'bench-stream',
  });
  const dir = tempDir('keel-bench-spool-');
  const spool = await Spool.open({ dir: join(dir, STREAM), maxBytes: 4 * start.backlogBytes });
  let welcomed: () => void = () => {};
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  const link = new AgentLink({
    controllerUrl: start.url,
    identity,
    pin: start.pin,
    log: pino({ level: 'warn' }),
    streams: new Map([[STREAM, spool]]),
    handlers: {},
  });
  link.onSessionReady((channel) => {
    welcomed();
    channel.send({ type: 'facts', facts: benchFacts('bench-stream') });
  });
  const running = link.run();
  await welcome;

  const lines = logLines(4096);
  let next = 0;
  const samples: AgentSample[] = [];
  const t0 = performance.now();
  const sample = () => {
    const s = { t: performance.now() - t0, acked: spool.ackedSeq, appended: spool.lastSeq };
    samples.push(s);
    return s;
  };
  const sampler = setInterval(sample, 250);
  let windowStart: AgentSample | null = null;
  let producerWaits = 0;
  const end = start.warmupMs + start.measureMs;
  for (;;) {
    const elapsed = performance.now() - t0;
    if (windowStart === null && elapsed >= start.warmupMs) windowStart = sample();
    if (elapsed >= end) break;
    // Flow control reaches the producer through the spool: past the backlog bound, wait for acks.
    if ((spool.lastSeq - spool.ackedSeq) * RECORD_BYTES >= start.backlogBytes) {
      producerWaits++;
      await sleep(1);
      continue;
    }
    const ts = Date.now();
    const records: StreamRecord[] = new Array(start.batch);
    for (let i = 0; i < start.batch; i++) records[i] = { ts, payload: lines[next++ & 4095]! };
    spool.append(records);
    // Let the link pump, seal and receive acks between appends.
    await new Promise((r) => setImmediate(r));
  }
  const windowEnd = sample();
  clearInterval(sampler);
  const report: AgentReport = {
    type: 'done',
    samples,
    windowStart: windowStart!,
    windowEnd,
    dropped: spool.droppedRecords,
    producerWaits,
  };
  process.send!(report);
  await link.stop();
  await running;
  await spool.close();
  removeDir(dir);
  process.disconnect();
}

// ---- main ------------------------------------------------------------------------------------

interface Result {
  driver: 'pglite' | 'postgres';
  recordsPerSec: number;
  payloadMiBps: number;
  wireMiBps: number;
  acked: number;
  stored: number;
  storedBytes: number;
  chunks: number;
  dropped: number;
  producerWaits: number;
  agentPeak: number;
  controllerPeak: number;
  agentRss: number[];
  controllerRss: number[];
  controllerCpu: number;
  agentCpu: number;
  /** Wall time the CPU figures cover (agent start-up, enrollment and the run). */
  cpuMs: number;
  windowMs: number;
}

async function runOnce(
  driver: 'pglite' | 'postgres',
  opts: { seconds: number; batch: number; backlogBytes: number },
): Promise<Result> {
  const dataDir = tempDir('keel-bench-stream-');
  const scratch = driver === 'postgres' ? await createScratchDatabase('keel_bench_stream') : null;
  let controller: Awaited<ReturnType<typeof startController>> | null = null;
  let agent: ChildProcess | null = null;
  try {
    controller = await startController({ dataDir, databaseUrl: scratch?.url });
    const { token, pin } = await createJoinToken(controller.api, 1);
    agent = track(
      fork(fileURLToPath(import.meta.url), ['--role', 'agent'], { execArgv: ['--import', 'tsx'] }),
    );
    const report = new Promise<AgentReport>((resolve, reject) => {
      agent!.on('message', (m: AgentReport) => m.type === 'done' && resolve(m));
      agent!.once('exit', (code) => reject(new Error(`agent exited with ${code}`)));
    });
    const warmupMs = 1000;
    agent.send({
      url: controller.url,
      token,
      pin,
      warmupMs,
      measureMs: opts.seconds * 1000,
      batch: opts.batch,
      backlogBytes: opts.backlogBytes,
    } satisfies AgentStart);

    // Memory of both processes while it runs.
    const agentRss: number[] = [];
    const controllerRss: number[] = [];
    const cpu0 = { controller: NaN, agent: NaN, at: NaN };
    const sampler = setInterval(() => {
      try {
        agentRss.push(procMemory(agent!.pid!).rss);
        controllerRss.push(procMemory(controller!.pid).rss);
        if (Number.isNaN(cpu0.controller)) {
          cpu0.controller = procCpuMs(controller!.pid);
          cpu0.agent = procCpuMs(agent!.pid!);
          cpu0.at = performance.now();
        }
      } catch {
        // a process just exited
      }
    }, 250);
    const r = await report;
    clearInterval(sampler);
    // CPU from the first sample (about when the agent started producing) to the end.
    const controllerCpu = procCpuMs(controller.pid) - cpu0.controller;
    const agentCpu = procCpuMs(agent.pid!) - cpu0.agent;
    const cpuMs = performance.now() - cpu0.at;
    const agentPeak = procMemory(agent.pid!).hwm;
    const controllerPeak = procMemory(controller.pid).hwm;
    await new Promise<void>((resolve) =>
      agent!.exitCode !== null ? resolve() : agent!.once('exit', () => resolve()),
    );
    await controller.stop();
    controller = null;

    // What the database holds: every acked record must be there.
    const db = await openDatabase({ url: scratch?.url, dataDir });
    let stored = 0;
    let storedBytes = 0;
    let chunks = 0;
    try {
      const rows = await db.db.execute<{ records: string; bytes: string; chunks: string }>(
        sql`select coalesce(sum(count), 0)::text as records, coalesce(sum(octet_length(data)), 0)::text as bytes, count(*)::text as chunks from stream_chunks where stream = ${STREAM}`,
      );
      const row = (Array.isArray(rows) ? rows[0] : (rows as { rows: unknown[] }).rows[0]) as {
        records: string;
        bytes: string;
        chunks: string;
      };
      stored = Number(row.records);
      storedBytes = Number(row.bytes);
      chunks = Number(row.chunks);
    } finally {
      await db.close();
    }
    if (stored < r.windowEnd.acked)
      throw new Error(`database holds ${stored} records but ${r.windowEnd.acked} were acked`);

    const windowMs = r.windowEnd.t - r.windowStart.t;
    const records = r.windowEnd.acked - r.windowStart.acked;
    return {
      driver,
      recordsPerSec: records / (windowMs / 1000),
      payloadMiBps: mib(records * RECORD_PAYLOAD) / (windowMs / 1000),
      wireMiBps: mib(records * RECORD_BYTES) / (windowMs / 1000),
      acked: r.windowEnd.acked,
      stored,
      storedBytes,
      chunks,
      dropped: r.dropped,
      producerWaits: r.producerWaits,
      agentPeak,
      controllerPeak,
      agentRss,
      controllerRss,
      controllerCpu,
      agentCpu,
      cpuMs,
      windowMs,
    };
  } finally {
    if (agent && agent.exitCode === null) agent.kill('SIGKILL');
    await controller?.stop();
    await scratch?.drop();
    removeDir(dataDir);
  }
}

function spread(values: number[]): string {
  const half = values.slice(Math.floor(values.length / 2));
  return `${mib(Math.min(...half)).toFixed(0)}-${mib(Math.max(...half)).toFixed(0)} MiB`;
}

/** One reading a second (the samples are 250 ms apart), in MiB. */
function series(values: number[]): string {
  return values
    .filter((_, i) => i % 4 === 3)
    .map((v) => mib(v).toFixed(0))
    .join(' ');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      driver: { type: 'string', default: 'both' },
      seconds: { type: 'string', default: '10' },
      batch: { type: 'string', default: '256' },
      backlog: { type: 'string', default: '64' },
      role: { type: 'string' },
    },
  });
  if (values.role === 'agent') return runAgent();
  const drivers: ('pglite' | 'postgres')[] =
    values.driver === 'both' ? ['pglite', 'postgres'] : [values.driver as 'pglite' | 'postgres'];
  const opts = {
    seconds: Number(values.seconds),
    batch: Number(values.batch),
    backlogBytes: Number(values.backlog) * 1024 * 1024,
  };
  setTimeout(() => {
    console.error('stream benchmark: time limit reached, stopping');
    process.exit(2);
  }, 240_000).unref();

  console.log(`stream benchmark — ${machine()}`);
  console.log(
    `one agent (real AgentLink + Spool, own process) -> controller (own process); ${RECORD_PAYLOAD}-byte log lines, ` +
      `${opts.batch} per spool append, stream "${STREAM}"; counted when ACKED (stored and committed); ` +
      `${opts.seconds} s window after 1 s warm-up`,
  );
  const results: Result[] = [];
  for (const driver of drivers) {
    const r = await runOnce(driver, opts);
    results.push(r);
    console.log(
      `\n${driver}\n` +
        `  acked                 ${(r.recordsPerSec / 1000).toFixed(0)}k records/s = ${r.payloadMiBps.toFixed(1)} MiB/s of lines ` +
        `(${r.wireMiBps.toFixed(1)} MiB/s with record headers)   target >= 35 MiB/s into PostgreSQL\n` +
        `  stored                ${r.stored} records in ${r.chunks} chunk rows, ${mib(r.storedBytes).toFixed(1)} MiB compressed ` +
        `(${((r.stored * RECORD_BYTES) / Math.max(1, r.storedBytes)).toFixed(1)}x); acked ${r.acked}; spool dropped ${r.dropped}\n` +
        `  CPU                   controller ${((100 * r.controllerCpu) / r.cpuMs).toFixed(0)}% of a core, ` +
        `agent ${((100 * r.agentCpu) / r.cpuMs).toFixed(0)}% (over start-up and run); producer waited on flow control ${r.producerWaits} times\n` +
        `  peak RSS (VmHWM)      agent ${mib(r.agentPeak).toFixed(0)} MiB, controller ${mib(r.controllerPeak).toFixed(0)} MiB; ` +
        `second half RSS: agent ${spread(r.agentRss)}, controller ${spread(r.controllerRss)}\n` +
        `  RSS each second       agent ${series(r.agentRss)}\n` +
        `                        controller ${series(r.controllerRss)}`,
    );
  }
  console.log(
    '\npeers (DESIGN.md, same machine): PostgreSQL COPY ~117k narrow rows/s; 64 KiB text-COPY chunks (hex bytea, pglz) ~24 MiB/s; ' +
      'supervisord stdout capture ~118 MiB/s; spool alone 290-410 MiB/s (bench/spool.ts)',
  );
  console.log(
    '\n| driver | records/s | MiB/s (lines) | vs 35 MiB/s | peak RSS agent | peak RSS controller |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.driver} | ${(r.recordsPerSec / 1000).toFixed(0)}k | ${r.payloadMiBps.toFixed(1)} | ${(r.payloadMiBps / 35).toFixed(2)}x | ` +
        `${mib(r.agentPeak).toFixed(0)} MiB | ${mib(r.controllerPeak).toFixed(0)} MiB |`,
    );
  }
}

await main();
