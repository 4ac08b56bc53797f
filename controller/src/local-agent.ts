// The local agent that `keel-controller serve --local-agent` (and so `npm start`) runs for this
// host: enrolled once with a single-use token the controller makes for itself, then kept running
// as a child process and restarted if it dies, until the controller stops.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Services } from './services/index.ts';

/** The keel-agent launcher in this checkout (source or bundled layout). */
export function agentLauncher(): string {
  return fileURLToPath(new URL('../../agent/bin/keel-agent.mjs', import.meta.url));
}

/**
 * The glibc malloc variables (`MALLOC_*`) that the agent's systemd unit sets for its process
 * (systemd/keel-agent.service; docs/metrics.md, "The agent's own memory"), so that the local
 * agent's memory is what a host's agent uses. glibc reads them only at start, so they go into the
 * agent's environment. Kept here rather than read from the unit at run time (a release bundle has
 * the unit elsewhere, the tests' build not at all); local-agent.test holds the two equal.
 */
export const AGENT_MALLOC_ENV: Readonly<Record<string, string>> = Object.freeze({
  MALLOC_ARENA_MAX: '2',
  MALLOC_TRIM_THRESHOLD_: '131072',
  MALLOC_TOP_PAD_: '65536',
  MALLOC_MMAP_THRESHOLD_: '32768',
});

/**
 * Starts `keel-agent <args> --state-dir <stateDir>`; `stdin`, when given, is written to the agent's
 * standard input (how the join token travels: never on a command line, where every local user
 * could read it in /proc/<pid>/cmdline, nor in the environment).
 */
function runAgent(
  launcher: string,
  args: string[],
  stateDir: string,
  log: Logger,
  stdin?: string,
): ChildProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...AGENT_MALLOC_ENV,
    KEEL_AGENT_LOG_LEVEL: process.env.KEEL_AGENT_LOG_LEVEL ?? 'warn',
    KEEL_JOIN_TOKEN: undefined,
  };
  const child = spawn(process.execPath, [launcher, ...args, '--state-dir', stateDir], {
    // The agent's own banner ("Enrolled as host …") is for people running it by hand.
    stdio: [stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'inherit'],
    env,
  });
  child.on('error', (err) => log.error({ err }, 'local agent failed to start'));
  if (stdin !== undefined) {
    // An agent that exits before reading gives EPIPE here; its exit code tells what happened.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(stdin);
  }
  return child;
}

function exited(child: ChildProcess): Promise<number> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(128);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}

/** Enrolls (first time) and runs the local agent; returns a stop function. */
export async function startLocalAgent(opts: {
  dataDir: string;
  controllerUrl: string;
  /** The controller key fingerprint the agent pins. */
  fingerprint: string;
  services: Services;
  log: Logger;
  /**
   * The keel-agent script to run with this Node (default: this checkout's launcher, agentLauncher).
   * The tests give the run's agent bundle (KEEL_TEST_AGENT_BIN): the launcher in a checkout runs
   * the sources through tsx, ~1.5 CPU-s more for each of the two starts.
   */
  launcher?: string;
}): Promise<() => Promise<void>> {
  const stateDir = join(opts.dataDir, 'agent');
  const launcher = opts.launcher ?? agentLauncher();
  const log = opts.log.child({ component: 'local-agent' });
  if (!existsSync(join(stateDir, 'enrollment.json'))) {
    const { secret } = await opts.services.joinTokens.create(
      { ttlSeconds: 300, uses: 1, note: 'local agent' },
      { id: 'system', ip: null },
    );
    const code = await exited(
      runAgent(
        launcher,
        ['enroll', '--controller', opts.controllerUrl, '--token-file', '-', '--pin', opts.fingerprint],
        stateDir,
        log,
        secret,
      ),
    );
    if (code !== 0) throw new Error(`the local agent could not enroll (exit ${code})`);
  }
  let stopping = false;
  let child: ChildProcess | null = null;
  const loop = (async () => {
    while (!stopping) {
      child = runAgent(launcher, ['run'], stateDir, log);
      const code = await exited(child);
      if (stopping) break;
      if (code === 2) {
        log.error('the controller refused the local agent (revoked?); not restarting it');
        break;
      }
      log.warn({ code }, 'local agent exited; restarting in 2 s');
      await new Promise((r) => setTimeout(r, 2_000));
    }
  })();
  return async () => {
    stopping = true;
    const c = child as ChildProcess | null;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
      await exited(c);
      clearTimeout(timer);
    }
    await loop;
  };
}
