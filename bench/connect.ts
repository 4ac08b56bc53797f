// Benchmark: many agents connecting to one controller. N simulated agents (the real AgentLink from
// agent/src/link/connection.ts, spread over a few worker processes) enroll over the real protocol,
// then, against a freshly restarted controller in its own process, all connect once: we measure
// handshakes/s over the connect phase (dial -> handshake -> session start -> welcome), when the
// controller's API shows all N online, and the controller's memory per idle connection
// ((RSS with N idle sessions - RSS before) / N, each after a forced full GC).
//
// Run: npm run bench -- connect [--n 1000] [--pg] [--workers 2] [--concurrency 64]
//   --n          agents (repeatable or comma list); default 1000 then 5000
//   --pg         PostgreSQL (a scratch database on the local server) instead of embedded PGlite
//   --workers    agent worker processes (default 2)
//   --concurrency handshakes in flight per worker (default 64)
//   --no-floor   skip the ceiling run (bench/handshake-floor.ts with the same N) after each size
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism as cores } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { generateSigningIdentity, type SigningIdentity } from '@keel/shared';
import { AgentLink } from '../agent/src/link/connection.ts';
import {
  benchFacts,
  createJoinToken,
  createScratchDatabase,
  enrollIdentity,
  machine,
  machineBusyMs,
  mib,
  openFileLimit,
  percentile,
  pool,
  procCpuMs,
  procMemory,
  procSyscalls,
  startCpuProfile,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
  waitFor,
  withFileLimit,
} from './lib/harness.ts';

// ---- worker: a share of the simulated agents ------------------------------------------------

type ToWorker =
  | {
      type: 'enroll';
      url: string;
      token: string;
      pin: string;
      count: number;
      offset: number;
      concurrency: number;
    }
  | { type: 'connect'; url: string; pin: string; concurrency: number; profile?: string };
type FromWorker =
  | { type: 'ready' }
  | { type: 'enrolled'; failures: number; error?: string }
  | { type: 'connected'; starts: number[]; welcomes: number[]; retries: number };

const now = () => performance.timeOrigin + performance.now();
/** Idle time before each memory reading (longer than V8's 8 s memory-reducer delay). */
const SETTLE_MS = 10_000;

function runWorker(): void {
  const send = (m: FromWorker) => process.send!(m);
  let identities: SigningIdentity[] = [];
  const links: AgentLink[] = [];
  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'enroll') {
      identities = Array.from({ length: msg.count }, () => generateSigningIdentity());
      let failures = 0;
      let error: string | undefined;
      void pool(identities, msg.concurrency, async (identity, i) => {
        const name = `bench-${msg.offset + i}`;
        try {
          await enrollIdentity({ controllerUrl: msg.url, identity, pin: msg.pin, token: msg.token, name });
        } catch (err) {
          failures++;
          error = String(err);
        }
      }).then(() => send({ type: 'enrolled', failures, error }));
      return;
    }
    if (msg.type === 'connect') {
      const profiler = msg.profile ? startCpuProfile() : undefined;
      let retries = 0;
      // The link logs a failed dial at debug level as 'connect failed': count those.
      const log = pino(
        {
          level: 'debug',
          hooks: {
            logMethod(args, method) {
              if (args.includes('connect failed' as never)) retries++;
              return method.apply(this, args);
            },
          },
        },
        { write: () => {} },
      );
      const starts = new Array<number>(identities.length).fill(0);
      const welcomes = new Array<number>(identities.length).fill(0);
      let welcomed = 0;
      // Each agent dials once (backoff and retries are the link's own); at most `concurrency`
      // are between their dial and their welcome at any time.
      void pool(identities, msg.concurrency, (identity, i) => {
        return new Promise<void>((resolve) => {
          starts[i] = now();
          const link = new AgentLink({
            controllerUrl: msg.url,
            identity,
            pin: msg.pin,
            log,
            streams: new Map(),
            handlers: { ping: () => ({ agentTime: Date.now() }) },
          });
          // Called right after every welcome: the session is up.
          link.onSessionReady((channel) => {
            if (welcomes[i] === 0) {
              welcomes[i] = now();
              welcomed++;
              resolve();
            }
            channel.send({ type: 'facts', facts: benchFacts(`bench-${i}`) });
          });
          links.push(link);
          void link.run();
        });
      }).then(async () => {
        if (profiler && msg.profile) writeFileSync(msg.profile, JSON.stringify(await profiler.stop()));
        if (welcomed === identities.length) send({ type: 'connected', starts, welcomes, retries });
      });
    }
  });
  // Messages sent before this listener existed would be lost: the main process waits for this.
  send({ type: 'ready' });
}

// ---- main: controller, workers, measurements ------------------------------------------------

interface Result {
  n: number;
  driver: string;
  enrollMs: number;
  connectMs: number;
  handshakesPerSec: number;
  apiOnlineMs: number;
  latencyP50: number;
  latencyP99: number;
  retries: number;
  /** CPU ms spent during the connect phase: whole machine, controller, agent workers. */
  cpu: { machine: number; controller: number; agents: number };
  /** The controller's read and write system calls during the connect phase. */
  syscalls: { reads: number; writes: number };
  rssBefore: number;
  rssAfter: number;
  anonBefore: number;
  anonAfter: number;
  heapBefore: number;
  heapAfter: number;
  workerRss: number;
  /** handshakes/s of bench/handshake-floor.ts with the same N and layout (the ceiling). */
  floor?: number;
}

/** Runs the handshake-floor benchmark (bare ws + the same crypto) with the same N and layout. */
function handshakeFloor(n: number, workers: number, concurrency: number): number {
  const file = fileURLToPath(new URL('./handshake-floor.ts', import.meta.url));
  const [cmd, argv] = withFileLimit(process.execPath, [
    '--import',
    'tsx',
    file,
    '--json',
    ...['--n', String(n), '--workers', String(workers), '--concurrency', String(concurrency)],
  ]);
  const out = execFileSync(cmd, argv, { encoding: 'utf8', timeout: 60_000 });
  return (JSON.parse(out.trim().split('\n').pop()!) as { handshakesPerSec: number }).handshakesPerSec;
}

/** Resolves when a worker is listening for requests. */
const workerReady = new WeakMap<ChildProcess, Promise<unknown>>();

function spawnWorker(): ChildProcess {
  const file = fileURLToPath(import.meta.url);
  const [cmd, argv] = withFileLimit(process.execPath, ['--import', 'tsx', file, '--role', 'agents']);
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  workerReady.set(
    child,
    new Promise((resolve) => child.on('message', (m: FromWorker) => m.type === 'ready' && resolve(m))),
  );
  return child;
}

function request<T extends FromWorker['type']>(
  w: ChildProcess,
  msg: ToWorker,
  reply: T,
): Promise<Extract<FromWorker, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromWorker) => {
      if (m.type !== reply) return;
      w.off('message', onMessage);
      resolve(m as Extract<FromWorker, { type: T }>);
    };
    w.on('message', onMessage);
    w.once('exit', (code) => reject(new Error(`agent worker exited with ${code}`)));
    void workerReady.get(w)!.then(() => w.send(msg));
  });
}

async function runOnce(
  n: number,
  opts: { pg: boolean; workers: number; concurrency: number },
): Promise<Result> {
  const dataDir = tempDir('keel-bench-connect-');
  const scratch = opts.pg ? await createScratchDatabase('keel_bench_connect') : null;
  const workers: ChildProcess[] = [];
  let controller: Awaited<ReturnType<typeof startController>> | null = null;
  try {
    controller = await startController({ dataDir, databaseUrl: scratch?.url });
    const { port, admin } = controller;
    const { token, pin } = await createJoinToken(controller.api, n);
    for (let i = 0; i < opts.workers; i++) workers.push(spawnWorker());
    const shares = workers.map((_, i) => Math.floor(n / opts.workers) + (i < n % opts.workers ? 1 : 0));

    // Enroll every identity over the real protocol (a handshake in enroll mode + the token).
    let t = now();
    let offset = 0;
    const enrolled = await Promise.all(
      workers.map((w, i) => {
        const m: ToWorker = {
          type: 'enroll',
          url: controller!.url,
          token,
          pin,
          count: shares[i]!,
          offset,
          concurrency: 16,
        };
        offset += shares[i]!;
        return request(w, m, 'enrolled');
      }),
    );
    const enrollMs = now() - t;
    const failed = enrolled.reduce((a, r) => a + r.failures, 0);
    if (failed > 0) throw new Error(`${failed} enrollments failed: ${enrolled.find((r) => r.error)?.error}`);

    // A fresh controller process on the same data: its memory holds no trace of enrollment.
    await controller.stop();
    controller = await startController({ dataDir, port, databaseUrl: scratch?.url, inspect: true, admin });
    // Memory is read after the same idle settle both times: V8's memory reducer gives back heap
    // pages only some seconds after the last GC, so a reading right after start-up runs high.
    const settle = async () => {
      await controller!.gc();
      await sleep(SETTLE_MS);
      await controller!.gc();
      await sleep(1000);
    };
    await settle();
    const memBefore = procMemory(controller.pid);
    const heapBefore = (await controller.memoryUsage()).heapUsed;

    // Connect phase: every agent dials once.
    // KEEL_BENCH_PROFILE=dir: a CPU profile of the controller over the connect phase.
    const profileDir = process.env.KEEL_BENCH_PROFILE;
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      await controller.profileStart();
    }
    const sys0 = procSyscalls(controller.pid);
    const cpu0 = {
      machine: machineBusyMs(),
      controller: procCpuMs(controller.pid),
      agents: workers.reduce((a, w) => a + procCpuMs(w.pid!), 0),
    };
    t = now();
    const connected = await Promise.all(
      workers.map((w, i) =>
        request(
          w,
          {
            type: 'connect',
            url: controller!.url,
            pin,
            concurrency: opts.concurrency,
            profile: profileDir ? join(profileDir, `connect-agents-${n}-${i}.cpuprofile`) : undefined,
          },
          'connected',
        ),
      ),
    );
    const lastWelcome = Math.max(...connected.map((c) => Math.max(...c.welcomes)));
    const connectMs = lastWelcome - t;
    const sys1 = procSyscalls(controller.pid);
    const syscalls = { reads: sys1.reads - sys0.reads, writes: sys1.writes - sys0.writes };
    const cpu = {
      machine: machineBusyMs() - cpu0.machine,
      controller: procCpuMs(controller.pid) - cpu0.controller,
      agents: workers.reduce((a, w) => a + procCpuMs(w.pid!), 0) - cpu0.agents,
    };
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      const file = join(profileDir, `connect-controller-${n}.cpuprofile`);
      writeFileSync(file, JSON.stringify(await controller.profileStop()));
      console.log(`controller profile of the connect phase: ${file}`);
    }
    const latencies = connected
      .flatMap((c) => c.welcomes.map((w, i) => w - c.starts[i]!))
      .sort((a, b) => a - b);
    const retries = connected.reduce((a, c) => a + c.retries, 0);

    // The controller's view: every host online in GET /api/v1/hosts.
    const api = controller.api;
    await waitFor(
      async () => {
        const { body } = await api.get<{ hosts: { online: boolean }[] }>('/hosts');
        return body.hosts.filter((h) => h.online).length === n;
      },
      60_000,
      `all ${n} hosts online in the API`,
    );
    const apiOnlineMs = now() - t;

    // Idle: let the facts writes and a heartbeat round pass, then measure after a full GC.
    await settle();
    const memAfter = procMemory(controller.pid);
    const heapAfter = (await controller.memoryUsage()).heapUsed;
    const { body } = await api.get<{ hosts: { online: boolean }[] }>('/hosts');
    const stillOnline = body.hosts.filter((h) => h.online).length;
    if (stillOnline !== n)
      throw new Error(`only ${stillOnline} of ${n} hosts still online after the idle period`);
    const workerRss = workers.reduce((a, w) => a + procMemory(w.pid!).rss, 0);

    return {
      n,
      driver: opts.pg ? 'postgres' : 'pglite',
      enrollMs,
      connectMs,
      handshakesPerSec: n / (connectMs / 1000),
      apiOnlineMs,
      latencyP50: percentile(latencies, 50),
      latencyP99: percentile(latencies, 99),
      retries,
      cpu,
      syscalls,
      rssBefore: memBefore.rss,
      rssAfter: memAfter.rss,
      anonBefore: memBefore.anon,
      anonAfter: memAfter.anon,
      heapBefore,
      heapAfter,
      workerRss,
    };
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await controller?.stop();
    await scratch?.drop();
    removeDir(dataDir);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', multiple: true },
      pg: { type: 'boolean', default: false },
      workers: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '64' },
      role: { type: 'string' },
      floor: { type: 'boolean', default: true },
    },
    allowNegative: true,
  });
  if (values.role === 'agents') return runWorker();
  const ns = (values.n ?? ['1000', '5000']).flatMap((v) => v.split(',')).map(Number);
  const workers = Number(values.workers);
  const concurrency = Number(values.concurrency);
  // Hard stop: a full run (1000 + 5000) takes about 2 minutes.
  setTimeout(() => {
    console.error('connect benchmark: time limit reached, stopping');
    process.exit(2);
  }, 400_000).unref();

  console.log(`connect benchmark — ${machine()}`);
  console.log(
    `agents: real AgentLink in ${workers} worker process(es), ${concurrency} handshakes in flight each; ` +
      `controller: keel-controller serve in its own process, ${values.pg ? 'PostgreSQL' : 'PGlite'}; ` +
      `open files: ${openFileLimit()} (children raise theirs to the hard limit)`,
  );
  const results: Result[] = [];
  for (const n of ns) {
    const r = await runOnce(n, { pg: values.pg, workers, concurrency });
    r.floor = values.floor ? handshakeFloor(n, workers, concurrency) : undefined;
    results.push(r);
    const perConn = (r.anonAfter - r.anonBefore) / n;
    console.log(
      `\nN=${n} (${r.driver})\n` +
        `  enroll (setup)          ${(r.enrollMs / 1000).toFixed(1)} s, ${(n / (r.enrollMs / 1000)).toFixed(0)} enrollments/s\n` +
        `  connect phase           ${(r.connectMs / 1000).toFixed(2)} s until the last welcome; ${r.retries} retried dials\n` +
        `  handshakes/s            ${r.handshakesPerSec.toFixed(0)}   (target >= 2,000)\n` +
        (r.floor
          ? `  ceiling on these cores  ${r.floor.toFixed(0)}/s: the same handshake over bare ws, no Keel (handshake-floor); ` +
            `Keel reaches ${((100 * r.handshakesPerSec) / r.floor).toFixed(0)}% of it\n`
          : '') +
        `  CPU per handshake       ${(r.cpu.machine / n).toFixed(2)} ms machine-wide: controller ${(r.cpu.controller / n).toFixed(2)}, ` +
        `agents ${(r.cpu.agents / n).toFixed(2)}, rest (database, kernel) ${((r.cpu.machine - r.cpu.controller - r.cpu.agents) / n).toFixed(2)}; ` +
        `machine ${((100 * r.cpu.machine) / r.connectMs / cores()).toFixed(0)}% busy\n` +
        `  controller syscalls     ${(r.syscalls.reads / n).toFixed(1)} reads, ${(r.syscalls.writes / n).toFixed(1)} writes per handshake\n` +
        `  dial->welcome latency   p50 ${r.latencyP50.toFixed(0)} ms, p99 ${r.latencyP99.toFixed(0)} ms\n` +
        `  all online in API after ${(r.apiOnlineMs / 1000).toFixed(2)} s (GET /api/v1/hosts)\n` +
        `  controller memory       RSS ${mib(r.rssBefore).toFixed(1)} -> ${mib(r.rssAfter).toFixed(1)} MiB, ` +
        `anonymous RSS ${mib(r.anonBefore).toFixed(1)} -> ${mib(r.anonAfter).toFixed(1)} MiB with ${n} idle sessions\n` +
        `  per idle connection     ${(perConn / 1024).toFixed(1)} KiB anonymous RSS, ${((r.rssAfter - r.rssBefore) / n / 1024).toFixed(1)} KiB RSS ` +
        `(target <= 30 KB; ws alone 9.1 KB), ` +
        `${((r.heapAfter - r.heapBefore) / n / 1024).toFixed(1)} KiB JS heap` +
        (r.driver === 'pglite'
          ? '\n                          (PGlite lives in this process and its memory moves by tens of MiB: use --pg for RSS per connection)\n'
          : '\n') +
        `  simulated agents        ${mib(r.workerRss).toFixed(0)} MiB RSS in ${workers} workers`,
    );
  }
  console.log(
    '\npeers: `ws` idle connection ~9.1 KB server memory; node:crypto ed25519 sign 10,300/s, verify 6,400/s ' +
      '(a handshake costs each side one sign, one verify and an X25519 keygen + agreement: ~0.25 ms per side here; the agents share the 2 cores)',
  );
  console.log(
    '\n| N | driver | handshakes/s | ceiling (handshake-floor) | all online (API) | p99 dial->welcome | anon RSS/idle conn |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.n} | ${r.driver} | ${r.handshakesPerSec.toFixed(0)} | ${r.floor?.toFixed(0) ?? '-'} | ${(r.apiOnlineMs / 1000).toFixed(2)} s | ` +
        `${r.latencyP99.toFixed(0)} ms | ${((r.anonAfter - r.anonBefore) / r.n / 1024).toFixed(1)} KiB |`,
    );
  }
}

await main();
