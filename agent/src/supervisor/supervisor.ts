// The supervisor: starts, watches, restarts and stops the host's supervised processes.
//
// A process outlives the agent: it is started detached, as the leader of its own process group,
// with stdout and stderr going straight into files and stdin coming from a FIFO, so nothing it
// needs goes through the agent. Its desired state and run (pid + start time from /proc) are kept
// in `<dir>/<name>/`; an agent that starts again adopts every process still running there,
// checking the start time so a reused pid is never taken for ours. What a process printed while
// the agent was down is in its files and goes out through the log tailer (log-tail.ts).
//
// Layout of `<dir>/<name>/`: spec.json ({ spec, desired }), run.json ({ pid, startTicks,
// startedAt, healthyAt, cgroup }), stdout.log, stderr.log, stdin (FIFO).
//
// A process with a health check stays `starting` until the check first passes (health.ts); one
// with limits runs in a cgroup v2 of its own where the host allows it (cgroup.ts).
import {
  constants as fsc,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readdirSync,
  readFileSync,
} from 'node:fs';
import { renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execa, execaSync, type Options } from 'execa';
import type { Logger } from 'pino';
import {
  KeelError,
  type ProcessHealthCheck,
  type ProcessSpec,
  type ProcessState,
  type ProcessStatus,
} from '@keel/shared';
import { cpuPercent, groupMembers, isSameProcess, readStat, sampleGroups } from './proc.ts';
import type { LogTailer } from './log-tail.ts';
import { outputMatcher, probe } from './health.ts';
import { detectCgroupHost, enterCgroup, oomKills, prepareCgroup, type CgroupHost } from './cgroup.ts';
import { writeProcessFiles } from './files.ts';
import { keeperArgv, readExitStatus } from './keeper.ts';

/** How often an adopted process (not our child: no exit event) is checked for life. */
const ADOPTED_POLL_MS = 500;
/** How often the group of a stopping process is checked for members. */
const STOP_POLL_MS = 25;
/** How long a start waits for the keeper to fork the program (so the reported pid is the program's). */
const PROGRAM_WAIT_MS = 1_000;
/** After SIGKILL, how long to wait for the group to be gone before reporting failure. */
const KILL_WAIT_MS = 5_000;
/** Environment passed on from the agent (the rest of the agent's environment stays private). */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME'];

interface Run {
  pid: number;
  startTicks: number;
  startedAt: number;
  /** When the run first passed its health check (kept so an adopted run stays `running`). */
  healthyAt?: number;
  /** Whether the run's limits hold (and its cgroup), kept for an adopting agent. */
  limits?: LimitsView;
  /** `pid` is the run's keeper (keeper.ts), the program its child; absent for runs of older agents. */
  keeper?: boolean;
}

type HealthView = NonNullable<ProcessStatus['health']>;
type LimitsView = NonNullable<ProcessStatus['limits']>;

interface Managed {
  spec: ProcessSpec;
  desired: 'running' | 'stopped';
  state: ProcessState;
  run: Run | null;
  exitCode: number | null;
  exitSignal: string | null;
  restarts: number;
  /** Times of automatic restarts within the crash-loop window. */
  restartTimes: number[];
  /** Consecutive failed runs (backoff exponent). */
  failures: number;
  nextRestartAt: number | null;
  adopted: boolean;
  restartTimer: NodeJS.Timeout | null;
  pollTimer: NodeJS.Timeout | null;
  /** Resolves when the current run has ended (its exit handled). */
  ended: Promise<void> | null;
  endRun: (() => void) | null;
  stdinFd: number | null;
  /** The current run's health (null: the spec has no check, or no run yet). */
  health: HealthView | null;
  /** The next health probe, and the end of the wait for the first pass. */
  probeTimer: NodeJS.Timeout | null;
  startDeadline: NodeJS.Timeout | null;
  /** Matches output lines while an output check waits for its line. */
  outputMatch: ((stream: string, line: string) => boolean) | null;
  /** The run is being stopped because it turned unhealthy (its exit counts as a failure). */
  unhealthyStop: boolean;
  /** Whether spec.limits hold for the current run. */
  limits: LimitsView | null;
  /** The program's pid under its keeper, once seen. */
  programPid: number | null;
}

/** What the supervisor reports as it goes (host events). */
export type SupervisorEmit = (kind: string, data: Record<string, unknown>) => void;

export interface SupervisorOptions {
  /** Where process state and output files live (`<agent state dir>/processes`). */
  dir: string;
  tailer: LogTailer;
  log: Logger;
  emit?: SupervisorEmit;
  /** The cgroup v2 mount and the agent's cgroup (detected from /proc when absent; for tests). */
  cgroups?: CgroupHost;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * True while any live process of group `pgid` exists. Zombies do not count: a killed child waits
 * for init to reap it, which some container inits do only every second or so.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return groupMembers(pgid).length > 0;
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
}

/** uid, primary gid and home of a user (from the system's user database), or a KeelError. */
function userAccount(user: string): { uid: number; gid: number; home: string } {
  if (process.getuid?.() !== 0) {
    throw new KeelError('request.invalid', `running a process as ${user} needs the agent to run as root`);
  }
  const entry = execaSync('getent', ['passwd', user], { reject: false }).stdout;
  const [, , uid, gid, , home] = String(entry).split(':');
  if (!uid || !gid) throw new KeelError('request.invalid', `no user named ${user} on this host`);
  // A system user's home may not exist (nobody: /nonexistent); such a process starts in /.
  return { uid: Number(uid), gid: Number(gid), home: home && existsSync(home) ? home : '/' };
}

/** The keeper's own short-lived children while it waits for its cgroup (keeper.ts). */
function isGateStep(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.startsWith('grep\u0000-qxF\u0000') || cmd === 'sleep\u00000.01\u0000';
  } catch {
    return true;
  }
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(value));
  renameSync(`${path}.tmp`, path);
}

/** Supervises the processes of one agent. */
export class Supervisor {
  #procs = new Map<string, Managed>();
  #opts: SupervisorOptions;
  #cpu = new Map<string, { ticks: number; at: number; percent: number | null }>();
  #closed = false;
  #cgroupHost: CgroupHost | null = null;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    opts.tailer.onLine(
      (process, stream, line) => this.#onOutputLine(process, stream, line),
      // Only a process whose output health check waits for its line needs them.
      (process) => {
        const m = this.#procs.get(process);
        return !!m?.outputMatch && !!m.run && m.health?.status === 'starting';
      },
    );
  }

  #emit(kind: string, data: Record<string, unknown>): void {
    this.#opts.emit?.(kind, data);
  }

  #path(name: string, file = ''): string {
    return join(this.#opts.dir, name, file);
  }

  #persist(m: Managed): void {
    writeJson(this.#path(m.spec.name, 'spec.json'), { spec: m.spec, desired: m.desired });
  }

  #tail(name: string): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#opts.tailer.add({ process: name, stream, path: this.#path(name, `${stream}.log`) });
    }
  }

  #blank(spec: ProcessSpec, desired: 'running' | 'stopped'): Managed {
    return {
      spec,
      desired,
      state: 'stopped',
      run: null,
      exitCode: null,
      exitSignal: null,
      restarts: 0,
      restartTimes: [],
      failures: 0,
      nextRestartAt: null,
      adopted: false,
      restartTimer: null,
      pollTimer: null,
      ended: null,
      endRun: null,
      stdinFd: null,
      health: null,
      probeTimer: null,
      startDeadline: null,
      outputMatch: null,
      unhealthyStop: false,
      limits: null,
      programPid: null,
    };
  }

  /**
   * Loads every process from disk: adopts those still running (same pid and start time), starts
   * again those that should run but died while the agent was away (per their restart policy).
   */
  async load(): Promise<void> {
    for (const name of readdirSync(this.#opts.dir)) {
      const specFile = this.#path(name, 'spec.json');
      if (!existsSync(specFile)) continue;
      let saved: { spec: ProcessSpec; desired: 'running' | 'stopped' };
      try {
        saved = JSON.parse(readFileSync(specFile, 'utf8')) as typeof saved;
      } catch (err) {
        this.#opts.log.error({ err, process: name }, 'unreadable process definition; skipped');
        continue;
      }
      const m = this.#blank(saved.spec, saved.desired);
      this.#procs.set(name, m);
      this.#tail(name);
      const run = this.#readRun(name);
      if (run && isSameProcess(run.pid, run.startTicks)) {
        m.run = run;
        m.state = 'running';
        m.adopted = true;
        if (m.spec.limits) m.limits = run.limits ?? null;
        this.#watchAdopted(m);
        // A run that had passed its check stays running; one still starting waits for it again.
        if (m.spec.health) this.#startHealth(m, m.spec.health, run.healthyAt ?? null);
        this.#opts.log.info({ process: name, pid: run.pid }, 'process adopted');
        this.#emit('process.adopted', { process: name, pid: run.pid, state: m.state });
        continue;
      }
      if (run) {
        // It ended while the agent was down: its keeper wrote how (older runs: unknown).
        const end = run.keeper ? readExitStatus(this.#path(name, 'exit-status')) : null;
        m.state = 'exited';
        m.exitCode = end?.code ?? null;
        m.exitSignal = end?.signal ?? null;
        this.#clearRun(name);
        this.#emit('process.exited', {
          process: name,
          exitCode: m.exitCode,
          signal: m.exitSignal,
          whileAgentDown: true,
        });
        if (m.desired === 'running' && m.spec.restart.policy !== 'never') this.#scheduleRestart(m, true);
      } else if (m.desired === 'running') {
        await this.#spawn(m);
      }
    }
  }

  #readRun(name: string): Run | null {
    try {
      return JSON.parse(readFileSync(this.#path(name, 'run.json'), 'utf8')) as Run;
    } catch {
      return null;
    }
  }

  #clearRun(name: string): void {
    rmSync(this.#path(name, 'run.json'), { force: true });
  }

  #get(name: string): Managed {
    const m = this.#procs.get(name);
    if (!m) throw new KeelError('process.not_found', `No process named ${name} on this host.`);
    return m;
  }

  /** Creates or replaces a definition. A new one with autostart starts; a running one keeps its run. */
  async apply(spec: ProcessSpec): Promise<ProcessStatus> {
    if (spec.user !== undefined) userAccount(spec.user);
    const existing = this.#procs.get(spec.name);
    if (existing) {
      existing.spec = spec;
      this.#persist(existing);
      return this.status(spec.name);
    }
    mkdirSync(this.#path(spec.name), { recursive: true, mode: 0o700 });
    const m = this.#blank(spec, spec.autostart ? 'running' : 'stopped');
    this.#procs.set(spec.name, m);
    this.#persist(m);
    this.#tail(spec.name);
    if (spec.autostart) await this.#spawn(m);
    return this.status(spec.name);
  }

  /** Starts a process by hand (clears crash-loop and the restart count). */
  async start(name: string): Promise<ProcessStatus> {
    const m = this.#get(name);
    m.desired = 'running';
    this.#persist(m);
    if (m.state === 'running' || m.state === 'starting') return this.status(name);
    if (m.state === 'stopping') await m.ended;
    this.#cancelRestart(m);
    m.restarts = 0;
    m.restartTimes = [];
    m.failures = 0;
    await this.#spawn(m);
    return this.status(name);
  }

  /** Stops a process: its stop line or signal, the grace period, then SIGKILL of the whole group. */
  async stop(name: string): Promise<ProcessStatus> {
    const m = this.#get(name);
    m.desired = 'stopped';
    this.#persist(m);
    this.#cancelRestart(m);
    await this.#stopRun(m);
    if (m.state !== 'running') m.state = 'stopped';
    return this.status(name);
  }

  /** Kills the whole group at once (SIGKILL, no stop line, no grace) and keeps it stopped. */
  async kill(name: string): Promise<ProcessStatus> {
    const m = this.#get(name);
    m.desired = 'stopped';
    this.#persist(m);
    this.#cancelRestart(m);
    await this.#stopRun(m, { signal: 'SIGKILL', graceMs: 0 });
    if (m.state !== 'running') m.state = 'stopped';
    return this.status(name);
  }

  /** Stops (if running) and starts again. */
  async restart(name: string): Promise<ProcessStatus> {
    await this.stop(name);
    return this.start(name);
  }

  /** Stops a process and deletes it with its files. */
  async remove(name: string): Promise<void> {
    const m = this.#get(name);
    await this.stop(name);
    // What it printed last is handed to the spool before its files go.
    this.#opts.tailer.drain();
    for (const stream of ['stdout', 'stderr']) this.#opts.tailer.remove(this.#path(name, `${stream}.log`));
    this.#closeStdin(m);
    this.#procs.delete(name);
    rmSync(this.#path(name), { recursive: true, force: true });
    this.#emit('process.removed', { process: name });
  }

  /** Writes one line (plus newline) to a running process's stdin. */
  stdin(name: string, line: string): number {
    const m = this.#get(name);
    if (!m.run || (m.state !== 'running' && m.state !== 'starting' && m.state !== 'stopping')) {
      throw new KeelError('process.not_running', `${name} is not running.`);
    }
    return this.#writeStdin(m, `${line}\n`);
  }

  #writeStdin(m: Managed, text: string): number {
    if (m.stdinFd === null) {
      try {
        // Non-blocking: a process that stopped reading must not hang the agent.
        m.stdinFd = openSync(this.#path(m.spec.name, 'stdin'), fsc.O_WRONLY | fsc.O_NONBLOCK);
      } catch (err) {
        throw new KeelError(
          'process.not_running',
          `${m.spec.name} has no open input: ${(err as Error).message}`,
        );
      }
    }
    const bytes = Buffer.from(text, 'utf8');
    try {
      return writeSync(m.stdinFd, bytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') throw new KeelError('process.stdin_full');
      this.#closeStdin(m);
      throw new KeelError(
        'process.not_running',
        `writing to ${m.spec.name} failed: ${(err as Error).message}`,
      );
    }
  }

  #closeStdin(m: Managed): void {
    if (m.stdinFd !== null) closeSync(m.stdinFd);
    m.stdinFd = null;
  }

  /** Every process, with CPU and memory of its group. */
  list(): ProcessStatus[] {
    const groups = sampleGroups();
    const now = Date.now();
    return [...this.#procs.keys()].sort().map((name) => this.status(name, groups, now));
  }

  /** One process's status. */
  status(name: string, groups = sampleGroups(), now = Date.now()): ProcessStatus {
    const m = this.#get(name);
    const g = m.run ? groups.get(m.run.pid) : undefined;
    let percent: number | null = null;
    if (g) {
      const prev = this.#cpu.get(name);
      if (prev && now - prev.at >= 250) {
        percent = cpuPercent(prev.ticks, g.cpuTicks, now - prev.at);
        this.#cpu.set(name, { ticks: g.cpuTicks, at: now, percent });
      } else if (prev) {
        percent = prev.percent;
      } else {
        this.#cpu.set(name, { ticks: g.cpuTicks, at: now, percent: null });
      }
    }
    const limits =
      m.limits && m.limits.cgroup ? { ...m.limits, oomKills: oomKills(m.limits.cgroup) } : m.limits;
    return {
      name,
      state: m.state,
      desired: m.desired,
      pid: m.run ? this.#programPid(m, m.run) : null,
      startedAt: m.run?.startedAt ?? null,
      exitCode: m.exitCode,
      exitSignal: m.exitSignal,
      restarts: m.restarts,
      nextRestartAt: m.nextRestartAt,
      cpuPercent: percent === null ? null : Math.round(percent * 10) / 10,
      rssBytes: g ? g.rssBytes : null,
      adopted: m.adopted,
      spec: m.spec,
      health: m.spec.health ? (m.health ? { ...m.health } : null) : null,
      limits: m.spec.limits ? limits : null,
    };
  }

  async #spawn(m: Managed): Promise<void> {
    const name = m.spec.name;
    const dir = this.#path(name);
    // Before any state changes: an unknown user (or an agent not running as root) fails the start.
    const account = m.spec.user === undefined ? null : userAccount(m.spec.user);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A template's config files, rewritten before every start (a bad path fails the start).
    if (m.spec.files?.length)
      writeProcessFiles(m.spec.cwd ?? (account ? account.home : dir), m.spec.files, account);
    m.state = 'starting';
    m.adopted = false;
    m.nextRestartAt = null;
    this.#stopHealth(m);
    m.health = null;
    m.limits = null;
    const fifo = join(dir, 'stdin');
    if (!existsSync(fifo)) execaSync('mkfifo', ['-m', '600', fifo]);
    // Output files fully handed to the spool start over for the new run (the files stay bounded
    // by one run's output; see docs/processes.md).
    this.#opts.tailer.drain();
    for (const stream of ['stdout', 'stderr']) {
      const file = join(dir, `${stream}.log`);
      // Not while a punch of it runs: it would zero the new run's first bytes (the file then
      // simply goes on from where it is).
      if (
        existsSync(file) &&
        !this.#opts.tailer.punching(file) &&
        this.#opts.tailer.committedOffset(file) === statSync(file).size
      ) {
        truncateSync(file, 0);
        this.#opts.tailer.reset(file);
      }
    }
    // O_RDWR on a FIFO never blocks, and the process holding a writer end itself means it never
    // sees EOF on stdin while the agent is away.
    const inFd = openSync(fifo, fsc.O_RDWR);
    const outFd = openSync(join(dir, 'stdout.log'), 'a', 0o600);
    const errFd = openSync(join(dir, 'stderr.log'), 'a', 0o600);
    // The keeper writes the program's end here (its fd 3), whatever user it runs as.
    const statusFd = openSync(join(dir, 'exit-status'), 'w', 0o600);
    const env: Record<string, string> = {};
    for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
    if (account) Object.assign(env, { USER: m.spec.user, LOGNAME: m.spec.user, HOME: account.home });
    Object.assign(env, m.spec.env);
    let ended!: () => void;
    m.ended = new Promise<void>((r) => (ended = r));
    m.endRun = ended;
    // Limits: a cgroup of its own where the host delegates one; else the run goes on without.
    const limits = m.spec.limits;
    const cgroup =
      limits && (limits.memoryBytes !== undefined || limits.cpuPercent !== undefined)
        ? prepareCgroup((this.#cgroupHost ??= this.#opts.cgroups ?? detectCgroupHost()), name, limits)
        : null;
    if (cgroup && !cgroup.ok) {
      m.limits = { applied: false, cgroup: null, message: cgroup.message, oomKills: null };
      this.#opts.log.warn({ process: name, reason: cgroup.message }, 'process limits not applied');
    }
    const kept = keeperArgv(cgroup?.ok ? cgroup.relative : null, m.spec.argv);
    // Another user: setpriv (util-linux) takes its uid, primary group and supplementary groups
    // (--init-groups, from the group database) and execs the keeper (same pid). Node's own uid/gid
    // options drop every supplementary group, so a game server in group `ssl-cert` could not read
    // its certificate.
    const argv = account
      ? ['setpriv', `--reuid=${account.uid}`, `--regid=${account.gid}`, '--init-groups', '--', ...kept]
      : kept;
    const [file, ...args] = argv as [string, ...string[]];
    m.programPid = null;
    try {
      const options = {
        // The state dir is the agent's own (0700): another user starts in its home directory.
        cwd: m.spec.cwd ?? (account ? account.home : dir),
        env,
        extendEnv: false,
        detached: true,
        cleanup: false,
        reject: false,
        // execa's types spell file descriptors as the literals 3-9; any open fd works at run time.
        stdio: [inFd as 3, outFd as 3, errFd as 3, statusFd as 3],
      } satisfies Options;
      const child = execa(file, args, options);
      const pid = child.pid;
      if (pid !== undefined) {
        if (cgroup?.ok) {
          const failed = enterCgroup(cgroup, pid);
          m.limits = failed
            ? { applied: false, cgroup: null, message: failed, oomKills: null }
            : { applied: true, cgroup: cgroup.path, message: null, oomKills: oomKills(cgroup.path) };
        }
        const stat = readStat(pid);
        m.run = { pid, startTicks: stat?.startTicks ?? 0, startedAt: Date.now(), keeper: true };
        if (m.limits) m.run.limits = m.limits;
        writeJson(this.#path(name, 'run.json'), m.run);
        m.state = m.spec.health ? 'starting' : 'running';
        this.#opts.log.info({ process: name, pid }, 'process started');
        this.#emit('process.started', {
          process: name,
          pid,
          ...(m.limits ? { limits: m.limits.applied ? 'applied' : m.limits.message } : {}),
        });
        if (m.spec.health) this.#startHealth(m, m.spec.health, null);
        // The keeper forks the program at once (after its cgroup move, when limited): wait a
        // moment for it, so the pid reported from here on is the program's, not the keeper's.
        const until = Date.now() + PROGRAM_WAIT_MS;
        const run = m.run;
        while (m.run === run && this.#programPid(m, run) === run.pid && Date.now() < until) {
          await sleep(STOP_POLL_MS / 5);
        }
      }
      child.unref();
      void child.then((result) => {
        const code = typeof result.exitCode === 'number' ? result.exitCode : null;
        const signal = result.signal ?? null;
        // A program that could not be started at all (ENOENT, EACCES) counts as exit 127.
        const failedToStart = pid === undefined || (code === null && signal === null);
        this.#onExit(m, failedToStart ? 127 : code, signal, failedToStart ? result.message : undefined);
      });
    } finally {
      closeSync(inFd);
      closeSync(outFd);
      closeSync(errFd);
      closeSync(statusFd);
    }
  }

  /** The program's pid: the keeper's child (found once, by its parent pid), or the run's pid. */
  #programPid(m: Managed, run: Run): number {
    if (!run.keeper) return run.pid;
    if (m.programPid !== null && readStat(m.programPid)?.ppid === run.pid) return m.programPid;
    m.programPid = null;
    for (const pid of groupMembers(run.pid)) {
      if (pid !== run.pid && readStat(pid)?.ppid === run.pid && !isGateStep(pid)) {
        m.programPid = pid;
        return pid;
      }
    }
    // Not forked yet (the keeper may still wait for its cgroup): the keeper stands for it.
    return run.pid;
  }

  #watchAdopted(m: Managed): void {
    let ended!: () => void;
    m.ended = new Promise<void>((r) => (ended = r));
    m.endRun = ended;
    const run = m.run!;
    m.pollTimer = setInterval(() => {
      if (isSameProcess(run.pid, run.startTicks)) return;
      // Not our child: its keeper wrote how the program ended (runs of older agents: unknown).
      const end = run.keeper ? readExitStatus(this.#path(m.spec.name, 'exit-status')) : null;
      this.#onExit(m, end?.code ?? null, end?.signal ?? null);
    }, ADOPTED_POLL_MS);
    m.pollTimer.unref();
  }

  #onExit(m: Managed, code: number | null, signal: string | null, error?: string): void {
    if (!m.run && m.state !== 'starting') return;
    // A closed supervisor has handed its runs to the next one (processes outlive the agent): the
    // keeper wrote how the program ended, and the next supervisor reads it with run.json. Clearing
    // run.json here (an agent restarted in-process, or tests) raced that supervisor's load, which
    // then found no run and started the process again instead of reporting its exit.
    if (this.#closed) return;
    if (m.pollTimer) clearInterval(m.pollTimer);
    m.pollTimer = null;
    this.#stopHealth(m);
    const unhealthy = m.unhealthyStop;
    m.unhealthyStop = false;
    const name = m.spec.name;
    const ranMs = m.run ? Date.now() - m.run.startedAt : 0;
    m.run = null;
    m.adopted = false;
    this.#closeStdin(m);
    this.#clearRun(name);
    this.#cpu.delete(name);
    this.#opts.tailer.tick(true);
    m.exitCode = code;
    m.exitSignal = signal;
    // Stopped because it turned unhealthy: an exit (a failed run), not a stop someone asked for.
    const wasStopping = m.state === 'stopping' && !unhealthy;
    m.state = wasStopping ? 'stopped' : 'exited';
    const endRun = m.endRun;
    m.endRun = null;
    endRun?.();
    this.#opts.log.info({ process: name, exitCode: code, signal, error }, 'process exited');
    this.#emit(wasStopping ? 'process.stopped' : 'process.exited', {
      process: name,
      exitCode: code,
      signal,
      ...(error ? { error: error.slice(0, 300) } : {}),
      ...(unhealthy ? { reason: 'unhealthy' } : {}),
      ...(m.limits?.cgroup ? { oomKills: oomKills(m.limits.cgroup) } : {}),
    });
    if (wasStopping || m.desired !== 'running') return;
    const failed = unhealthy || code !== 0 || signal !== null;
    const policy = m.spec.restart.policy;
    if (policy === 'never' || (policy === 'on-failure' && !failed)) return;
    // A run that lasted longer than the crash-loop window was healthy: back off from the start.
    if (ranMs > m.spec.restart.windowSeconds * 1000) m.failures = 0;
    this.#scheduleRestart(m, failed);
  }

  /**
   * Watches the current run's health: probes every `intervalMs` (TCP/HTTP) or waits for the line
   * (output). The run is `starting` until the first pass (then `running`, event process.healthy);
   * a start that takes longer than `startTimeoutSeconds`, or `failures` failed probes in a row once
   * running, make it unhealthy: it is stopped and its exit counts as a failure.
   */
  #startHealth(m: Managed, check: ProcessHealthCheck, healthyAt: number | null): void {
    const run = m.run;
    if (!run) return;
    m.health = { status: healthyAt ? 'healthy' : 'starting', failures: 0, lastError: null, healthyAt };
    m.state = healthyAt ? 'running' : 'starting';
    if (!healthyAt) {
      m.startDeadline = setTimeout(() => {
        m.startDeadline = null;
        if (m.run !== run || m.health?.status !== 'starting') return;
        const last = m.health.lastError ? `${m.health.lastError}; ` : '';
        this.#unhealthy(m, `${last}not healthy within ${check.startTimeoutSeconds} s`);
      }, check.startTimeoutSeconds * 1000);
      m.startDeadline.unref();
    }
    if (check.type === 'output') {
      if (!healthyAt) m.outputMatch = outputMatcher(check);
      return;
    }
    const loop = () => {
      m.probeTimer = setTimeout(() => {
        m.probeTimer = null;
        void probe(check).then((error) => {
          if (this.#closed || m.run !== run || m.state === 'stopping') return;
          this.#healthResult(m, error);
          if (m.run === run && m.health?.status !== 'unhealthy') loop();
        });
      }, check.intervalMs);
      m.probeTimer.unref();
    };
    loop();
  }

  #stopHealth(m: Managed): void {
    if (m.probeTimer) clearTimeout(m.probeTimer);
    if (m.startDeadline) clearTimeout(m.startDeadline);
    m.probeTimer = null;
    m.startDeadline = null;
    m.outputMatch = null;
  }

  /** One probe's outcome (null: passed). */
  #healthResult(m: Managed, error: string | null): void {
    const h = m.health;
    const run = m.run;
    if (!h || !run) return;
    if (error === null) {
      h.failures = 0;
      if (h.status !== 'healthy') {
        h.status = 'healthy';
        h.lastError = null;
        h.healthyAt = Date.now();
        m.state = 'running';
        m.outputMatch = null;
        if (m.startDeadline) clearTimeout(m.startDeadline);
        m.startDeadline = null;
        run.healthyAt = h.healthyAt;
        writeJson(this.#path(m.spec.name, 'run.json'), run);
        this.#opts.log.info({ process: m.spec.name, pid: run.pid }, 'process healthy');
        this.#emit('process.healthy', {
          process: m.spec.name,
          pid: run.pid,
          afterMs: h.healthyAt - run.startedAt,
        });
      }
      return;
    }
    h.lastError = error.slice(0, 500);
    // While starting, failures are expected: only the start deadline ends the wait.
    if (h.status === 'starting') return;
    h.failures++;
    const check = m.spec.health;
    if (check && check.type !== 'output' && h.failures >= check.failures) {
      this.#unhealthy(m, `${h.failures} failed checks in a row: ${h.lastError}`);
    }
  }

  /** The run turned unhealthy: stop it; its exit then counts as a failed run (restart policy). */
  #unhealthy(m: Managed, reason: string): void {
    const run = m.run;
    if (!run || !m.health || m.state === 'stopping') return;
    m.health.status = 'unhealthy';
    m.health.lastError = reason.slice(0, 500);
    this.#stopHealth(m);
    m.unhealthyStop = true;
    this.#opts.log.warn({ process: m.spec.name, pid: run.pid, reason }, 'process unhealthy');
    this.#emit('process.unhealthy', { process: m.spec.name, pid: run.pid, reason: m.health.lastError });
    this.#stopRun(m).catch((err: unknown) =>
      this.#opts.log.error({ err, process: m.spec.name }, 'stopping an unhealthy process failed'),
    );
  }

  /** Output lines, for output health checks waiting for their line. */
  #onOutputLine(name: string, stream: 'stdout' | 'stderr', line: Buffer): void {
    const m = this.#procs.get(name);
    if (!m?.outputMatch || !m.run || m.health?.status !== 'starting') return;
    if (m.outputMatch(stream, line.toString('utf8'))) this.#healthResult(m, null);
  }

  #scheduleRestart(m: Managed, failed: boolean): void {
    const now = Date.now();
    const r = m.spec.restart;
    m.restartTimes = m.restartTimes.filter((t) => now - t < r.windowSeconds * 1000);
    if (m.restartTimes.length >= r.maxRestarts) {
      m.state = 'crash-loop';
      m.nextRestartAt = null;
      this.#opts.log.warn({ process: m.spec.name, restarts: m.restartTimes.length }, 'process in crash loop');
      this.#emit('process.crash-loop', { process: m.spec.name, restarts: m.restartTimes.length });
      return;
    }
    if (failed) m.failures++;
    const delay = Math.min(r.backoffMs * 2 ** Math.max(0, m.failures - 1), r.maxBackoffMs);
    m.nextRestartAt = now + delay;
    m.restartTimer = setTimeout(() => {
      m.restartTimer = null;
      if (this.#closed || m.desired !== 'running') return;
      m.restartTimes.push(Date.now());
      m.restarts++;
      this.#emit('process.restarting', { process: m.spec.name, restarts: m.restarts });
      this.#spawn(m).catch((err: unknown) => {
        this.#opts.log.error({ err, process: m.spec.name }, 'restart failed');
        m.state = 'exited';
      });
    }, delay);
  }

  #cancelRestart(m: Managed): void {
    if (m.restartTimer) clearTimeout(m.restartTimer);
    m.restartTimer = null;
    m.nextRestartAt = null;
  }

  async #stopRun(m: Managed, how: ProcessSpec['stop'] = m.spec.stop): Promise<void> {
    const run = m.run;
    if (!run) return;
    const pgid = run.pid;
    m.state = 'stopping';
    const { signal, stdinLine, graceMs } = how;
    const deadline = Date.now() + graceMs;
    if (stdinLine !== undefined) {
      try {
        this.#writeStdin(m, `${stdinLine}\n`);
      } catch {
        // not reading input: the signal follows below
      }
      const half = Date.now() + graceMs / 2;
      while (Date.now() < half && groupAlive(pgid) && m.run) await sleep(STOP_POLL_MS);
    }
    if (m.run) killGroup(pgid, signal);
    // The leader may exit at once while children it forked linger: wait for the whole group.
    while (Date.now() < deadline && groupAlive(pgid)) await sleep(STOP_POLL_MS);
    if (groupAlive(pgid)) killGroup(pgid, 'SIGKILL');
    const killDeadline = Date.now() + KILL_WAIT_MS;
    while (groupAlive(pgid) && Date.now() < killDeadline) await sleep(STOP_POLL_MS);
    // Our child's exit event (or the adopted poll) finishes the run; do it now if neither came.
    if (m.run) {
      await Promise.race([m.ended, sleep(1_000)]);
      if (m.run) this.#onExit(m, null, 'SIGKILL');
    }
  }

  /** Stops watching (processes keep running: they outlive the agent). */
  close(): void {
    this.#closed = true;
    for (const m of this.#procs.values()) {
      if (m.restartTimer) clearTimeout(m.restartTimer);
      if (m.pollTimer) clearInterval(m.pollTimer);
      this.#stopHealth(m);
      this.#closeStdin(m);
    }
  }

  /** How many processes it holds (metrics skip the /proc scan of `list()` when none). */
  get size(): number {
    return this.#procs.size;
  }

  /** Names of the processes (for tests and the log channel). */
  has(name: string): boolean {
    return this.#procs.has(name);
  }

  /** The output file of a process (for the live log channel). */
  outputFile(name: string, stream: 'stdout' | 'stderr'): string {
    this.#get(name);
    return this.#path(name, `${stream}.log`);
  }
}
