// Test fleet: real controllers (in-process or as child processes) on loopback ports, real agent
// processes with their own state dirs, and small helpers to wait for what they report.
//
// Most end-to-end files need the same start: a controller, one agent enrolled and running, its
// host online. Use the shared fixture instead of writing it again:
//
//   const procs: Proc[] = [];
//   const dirs: string[] = [];
//   let fleet: Fleet<TestController>; // or Fleet<ControllerProcess> with controller: 'process'
//   before(async () => {
//     fleet = await startFleet(procs, dirs, { name: 'my-host', agentEnv: { KEEL_AGENT_LOG_LEVEL: 'info' } });
//   });
//   after(async () => {
//     for (const p of procs) await kill(p);
//     await fleet?.ctl.close(); // in-process controller only
//     for (const d of dirs) removeDir(d);
//   });
//
// What is cheap and what is not (2 busy cores; `npm test` prints each file's CPU seconds): an
// in-process controller (startTestController, the default) costs a copy of the database template
// and ~1 s of CPU to open it; a controller process (`controller: 'process'`, for a file that kills
// or restarts it, or measures its memory) ~1.5 s of CPU from the bundle and Node options `npm test`
// gives it (~6.5 s through the launcher with V8's defaults); an agent start ~0.25 s (bundled as
// released); the fixtures enroll in this process (enrollHere), not with a `keel-agent enroll`
// process (~0.35 s). Share one fleet per file (tests that need a host of their own enroll another with enrollNewAgent or
// enrollThroughApi); limits go on each test (`{ timeout }`), generous, never on the file. Wait for
// a condition (waitFor) rather than sleeping a fixed time.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import postgres from 'postgres';
import { generateSigningIdentity, type SigningIdentity } from '@keel/shared';
import { ApiClient, firstAdminFrom } from './api.ts';
import { loadConfig } from '../../controller/src/config/index.ts';
import { seedDatabase } from './database-template.ts';
import { freePort } from './ports.ts';
import { sampleFacts } from './facts.ts';
import { isSameProcess } from '../../agent/src/supervisor/proc.ts';
import { startController, type Controller } from '../../controller/src/server.ts';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
/**
 * The agent the tests run: `npm test` bundles it from src/ once per run (KEEL_TEST_AGENT_BIN,
 * see scripts/test.mjs: a third of the launcher's start-up CPU); otherwise the launcher.
 */
export const agentBin = process.env.KEEL_TEST_AGENT_BIN ?? join(repoRoot, 'agent/bin/keel-agent.mjs');
/**
 * The controller the tests run as a process: `npm test` bundles it from src/ once per run
 * (KEEL_TEST_CONTROLLER_BIN, see scripts/test.mjs: ~40% less start-up CPU); otherwise the launcher.
 */
export const controllerBin =
  process.env.KEEL_TEST_CONTROLLER_BIN ?? join(repoRoot, 'controller/bin/keel-controller.mjs');

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'keel-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  killSupervised(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Kills the process groups an agent state dir still supervises. Supervised processes outlive their
 * agent by design (kill -9 of the agent leaves them running), so a test that ends early, or never
 * stops what it started, would leave them behind on the machine: a spinner, a proxy, a game server.
 * Only a group whose leader is still the process the run recorded (pid and start time) is killed.
 */
export function killSupervised(stateDir: string): void {
  const dir = join(stateDir, 'processes');
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    try {
      const run = JSON.parse(readFileSync(join(dir, name, 'run.json'), 'utf8')) as {
        pid?: number;
        startTicks?: number;
      };
      if (
        typeof run.pid === 'number' &&
        typeof run.startTicks === 'number' &&
        isSameProcess(run.pid, run.startTicks)
      ) {
        process.kill(-run.pid, 'SIGKILL');
      }
    } catch {
      // No run recorded, or the group is gone already.
    }
  }
}

export { freePort };

/**
 * How long waitFor sleeps between checks, by how long it has waited: every 50 ms for 2 s, then
 * 100 ms, then 200 ms after 5 s. A check is often a request to a controller (a GET of /hosts at
 * 50 ms costs that controller ~9% of a core, the test ~2%) and the long waits (an agent
 * reconnecting, a timer) are the ones that need no 50 ms answer.
 */
export function pollDelay(waitedMs: number): number {
  return waitedMs < 2_000 ? 50 : waitedMs < 5_000 ? 100 : 200;
}

/** Polls `check` until it returns a truthy value or the time runs out (see pollDelay). */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const start = Date.now();
  const end = start + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, pollDelay(Date.now() - start)));
  }
}

/** Environment for a controller on `port` with data in `dataDir`. */
export function controllerEnv(
  dataDir: string,
  port: number,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    KEEL_DATA_DIR: dataDir,
    KEEL_PORT: String(port),
    KEEL_HOST: '127.0.0.1',
    KEEL_PUBLIC_URL: `http://127.0.0.1:${port}`,
    KEEL_LOG_LEVEL: process.env.KEEL_TEST_LOG_LEVEL ?? 'silent',
    ...extra,
  };
}

/** Starts a controller in this process on a free port, with its own data dir. */
export async function startTestController(
  opts: { dataDir?: string; port?: number; env?: Record<string, string> } = {},
): Promise<Controller & { dataDir: string }> {
  const dataDir = opts.dataDir ?? tempDir('keel-ctl-');
  const port = opts.port ?? (await freePort());
  await seedDatabase(dataDir, opts.env);
  const config = loadConfig(controllerEnv(dataDir, port, opts.env));
  const log = pino({ level: process.env.KEEL_TEST_LOG_LEVEL ?? 'silent' });
  const controller = await startController(config, log);
  return Object.assign(controller, { dataDir });
}

/** Makes a single-use join token (as the system actor) and returns its secret. */
export async function joinToken(
  controller: Controller,
  opts: { ttlSeconds?: number; uses?: number } = {},
): Promise<string> {
  const { secret } = await controller.services.joinTokens.create(
    { ttlSeconds: opts.ttlSeconds ?? 600, uses: opts.uses ?? 1, note: 'test' },
    { id: 'system', ip: null },
  );
  return secret;
}

/** A child process with its output collected. */
export interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/**
 * Node options for the processes tests start (controllers, agents), from KEEL_TEST_NODE_ARGS, which
 * `npm test` sets to what it gives the test processes themselves (scripts/test.mjs: V8's WebAssembly
 * baseline compiler only, so a controller start does not spend a second of CPU optimizing PGlite).
 */
const testNodeArgs = (process.env.KEEL_TEST_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

/** Spawns `node <bin> ...args` with extra env; output is collected for assertions and failures. */
export function spawnNode(bin: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [...testNodeArgs, bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** Runs `keel-agent enroll` for a state dir and resolves with its exit code and output. */
export async function enrollAgent(
  stateDir: string,
  controllerUrl: string,
  token: string,
  pin: string,
  name?: string,
): Promise<{ code: number | null; output: string }> {
  // The token goes in the environment, as the command the controller hands out does it.
  const args = ['enroll', '--controller', controllerUrl, '--pin', pin, '--state-dir', stateDir];
  if (name) args.push('--name', name);
  const p = spawnNode(agentBin, args, { KEEL_AGENT_LOG_LEVEL: 'warn', KEEL_JOIN_TOKEN: token });
  const code = await p.exited;
  return { code, output: p.output() };
}

/**
 * Enrolls a state dir in this process with the sequence `keel-agent enroll` runs
 * (agent/src/identity/enroll.ts) and resolves with the host id; rejects as the command fails
 * (`enroll failed: …`). A `keel-agent enroll` process costs ~0.35 s of CPU to start, so the
 * fixtures (startFleet, enrollThroughApi, enrollNewAgent) enroll here and start one agent process,
 * `keel-agent run`. The command itself runs through enrollAgent in agent/src/cli.test.ts,
 * console.test, refusals, tls-proxy and fleet-processes, and install.sh runs it in the install files.
 */
export async function enrollHere(
  stateDir: string,
  controllerUrl: string,
  token: string,
  pin: string,
  name?: string,
): Promise<string> {
  const { enrollHost } = await import('../../agent/src/identity/enroll.ts');
  return enrollHost({ controllerUrl, token, pin, name, stateDir });
}

/** Starts `keel-agent run` for an enrolled state dir. */
export function runAgent(stateDir: string, env: Record<string, string> = {}): Proc {
  return spawnNode(agentBin, ['run', '--state-dir', stateDir], {
    KEEL_AGENT_LOG_LEVEL: 'warn',
    // 2.5 s: the agent drops a link after two silent periods, and most files' controller runs in
    // the test process, whose event loop stalls under load (Playwright, PGlite, a test's own work).
    // At 1 s, 2 s of such a stall cut links mid-test (proxies-large-apply, agent-requests' 16 MiB
    // push, channels at load 13-31). A frozen controller is still noticed in 5 s (the product's
    // default: 10 s); heartbeats.test sets its own.
    KEEL_AGENT_HEARTBEAT_MS: '2500',
    // Terminals open a login shell of the tests' own user (scripts/test.mjs makes it when run as
    // root: a skeleton profile), not root's, whose profile here runs `pyenv init` (seconds a shell).
    ...(process.env.KEEL_TEST_TERMINAL_USER
      ? { KEEL_TERMINAL_USER: process.env.KEEL_TEST_TERMINAL_USER }
      : {}),
    ...env,
  });
}

/** Kills a process (SIGKILL by default) and waits for it to exit. */
export async function kill(proc: Proc, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
  return proc.exited;
}

/** A `keel-controller serve` child process on its own data dir, signed in as the first admin. */
export interface ControllerProcess {
  dataDir: string;
  url: string;
  api: ApiClient;
  proc: Proc;
  /**
   * Starts the controller again on the same data (after kill) and signs in; `env` is added to its
   * environment from then on (e.g. a shorter KEEL_HEARTBEAT_MS for the tests after a restart).
   */
  start(env?: Record<string, string>): Promise<void>;
  /** kill -9. */
  kill(): Promise<number | null>;
  /** kill -9, then start (with `env` added, as start). */
  restart(env?: Record<string, string>): Promise<void>;
}

/** Starts a controller process and waits until it is ready; the caller kills it (see `procs`). */
export async function startControllerProcess(
  procs: Proc[],
  opts: { dataDir?: string; env?: Record<string, string> } = {},
): Promise<ControllerProcess> {
  const dataDir = opts.dataDir ?? tempDir('keel-ctl-');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const api = new ApiClient(url);
  let admin: { username: string; password: string } | null = null;
  let env = opts.env;
  const self: ControllerProcess = {
    dataDir,
    url,
    api,
    proc: undefined as unknown as Proc,
    async start(more) {
      if (more) env = { ...env, ...more };
      await seedDatabase(dataDir, env);
      self.proc = spawnNode(controllerBin, ['serve'], controllerEnv(dataDir, port, env));
      procs.push(self.proc);
      await waitFor(async () => (await fetch(`${url}/readyz`)).ok, 60_000, 'controller ready');
      admin ??= firstAdminFrom(self.proc.output());
      if (!admin) throw new Error(`no first-admin banner in: ${self.proc.output()}`);
      await api.login(admin.username, admin.password);
    },
    kill: () => kill(self.proc),
    async restart(more) {
      await self.kill();
      await self.start(more);
    },
  };
  await self.start();
  return self;
}

/**
 * Creates a join token through the API and enrolls `stateDir` with exactly the arguments of the
 * command it returns: in this process (enrollHere), or with `run: 'command'` as that command, a
 * `keel-agent enroll` process (enrollAgent). Resolves with the host id.
 */
export async function enrollThroughApi(
  api: ApiClient,
  stateDir: string,
  name?: string,
  opts: { run?: 'here' | 'command' } = {},
): Promise<string> {
  const created = await api.post<{ enrollCommand: string }>('/join-tokens', { note: name });
  if (created.status !== 201)
    throw new Error(`join token: ${created.status} ${JSON.stringify(created.body)}`);
  const words = created.body.enrollCommand.trim().split(/\s+/);
  const token = /^KEEL_JOIN_TOKEN=(\S+)$/.exec(words[0] ?? '')?.[1];
  if (!token || words[1] !== 'keel-agent' || words[2] !== 'enroll')
    throw new Error(`unexpected command: ${created.body.enrollCommand}`);
  const arg = (flag: string) => words[words.indexOf(flag) + 1]!;
  if (opts.run !== 'command') return enrollHere(stateDir, arg('--controller'), token, arg('--pin'), name);
  const r = await enrollAgent(stateDir, arg('--controller'), token, arg('--pin'), name);
  if (r.code !== 0) throw new Error(`enroll exited ${r.code}: ${r.output}`);
  const hostId = /Enrolled as host (\S+)\./.exec(r.output)?.[1];
  if (!hostId) throw new Error(`no host id in enroll's output: ${r.output}`);
  return hostId;
}

/**
 * Enrolls a new agent state dir with an in-process controller (a fresh single-use token) and
 * returns the dir; the caller removes it.
 */
export async function enrollNewAgent(controller: Controller, name?: string): Promise<string> {
  const stateDir = tempDir('keel-agent-');
  await enrollHere(
    stateDir,
    `http://127.0.0.1:${controller.port}`,
    await joinToken(controller),
    controller.fingerprint,
    name,
  );
  return stateDir;
}

/**
 * Enrolls a fresh identity held in this process (no state dir, sampleFacts) with an in-process
 * controller and a single-use token: for the files that play the agent's side of the link
 * themselves (openSession, AgentLink) rather than run an agent.
 */
export async function enrollIdentity(
  controller: Controller,
  name: string,
): Promise<{ identity: SigningIdentity; hostId: string }> {
  const { redeemJoinToken } = await import('../../agent/src/link/connection.ts');
  const identity = generateSigningIdentity();
  const hostId = await redeemJoinToken({
    controllerUrl: controller.url,
    identity,
    pin: controller.fingerprint,
    token: await joinToken(controller),
    name,
    facts: sampleFacts,
  });
  return { identity, hostId };
}

/** An in-process controller as startTestController returns it. */
export type TestController = Awaited<ReturnType<typeof startTestController>>;

/** A controller with one enrolled agent running and its host online: see the header of this file. */
export interface Fleet<C extends TestController | ControllerProcess> {
  ctl: C;
  /** The agent process (pushed to `procs`; replace it after a kill with `runAgent(agentDir)`). */
  agent: Proc;
  agentDir: string;
  hostId: string;
}

export interface FleetOptions {
  /** 'process': `keel-controller serve` as a child process, signed in as the first admin. */
  controller?: 'in-process' | 'process';
  /** The controller's environment (e.g. KEEL_HEARTBEAT_MS). */
  env?: Record<string, string>;
  /** The agent's environment (e.g. KEEL_AGENT_LOG_LEVEL, KEEL_AGENT_METRICS_INTERVAL). */
  agentEnv?: Record<string, string>;
  /** The host's name. */
  name?: string;
  /** How long the agent may take to come online (a busy machine: generous). */
  onlineMs?: number;
}

/**
 * Starts a controller and one agent, enrolled (with the command the API hands out, for a
 * controller process) and online. Every process it starts goes into `procs`, every directory into
 * `dirs`: the caller's `after` kills and removes them (and closes an in-process controller).
 */
export async function startFleet(
  procs: Proc[],
  dirs: string[],
  opts: FleetOptions & { controller: 'process' },
): Promise<Fleet<ControllerProcess>>;
export async function startFleet(
  procs: Proc[],
  dirs: string[],
  opts?: FleetOptions & { controller?: 'in-process' },
): Promise<Fleet<TestController>>;
export async function startFleet(
  procs: Proc[],
  dirs: string[],
  opts: FleetOptions = {},
): Promise<Fleet<TestController | ControllerProcess>> {
  const name = opts.name ?? 'test-host';
  const onlineMs = opts.onlineMs ?? 30_000;
  const agentDir = tempDir('keel-agent-');
  dirs.push(agentDir);
  if (opts.controller === 'process') {
    const ctl = await startControllerProcess(procs, { env: opts.env });
    dirs.push(ctl.dataDir);
    const enrolled = await enrollThroughApi(ctl.api, agentDir, name);
    const agent = runAgent(agentDir, opts.agentEnv);
    procs.push(agent);
    const hostId = await waitFor(
      async () => {
        const res = await ctl.api.get<{ hosts: { id: string; name: string; online: boolean }[] }>('/hosts');
        return res.body.hosts.find((h) => h.name === name && h.online)?.id;
      },
      onlineMs,
      `${name} online`,
    );
    assert.equal(hostId, enrolled, 'the host online is the one enrolled');
    return { ctl, agent, agentDir, hostId };
  }
  const ctl = await startTestController({ env: opts.env });
  dirs.push(ctl.dataDir);
  try {
    const hostId = await enrollHere(agentDir, ctl.url, await joinToken(ctl), ctl.fingerprint, name);
    const agent = runAgent(agentDir, opts.agentEnv);
    procs.push(agent);
    const host = (await ctl.services.hosts.list()).find((h) => h.id === hostId);
    if (host?.name !== name) throw new Error(`host ${name} not stored after enroll`);
    await waitFor(() => ctl.gateway.isOnline(hostId), onlineMs, `${name} online`);
    return { ctl, agent, agentDir, hostId };
  } catch (err) {
    // The caller never gets this controller to close: left open, it would keep the test process
    // alive after its tests (seen: a batch held until the runner's 15-minute hang guard).
    await ctl.close();
    throw err;
  }
}

/** Controllers on one fresh PostgreSQL database, as replicas of one deployment: see startReplicas. */
export interface Replicas {
  /** The database's URL (for a test's own queries). */
  url: string;
  /** Starts one more controller on the database; a closed one's `dataDir` and `port` restart it. */
  start(opts?: { dataDir?: string; port?: number }): Promise<TestController>;
  /** Closes one controller (a clean stop: its lease goes) and removes its data dir unless kept (a restart). */
  stop(controller: TestController, opts?: { keepDataDir?: boolean }): Promise<void>;
  /** Closes every controller still open, removes their data dirs and drops the database. */
  close(): Promise<void>;
}

/**
 * Makes a fresh database on the test PostgreSQL (KEEL_TEST_DATABASE_URL) for controllers that run
 * beside each other on it. Null, with the test skipped, where there is no PostgreSQL (in CI: throws).
 * Call `close()` from the file's `after` as well as the test's `finally`: a test cancelled at its
 * limit goes on running, and a controller left open keeps the file from exiting.
 * @example const replicas = await startReplicas(t, 'keel_jobs'); if (!replicas) return;
 *          const a = await replicas.start(); const b = await replicas.start();
 */
export async function startReplicas(t: TestContext, prefix: string): Promise<Replicas | null> {
  const database = await freshDatabase(t, prefix);
  if (!database) return null;
  const { url } = database;
  const env = { DATABASE_URL: url };
  const open = new Set<TestController>();
  const dataDirs = new Set<string>();
  return {
    url,
    start: async (opts = {}) => {
      const c = await startTestController({ env, ...opts });
      open.add(c);
      dataDirs.add(c.dataDir);
      return c;
    },
    stop: async (c, opts = {}) => {
      open.delete(c);
      await c.close();
      if (opts.keepDataDir) return;
      dataDirs.delete(c.dataDir);
      removeDir(c.dataDir);
    },
    close: async () => {
      for (const c of [...open].reverse()) {
        open.delete(c);
        await c.close().catch(() => {});
      }
      for (const d of dataDirs) removeDir(d);
      dataDirs.clear();
      await database.drop();
    },
  };
}

/**
 * A fresh, empty database on the test PostgreSQL (KEEL_TEST_DATABASE_URL) named `<prefix>_<pid>_<ms>`;
 * null, with the test skipped, where there is no PostgreSQL (in CI: throws). `drop()` (safe to call
 * more than once) removes it, sessions still on it or not.
 */
export async function freshDatabase(
  t: TestContext,
  prefix: string,
): Promise<{ url: string; drop(): Promise<void> } | null> {
  const adminUrl = process.env.KEEL_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin`select 1`;
  } catch {
    await admin.end();
    if (process.env.CI) throw new Error(`PostgreSQL is needed at ${adminUrl}`);
    t.skip('no PostgreSQL here');
    return null;
  }
  const name = `${prefix}_${process.pid}_${Date.now()}`;
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await admin.unsafe(`drop database if exists "${name}" with (force)`).catch(() => {});
      await admin.end();
    },
  };
}
