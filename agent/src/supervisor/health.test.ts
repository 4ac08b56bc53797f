// Proves health checks and limits on the supervisor with real processes: a process stays
// `starting` until its TCP port accepts, its HTTP URL answers 2xx, or it prints its "Done" line;
// a running process whose check keeps failing is stopped and restarted as a failed run; a start
// past its timeout fails; an adopting supervisor keeps a healthy run `running`; cgroup v2 limits
// are written (memory.max, cpu.max, the pid in cgroup.procs) on a delegated hierarchy, and a host
// without one (this machine: memory and cpu on cgroup v1) runs the process and says why not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { processSpecSchema, type ProcessSpecInput } from '@keel/shared';
import { LogTailer } from './log-tail.ts';
import { Supervisor } from './supervisor.ts';
import { cpuMax, detectCgroupHost, prepareCgroup, type CgroupHost } from './cgroup.ts';
import { freePort } from '../../../test/helpers/ports.ts';
import { MemorySpool } from '../../../test/helpers/memory-spool.ts';

const log = pino({ level: 'silent' });

/** The process groups of every run recorded under `dir` (the keepers' pids in run.json). */
function groupsIn(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync(dir)) {
    try {
      out.push((JSON.parse(readFileSync(join(dir, name, 'run.json'), 'utf8')) as { pid: number }).pid);
    } catch {
      // no run
    }
  }
  return out;
}

function setup(t: { after(fn: () => void): void }, cgroups?: CgroupHost) {
  const dir = mkdtempSync(join(tmpdir(), 'keel-health-'));
  const spool = new MemorySpool();
  const events: { kind: string; data: Record<string, unknown> }[] = [];
  const sups: Supervisor[] = [];
  const timers: NodeJS.Timeout[] = [];
  const make = () => {
    const tailer = new LogTailer({ dir, spool });
    const sup = new Supervisor({
      dir,
      tailer,
      log,
      emit: (kind, data) => events.push({ kind, data }),
      ...(cgroups ? { cgroups } : {}),
    });
    // The capability reads output every 200 ms; so does this test.
    timers.push(setInterval(() => tailer.tick(), 100));
    sups.push(sup);
    return sup;
  };
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    for (const sup of sups) sup.close();
    // Each run's process group is led by its keeper, whose pid run.json holds.
    for (const pid of groupsIn(dir)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, events, make };
}

const spec = (s: ProcessSpecInput) => processSpecSchema.parse(s);
const of = (events: { kind: string; data: Record<string, unknown> }[], name: string) =>
  events.filter((e) => e.data.process === name).map((e) => e.kind);

async function until<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A node program: listens on `port` once it reads "listen" on stdin, closes on "close". */
const tcpServer = (port: number) => [
  process.execPath,
  '-e',
  `const net = require('net'); let s = null;
   require('readline').createInterface({ input: process.stdin }).on('line', (l) => {
     if (l === 'listen') s = net.createServer((c) => c.end()).listen(${port}, '127.0.0.1');
     if (l === 'close' && s) { s.close(); s = null; }
   });`,
];

test(
  'TCP check: starting until the port accepts, then running; failing checks restart it as a failure',
  { timeout: 60_000 },
  async (t) => {
    const { events, make } = setup(t);
    const sup = make();
    const port = await freePort();
    await sup.apply(
      spec({
        name: 'tcp',
        argv: tcpServer(port),
        health: { type: 'tcp', port, intervalMs: 200, timeoutMs: 500, failures: 2, startTimeoutSeconds: 60 },
        restart: { policy: 'on-failure', backoffMs: 100 },
      }),
    );
    const first = sup.status('tcp');
    assert.equal(first.state, 'starting');
    // Probes fail (nothing listens) and the process stays starting, saying why.
    await until('a failed probe', () => sup.status('tcp').health?.lastError);
    assert.equal(sup.status('tcp').state, 'starting');
    assert.match(sup.status('tcp').health!.lastError!, /ECONNREFUSED/);
    sup.stdin('tcp', 'listen');
    await until('running', () => sup.status('tcp').state === 'running');
    const healthy = sup.status('tcp');
    assert.equal(healthy.health?.status, 'healthy');
    assert.equal(healthy.pid, first.pid);
    assert.ok(healthy.health!.healthyAt! >= healthy.startedAt!);
    // It stops answering: after two failed probes it is restarted (a new pid), counted as a failure.
    sup.stdin('tcp', 'close');
    await until('a new run', () => {
      const s = sup.status('tcp');
      return s.pid !== null && s.pid !== first.pid && s.restarts === 1;
    });
    assert.deepEqual(of(events, 'tcp').slice(0, 6), [
      'process.started',
      'process.healthy',
      'process.unhealthy',
      'process.exited',
      'process.restarting',
      'process.started',
    ]);
    const exited = events.find((e) => e.kind === 'process.exited' && e.data.process === 'tcp')!;
    assert.equal(exited.data.reason, 'unhealthy');
    const unhealthy = events.find((e) => e.kind === 'process.unhealthy')!;
    assert.match(String(unhealthy.data.reason), /2 failed checks in a row/);
    // The new run waits for its port again.
    assert.equal(sup.status('tcp').state, 'starting');
  },
);

test(
  'HTTP check: a 503 keeps it starting (with the status), a 200 makes it running',
  { timeout: 60_000 },
  async (t) => {
    const { make } = setup(t);
    const sup = make();
    const port = await freePort();
    await sup.apply(
      spec({
        name: 'web',
        argv: [
          process.execPath,
          '-e',
          `let ready = false;
         require('http').createServer((q, s) => { s.statusCode = ready ? 200 : 503; s.end(); }).listen(${port}, '127.0.0.1');
         require('readline').createInterface({ input: process.stdin }).on('line', () => { ready = true; });`,
        ],
        health: { type: 'http', url: `http://127.0.0.1:${port}/health`, intervalMs: 200 },
      }),
    );
    await until('a 503 seen', () => /answered 503/.test(sup.status('web').health?.lastError ?? ''));
    assert.equal(sup.status('web').state, 'starting');
    sup.stdin('web', 'ready');
    await until('running', () => sup.status('web').state === 'running');
    assert.equal(sup.status('web').health?.status, 'healthy');
  },
);

test(
  'output check: running once the "Done" line is printed; adopted as running; a start past its timeout fails',
  { timeout: 60_000 },
  async (t) => {
    const { events, make } = setup(t);
    const sup = make();
    await sup.apply(
      spec({
        name: 'game',
        argv: [
          'sh',
          '-c',
          'echo "Preparing level"; read x; echo "Done (1.2s)! For help, type \\"help\\""; exec sleep 600',
        ],
        health: { type: 'output', match: 'Done (', startTimeoutSeconds: 60 },
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sup.status('game').state, 'starting', 'a line without the match does not count');
    sup.stdin('game', 'go');
    await until('running', () => sup.status('game').state === 'running');
    const pid = sup.status('game').pid;
    // A new supervisor (an agent restart) adopts the run as running: it passed its check before.
    sup.close();
    const again = make();
    await again.load();
    const adopted = again.status('game');
    assert.equal(adopted.pid, pid);
    assert.equal(adopted.adopted, true);
    assert.equal(adopted.state, 'running');
    assert.equal(adopted.health?.status, 'healthy');

    // A program that never prints its line fails its start once the timeout passes.
    await again.apply(
      spec({
        name: 'slow',
        argv: ['sh', '-c', 'echo "still loading"; exec sleep 600'],
        health: { type: 'output', match: '^Done', regex: true, startTimeoutSeconds: 1 },
        restart: { policy: 'never' },
      }),
    );
    await until('exited', () => again.status('slow').state === 'exited', 20_000);
    const slow = again.status('slow');
    assert.equal(slow.health?.status, 'unhealthy');
    assert.match(slow.health!.lastError!, /not healthy within 1 s/);
    assert.deepEqual(of(events, 'slow'), ['process.started', 'process.unhealthy', 'process.exited']);
  },
);

test('the health check spec is validated (port range, URL scheme, regex)', () => {
  const bad = (health: unknown) =>
    processSpecSchema.safeParse({ name: 'x', argv: ['true'], health }).success === false;
  assert.ok(bad({ type: 'tcp', port: 0 }));
  assert.ok(bad({ type: 'http', url: 'file:///etc/passwd' }));
  assert.ok(bad({ type: 'output', match: '(', regex: true }));
  assert.ok(bad({ type: 'exec', argv: ['true'] }));
  assert.ok(!bad({ type: 'output', match: '(' }), 'a plain substring may hold any character');
});

// ---- limits -------------------------------------------------------------------------------------

const realHost = detectCgroupHost();
const realPlan = (() => {
  if (!realHost.mount) return null;
  const controllers = (() => {
    try {
      return readFileSync(join(realHost.mount, realHost.self, 'cgroup.controllers'), 'utf8');
    } catch {
      return '';
    }
  })();
  return /\bmemory\b/.test(controllers) ? controllers : null;
})();

test(
  'limits on a host that does not delegate cgroup v2 controllers: the process runs, its status says why',
  {
    timeout: 30_000,
    skip: realPlan ? 'this host offers cgroup v2 memory (the OOM test runs instead)' : false,
  },
  async (t) => {
    const { events, make } = setup(t);
    const sup = make();
    await sup.apply(
      spec({
        name: 'capped',
        argv: ['sleep', '600'],
        limits: { memoryBytes: 64 * 1024 * 1024, cpuPercent: 50 },
      }),
    );
    const st = sup.status('capped');
    assert.equal(st.state, 'running');
    assert.equal(st.limits?.applied, false);
    assert.match(st.limits!.message!, /limits not applied: .*(memory|cgroup v1)/);
    const started = events.find((e) => e.kind === 'process.started' && e.data.process === 'capped')!;
    assert.equal(started.data.limits, st.limits!.message);
  },
);

test(
  'limits on a delegated cgroup v2 hierarchy: memory.max, cpu.max and the pid in cgroup.procs',
  { timeout: 30_000 },
  async (t) => {
    // A directory laid out as cgroupfs is (the files the kernel would offer): the supervisor's
    // writes are checked here; what the kernel does with them is the next test's (real host only).
    const mount = mkdtempSync(join(tmpdir(), 'keel-cgfs-'));
    t.after(() => rmSync(mount, { recursive: true, force: true }));
    const self = '/system.slice/keel-agent.service';
    const parent = join(mount, self);
    mkdirSync(parent, { recursive: true });
    writeFileSync(join(parent, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    writeFileSync(join(parent, 'cgroup.subtree_control'), '');
    writeFileSync(join(parent, 'cgroup.procs'), `${process.pid}\n`);
    assert.deepEqual(prepareCgroup({ mount, self }, 'x', {}), { ok: false, message: 'no limits set' });
    const { make } = setup(t, { mount, self });
    const sup = make();
    await sup.apply(
      spec({
        name: 'capped',
        argv: ['sleep', '600'],
        limits: { memoryBytes: 64 * 1024 * 1024, cpuPercent: 50 },
      }),
    );
    const leaf = join(parent, 'keel-capped');
    const st = sup.status('capped');
    assert.equal(st.limits?.applied, true, st.limits?.message ?? '');
    assert.equal(st.limits?.cgroup, leaf);
    assert.equal(readFileSync(join(leaf, 'memory.max'), 'utf8'), String(64 * 1024 * 1024));
    assert.equal(readFileSync(join(leaf, 'memory.swap.max'), 'utf8'), '0');
    assert.equal(readFileSync(join(leaf, 'cpu.max'), 'utf8'), '50000 100000');
    // The keeper (the group's leader) was moved in; st.pid is the keeper's until the program runs,
    // then the program's (a busy host can get there before this line), so compare with its group.
    const group = readFileSync(`/proc/${st.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2];
    assert.ok(
      [String(st.pid), group].includes(readFileSync(join(leaf, 'cgroup.procs'), 'utf8')),
      'the run is in its cgroup',
    );
    // The agent left its cgroup for a leaf, and the controllers were enabled for the children.
    assert.equal(readFileSync(join(parent, 'keel-agent', 'cgroup.procs'), 'utf8'), String(process.pid));
    assert.equal(readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu');
    assert.equal(cpuMax(250), '250000 100000');
    // Past the gate (the keeper waits for the kernel's move, which a plain directory never makes,
    // then gives up after ~3 s) the program runs as the keeper's child: status.pid becomes its pid.
    await until(
      'the program under its keeper',
      () => {
        const pid = sup.status('capped').pid;
        try {
          return pid !== st.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\u0000600\u0000';
        } catch {
          return false;
        }
      },
      20_000,
    );
  },
);

test(
  'a process over its memory.max is OOM-killed and reported (real cgroup v2 only)',
  {
    timeout: 60_000,
    skip: realPlan
      ? false
      : 'this host keeps memory on cgroup v1 (its cgroup v2 offers no memory controller): nothing to enforce with',
  },
  async (t) => {
    const { make } = setup(t);
    const sup = make();
    await sup.apply(
      spec({
        name: 'hog',
        argv: [process.execPath, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
        limits: { memoryBytes: 64 * 1024 * 1024 },
        restart: { policy: 'never' },
      }),
    );
    assert.equal(sup.status('hog').limits?.applied, true, sup.status('hog').limits?.message ?? '');
    await until('exited', () => sup.status('hog').state === 'exited', 30_000);
    const st = sup.status('hog');
    assert.equal(st.exitSignal, 'SIGKILL');
    assert.ok((st.limits?.oomKills ?? 0) >= 1);
  },
);
