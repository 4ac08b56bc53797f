// The agent as a host runs it, for benchmarks: the dist bundle (`scripts/bundle.mjs agent`) through
// its launcher (bin/keel-agent.mjs), enrolled over the real protocol into a bench controller and
// started with the Node options of its systemd unit. Nothing here is used by the product.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { unitMallocEnv } from '../../scripts/unit-env.mjs';
import { repoRoot } from '../../test/helpers/fleet.ts';
import { createJoinToken, removeDir, tempDir, track, waitFor, type BenchController } from './harness.ts';

let built: string | null = null;

/** Builds the agent bundle once; KEEL_BENCH_AGENT_BUNDLE=file runs that one instead (for A/B runs). */
export function buildAgentBundle(): string {
  if (process.env.KEEL_BENCH_AGENT_BUNDLE) return process.env.KEEL_BENCH_AGENT_BUNDLE;
  if (built) return built;
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/bundle.mjs'), 'agent'], { stdio: 'pipe' });
  if (r.status !== 0) throw new Error(`agent bundle failed: ${r.stderr.toString()}`);
  built = join(repoRoot, 'agent/dist/keel-agent.mjs');
  return built;
}

/**
 * How a host starts the agent: its launcher (`bin/keel-agent.mjs`, which sets the agent's V8 flags
 * before it loads the bundle) beside `dist/keel-agent.mjs`. Made in `dir` from the launcher of the
 * bundle's own tree (`<bundle's dir>/../bin/`, so an A/B run compares the launchers too) with the
 * bundle linked in; the bundle itself when its tree has no launcher.
 */
function launcherFor(bundle: string, dir: string): string {
  const launcher = join(dirname(resolve(bundle)), '../bin/keel-agent.mjs');
  if (!existsSync(launcher)) return bundle;
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'dist'));
  copyFileSync(launcher, join(dir, 'bin/keel-agent.mjs'));
  // Node resolves the link: the bundle finds its lazy file and ../package.json where it is.
  symlinkSync(resolve(bundle), join(dir, 'dist/keel-agent.mjs'));
  return join(dir, 'bin/keel-agent.mjs');
}

/**
 * The agent's Node options: those its systemd unit sets (NODE_OPTIONS in systemd/keel-agent.service);
 * KEEL_BENCH_AGENT_NODE_ARGS replaces them.
 */
export function agentNodeArgs(): string[] {
  const unit =
    /^Environment=NODE_OPTIONS=(.*)$/m.exec(
      readFileSync(join(repoRoot, 'systemd/keel-agent.service'), 'utf8'),
    )?.[1] ?? '';
  return (process.env.KEEL_BENCH_AGENT_NODE_ARGS ?? unit).split(/\s+/).filter(Boolean);
}

/**
 * The environment variables other than NODE_OPTIONS that the agent's systemd unit sets for its
 * process itself (glibc's MALLOC_* tuning), so that the agent is measured as hosts run it.
 * KEEL_BENCH_AGENT_ENV (`K=V K=V`, or empty for none) replaces them.
 */
export function agentUnitEnv(): Record<string, string> {
  return unitMallocEnv('keel-agent.service', process.env.KEEL_BENCH_AGENT_ENV);
}

/**
 * Enrolls a fresh agent into `ctl` and runs it until stop(); resolves once the host is online.
 * `env` is added to its environment; `unitEnv` (default: the unit's, agentUnitEnv()) too.
 */
export async function startBundledAgent(
  ctl: BenchController,
  env: Record<string, string> = {},
  unitEnv: Record<string, string> = agentUnitEnv(),
): Promise<{ pid: number; hostId: string; nodeArgs: string[]; stop(): Promise<void> }> {
  const bundle = buildAgentBundle();
  const stateDir = tempDir('keel-bench-agent-');
  const { token, pin } = await createJoinToken(ctl.api, 1);
  const enroll = track(
    spawn(
      process.execPath,
      [bundle, 'enroll', '--controller', ctl.url, '--pin', pin, '--state-dir', stateDir],
      {
        env: { ...process.env, KEEL_AGENT_LOG_LEVEL: 'warn', KEEL_JOIN_TOKEN: token },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    ),
  );
  let enrollErr = '';
  enroll.stderr!.on('data', (d: Buffer) => (enrollErr += d.toString()));
  const code = await new Promise<number | null>((resolve) => enroll.once('exit', resolve));
  if (code !== 0) throw new Error(`enroll exited ${code}: ${enrollErr}`);
  const nodeArgs = agentNodeArgs();
  const launcherDir = tempDir('keel-bench-agent-launcher-');
  const agent = track(
    spawn(process.execPath, [...nodeArgs, launcherFor(bundle, launcherDir), 'run', '--state-dir', stateDir], {
      env: { ...process.env, KEEL_AGENT_LOG_LEVEL: 'warn', ...unitEnv, ...env },
      stdio: ['ignore', 'ignore', 'ignore'],
    }),
  );
  const hostId = await waitFor(
    async () =>
      (await ctl.api.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts.find(
        (h) => h.online,
      )?.id,
    30_000,
    'agent online',
  );
  return {
    pid: agent.pid!,
    hostId,
    nodeArgs,
    async stop() {
      if (agent.exitCode === null) {
        const exited = new Promise((r) => agent.once('exit', r));
        agent.kill('SIGTERM');
        await exited;
      }
      removeDir(stateDir);
      removeDir(launcherDir);
    },
  };
}
