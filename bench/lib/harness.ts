// Shared pieces of the multi-process benchmarks: a real controller (the keel-controller binary)
// in its own child process, a scratch PostgreSQL database, /proc memory readings, a forced GC in
// the controller through the V8 inspector, and enrollment of simulated agents over the real
// protocol. Nothing here is used by the product.
import { spawn, type ChildProcess } from 'node:child_process';
import inspector from 'node:inspector';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import postgres from 'postgres';
import WebSocket from 'ws';
import type { HostFacts, SigningIdentity } from '@keel/shared';
import { redeemJoinToken } from '../../agent/src/link/connection.ts';
import { ApiClient, firstAdminFrom } from '../../test/helpers/api.ts';
import {
  controllerBin,
  controllerEnv,
  freePort,
  removeDir,
  tempDir,
  waitFor,
} from '../../test/helpers/fleet.ts';
import { unitMallocEnv } from '../../scripts/unit-env.mjs';

export { ApiClient, freePort, removeDir, tempDir, waitFor };

/** Child processes to kill if the benchmark stops early (time limit, error). */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Registers a child process to be killed when this process exits. */
export function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Local PostgreSQL with trust auth (see DESIGN.md "Verified on our machines"). */
export const PG_ADMIN_URL = process.env.KEEL_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * Resident, peak resident and anonymous resident memory of a process, bytes, from
 * /proc/<pid>/status. RssAnon leaves out file-backed pages (the node binary, mapped files), which
 * the kernel may drop and fault back in at any time (this VM runs DAMON reclaim).
 */
export function procMemory(pid: number): { rss: number; hwm: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon') };
}

/** CPU time (user + system) a process has used, ms, from /proc/<pid>/stat. */
export function procCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** System CPU time a process has used, ms, from /proc/<pid>/stat (its share of procCpuMs). */
export function procSystemMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[12]) * 1000) / CLOCK_TICKS;
}

/** Minor page faults a process took so far (/proc/<pid>/stat): each a page it touched afresh. */
export function procMinorFaults(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[7]);
}

/** System calls a process made so far: reads and writes (from /proc/<pid>/io). */
export function procSyscalls(pid: number): { reads: number; writes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1] ?? 0);
  return { reads: field('syscr'), writes: field('syscw') };
}

/** Busy CPU time of the whole machine (all cores, everything but idle and iowait), ms. */
export function machineBusyMs(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3]! - cpu[4]!;
  return (busy * 1000) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux we run on. */
const CLOCK_TICKS = 100;

/** Soft limit on open files of this process (what children inherit). */
export function openFileLimit(): number {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits);
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : NaN;
}

/**
 * A command line that first raises the soft open-file limit to the hard one (thousands of
 * sockets), then execs the command in the same process (so its pid is the command's).
 */
export function withFileLimit(cmd: string, args: readonly string[]): [string, string[]] {
  return ['/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', cmd, ...args]];
}

export const mib = (bytes: number) => bytes / 1024 / 1024;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A scratch database on the local PostgreSQL, dropped by `drop()`. */
export async function createScratchDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const sql = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await sql.end();
      }
    },
  };
}

export interface BenchController {
  child: ChildProcess;
  pid: number;
  url: string;
  port: number;
  dataDir: string;
  api: ApiClient;
  admin: { username: string; password: string };
  /** Forces a full GC in the controller (inspector `HeapProfiler.collectGarbage`); needs `inspect`. */
  gc(): Promise<void>;
  /** `process.memoryUsage()` inside the controller; needs `inspect`. */
  memoryUsage(): Promise<NodeJS.MemoryUsage>;
  /** Starts the V8 CPU profiler in the controller; needs `inspect`. */
  profileStart(): Promise<void>;
  /** Stops it and returns the profile (a .cpuprofile JSON object). */
  profileStop(): Promise<unknown>;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts `keel-controller serve` as a child process and logs in as the first admin. On a data dir
 * that already has an admin, pass `admin` (the banner prints the password only once).
 */
export async function startController(opts: {
  dataDir: string;
  port?: number;
  databaseUrl?: string;
  inspect?: boolean;
  admin?: { username: string; password: string };
  logLevel?: string;
}): Promise<BenchController> {
  const port = opts.port ?? (await freePort());
  const env: Record<string, string> = {
    ...process.env,
    // As its unit runs it: glibc's MALLOC_* (KEEL_BENCH_CONTROLLER_ENV, `K=V K=V` or empty, replaces them).
    ...unitMallocEnv('keel-controller.service', process.env.KEEL_BENCH_CONTROLLER_ENV),
    ...controllerEnv(opts.dataDir, port, { KEEL_LOG_LEVEL: opts.logLevel ?? 'warn' }),
  } as Record<string, string>;
  if (opts.databaseUrl) env.DATABASE_URL = opts.databaseUrl;
  else delete env.DATABASE_URL;
  // KEEL_BENCH_CONTROLLER_NODE_ARGS, e.g. `--cpu-prof --cpu-prof-dir=bench/out/prof`, for profiling.
  const extra = (process.env.KEEL_BENCH_CONTROLLER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = [...extra, ...(opts.inspect ? ['--inspect=127.0.0.1:0'] : []), controllerBin, 'serve'];
  const [cmd, argv] = withFileLimit(process.execPath, args);
  const child = track(spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  // Keep only the head of the output: it holds the banner; the rest is drained and dropped.
  child.stdout!.on('data', (d: Buffer) => {
    if (out.length < 64 * 1024) out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 64 * 1024) err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`controller exited: ${err || out}`);
        return (await fetch(`${url}/readyz`)).ok;
      },
      120_000,
      'controller ready',
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const admin = opts.admin ?? (await waitFor(() => firstAdminFrom(out), 10_000, 'first admin banner'));
  const api = new ApiClient(url);
  await api.login(admin.username, admin.password);

  let inspector: WebSocket | null = null;
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  const call = async (method: string, params: unknown = {}): Promise<unknown> => {
    if (!inspector) {
      const wsUrl = await waitFor(
        () => /Debugger listening on (ws:\/\/\S+)/.exec(err)?.[1],
        10_000,
        'inspector url',
      );
      const ws = new WebSocket(wsUrl);
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString()) as { id?: number; result?: unknown };
        if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
      });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      inspector = ws;
    }
    const id = nextId++;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      inspector!.send(JSON.stringify({ id, method, params }));
    });
  };
  return {
    child,
    pid: child.pid!,
    url,
    port,
    dataDir: opts.dataDir,
    api,
    admin,
    async gc() {
      await call('HeapProfiler.collectGarbage');
      await call('HeapProfiler.collectGarbage');
    },
    async memoryUsage() {
      const r = (await call('Runtime.evaluate', {
        expression: 'JSON.stringify(process.memoryUsage())',
        returnByValue: true,
      })) as { result: { value: string } };
      return JSON.parse(r.result.value) as NodeJS.MemoryUsage;
    },
    async profileStart() {
      await call('Profiler.enable');
      await call('Profiler.setSamplingInterval', { interval: 200 });
      await call('Profiler.start');
    },
    async profileStop() {
      return ((await call('Profiler.stop')) as { profile: unknown }).profile;
    },
    output: () => out + err,
    async stop() {
      (inspector as WebSocket | null)?.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Creates a join token good for `uses` enrollments; returns its secret and the controller pin. */
export async function createJoinToken(api: ApiClient, uses: number): Promise<{ token: string; pin: string }> {
  const { status, body } = await api.post<{ command: string; secret: string }>('/join-tokens', {
    uses,
    ttlSeconds: 3600,
    note: 'bench',
  });
  if (status !== 201) throw new Error(`join token: ${status} ${JSON.stringify(body)}`);
  const words = body.command.split(/\s+/);
  return { token: body.secret, pin: words[words.indexOf('--pin') + 1]! };
}

/** Facts a simulated agent reports (constant, realistic size). */
export function benchFacts(name: string): HostFacts {
  return {
    hostname: name,
    os: { platform: 'linux', distro: 'Debian GNU/Linux', release: '12', codename: 'bookworm', arch: 'x64' },
    kernel: '6.1.0-28-amd64',
    cpu: { model: 'Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz', cores: 2, physicalCores: 2, speedGHz: 2.4 },
    memory: { totalBytes: 4 * 1024 ** 3 },
    disks: [
      { mount: '/', fs: '/dev/vda1', type: 'ext4', sizeBytes: 40 * 1024 ** 3, usedBytes: 9 * 1024 ** 3 },
    ],
    agentVersion: '0.1.0-bench',
    bootTime: Date.now() - 3_600_000,
    uptimeSeconds: 3600,
  };
}

/** Enrolls one identity over the real protocol (what `keel-agent enroll` does); resolves with the host id. */
export function enrollIdentity(opts: {
  controllerUrl: string;
  identity: SigningIdentity;
  pin: string;
  token: string;
  name: string;
}): Promise<string> {
  return redeemJoinToken({ ...opts, facts: benchFacts(opts.name) });
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
}

/** The machine, for the report. */
export function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown cpu';
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)?.length ?? 0;
  return `${hostname()}: ${cores} cores (${cpu.trim()}), Node ${process.version}`;
}

/** Percentile of a sorted array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A CPU profile of this process (KEEL_BENCH_PROFILE), through the in-process inspector. */
export function startCpuProfile(): { stop(): Promise<unknown> } {
  const session = new inspector.Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
  void post('Profiler.enable')
    .then(() => post('Profiler.setSamplingInterval', { interval: 200 }))
    .then(() => post('Profiler.start'));
  return {
    async stop() {
      const { profile } = (await post('Profiler.stop')) as { profile: unknown };
      session.disconnect();
      return profile;
    },
  };
}
