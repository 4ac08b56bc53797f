// Shared by the install tests (test/install*.test.ts): their fixture (a work dir, the agent bundle
// built once per change of its sources, a controller serving it; `useInstallFleet`), the stand-in
// systemctl, a shell runner, and agent bundles of other versions made from a built one (a good
// upgrade, or a broken one).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import {
  removeDir,
  repoRoot,
  startControllerProcess,
  tempDir,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';
import { copyRelease } from './helpers/release-cache.ts';

/** A stand-in for systemctl (systemd is not PID 1 here), named as such in its header. */
export const standInSystemctl = join(repoRoot, 'test/install-stand-in-systemctl.sh');

/** Runs argv (cwd: the repository); resolves with its exit code and output. */
export function run(
  argv: string[],
  env: Record<string, string>,
  timeoutMs = 150_000,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/**
 * Writes keel-agent-<version>.tar.gz (+ .sha256) into `bundles`, made from this tree's bundle there
 * with its version changed, and with `main` as its program when given (a broken bundle).
 */
export function repackAgentBundle(bundles: string, work: string, version: string, main?: string): void {
  const unpacked = join(work, `repack-${version}`);
  const top = join(unpacked, `keel-agent-${version}`);
  mkdirSync(unpacked);
  spawnSync('tar', ['-xzf', join(bundles, `keel-agent-${agentVersion}.tar.gz`), '-C', unpacked]);
  renameSync(join(unpacked, `keel-agent-${agentVersion}`), top);
  const pkg = JSON.parse(readFileSync(join(top, 'package.json'), 'utf8')) as { version: string };
  writeFileSync(join(top, 'package.json'), JSON.stringify({ ...pkg, version }));
  if (main) writeFileSync(join(top, 'dist/keel-agent.mjs'), main);
  const file = join(bundles, `keel-agent-${version}.tar.gz`);
  const r = spawnSync('tar', ['-czf', file, '-C', unpacked, `keel-agent-${version}`]);
  assert.equal(r.status, 0, String(r.stderr));
  const sum = createHash('sha256').update(readFileSync(file)).digest('hex');
  writeFileSync(`${file}.sha256`, `${sum}  keel-agent-${version}.tar.gz\n`);
}

const versionOf = (workspace: string) =>
  (JSON.parse(readFileSync(join(repoRoot, workspace, 'package.json'), 'utf8')) as { version: string })
    .version;
/** This tree's agent version (the bundle `npm run build` makes): tests derive from it, never hard-code. */
export const agentVersion = versionOf('agent');
/** This tree's controller version. */
export const controllerVersion = versionOf('controller');
/** `v` with its patch number raised by `n` (a newer release made from this one): 0.2.0, 1 -> 0.2.1. */
export const bumpVersion = (v: string, n: number): string => v.replace(/\d+$/, (p) => String(Number(p) + n));
/** A version as RegExp source (its dots escaped). */
export const versionRe = (v: string): string => v.replace(/\./g, '\\.');

/** True when `program` is on the PATH. */
export const has = (program: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;

/** A test's `skip`: CI installs the tools (.ci/run); elsewhere a missing one skips rather than fails. */
export const need = (program: string): string | false =>
  has(program) || process.env.CI ? false : `${program} is not installed`;

/** Runs a shell command line with extra environment; resolves with its exit code and output. */
export function sh(
  line: string,
  env: Record<string, string>,
  timeoutMs = 90_000,
): Promise<{ code: number | null; out: string }> {
  return run(['sh', '-c', line], env, timeoutMs);
}

/** changed=N of each host in an ansible-playbook PLAY RECAP (hosts that did not fail). */
export function recap(out: string): Record<string, number> {
  const hosts: Record<string, number> = {};
  for (const m of out.matchAll(/^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0/gm)) {
    hosts[m[1]!] = Number(m[2]);
  }
  return hosts;
}

/**
 * Puts the agent bundle (exactly as `npm run build` makes it) into `<work>/bundles` and returns
 * that dir. Built once per change of its sources (several install test files need it), then copied.
 */
export function buildAgentBundle(work: string): string {
  const bundles = join(work, 'bundles');
  copyRelease('agent', bundles);
  return bundles;
}

/** An install test file's fixture; the fields are set once its `before` hook has run. */
export interface InstallFleet {
  /** The work dir: hosts' install roots, inventories, repacked bundles. */
  work: string;
  /** The bundles the controller serves (KEEL_AGENT_BUNDLE_DIR): add versions with repackAgentBundle. */
  bundles: string;
  controller: ControllerProcess;
  procs: Proc[];
}

/**
 * Call inside a `describe`: before its tests, a work dir, the agent bundle and a controller process
 * serving it; after them, the stand-in services stopped, the processes killed, the dirs removed.
 *
 * @example describe('install.sh', () => { const fleet = useInstallFleet('keel-install-'); ... });
 */
export function useInstallFleet(prefix: string): InstallFleet {
  const dirs: string[] = [];
  const fleet = { procs: [] as Proc[] } as InstallFleet;
  // The bundle is cached and copied, the controller starts from the database template: seconds,
  // more on a busy machine.
  before(
    async () => {
      fleet.work = tempDir(prefix);
      dirs.push(fleet.work);
      fleet.bundles = buildAgentBundle(fleet.work);
      fleet.controller = await startControllerProcess(fleet.procs, {
        env: { KEEL_AGENT_BUNDLE_DIR: fleet.bundles },
      });
      dirs.push(fleet.controller.dataDir);
    },
    { timeout: 180_000 },
  );
  after(async () => {
    // Any agent a failed test left running under the stand-in.
    if (fleet.work) stopStandInServices(fleet.work);
    for (const p of fleet.procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(fleet.procs.map((p) => p.exited));
    for (const d of dirs) removeDir(d);
  });
  return fleet;
}

/** Kills what the stand-in systemctl started under `<work>/root*`. */
export function stopStandInServices(work: string): void {
  spawnSync('sh', [
    '-c',
    `for f in ${work}/root*/run/stand-in/*.pid; do [ -f "$f" ] && kill "$(cat "$f")"; done; true`,
  ]);
}

/**
 * An inventory of two local test hosts (connection local, one install prefix each, the stand-in
 * systemctl) for ansible/site.yml against `controllerUrl`, and what to run it with. The join token
 * goes in a 0600 extra-vars file, as a vault would hand it over: not on argv.
 */
export async function ansibleFleet(work: string, controllerUrl: string, joinToken: string) {
  const pin = /^KEEL_SERVED_PIN='([^']+)'$/m.exec(
    await (await fetch(`${controllerUrl}/install.sh`)).text(),
  )![1]!;
  const hostVars = (name: string) =>
    `      ${name}:\n        keel_root: ${join(work, `root-${name}`)}\n` +
    `        keel_systemctl: ${standInSystemctl}\n`;
  const inventory = join(work, 'inventory.yml');
  writeFileSync(
    inventory,
    `keel_agents:\n  hosts:\n${hostVars('host-a')}${hostVars('host-b')}  vars:\n` +
      `    ansible_connection: local\n    ansible_python_interpreter: /usr/bin/python3\n` +
      `    keel_controller_url: ${controllerUrl}\n    keel_controller_pin: "${pin}"\n` +
      `    keel_wait_seconds: 30\n`,
  );
  const secrets = join(work, 'secrets.yml');
  writeFileSync(secrets, `keel_join_token: ${joinToken}\n`, { mode: 0o600 });
  // While a task runs (install.sh waits for the agent to come online, an upgrade for its trial)
  // ansible-playbook polls its workers every internal_poll_interval, 1 ms by default: ~0.3 CPU-s
  // per 5 s of waiting. Settable in a config file only. Only the YAML inventory plugin is tried.
  const config = join(work, 'ansible.cfg');
  writeFileSync(config, '[defaults]\ninternal_poll_interval = 0.05\n[inventory]\nenable_plugins = yaml\n');
  const env = {
    ANSIBLE_CONFIG: config,
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_REMOTE_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    ANSIBLE_GATHERING: 'explicit',
  };
  const playbook = ['ansible-playbook', '-i', inventory, 'ansible/site.yml', '-e', `@${secrets}`];
  return { playbook, env, play: (...extra: string[]) => run([...playbook, ...extra], env) };
}
