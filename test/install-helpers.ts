// Shared by the install tests (test/install*.test.ts): the stand-in systemctl, a shell runner, and
// agent bundles of other versions made from a built one (a good upgrade, or a broken one).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './helpers/fleet.ts';

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
 * Writes keel-agent-<version>.tar.gz (+ .sha256) into `bundles`, made from the 0.1.0 bundle there
 * with its version changed, and with `main` as its program when given (a broken bundle).
 */
export function repackAgentBundle(bundles: string, work: string, version: string, main?: string): void {
  const unpacked = join(work, `repack-${version}`);
  const top = join(unpacked, `keel-agent-${version}`);
  mkdirSync(unpacked);
  spawnSync('tar', ['-xzf', join(bundles, 'keel-agent-0.1.0.tar.gz'), '-C', unpacked]);
  renameSync(join(unpacked, 'keel-agent-0.1.0'), top);
  const pkg = JSON.parse(readFileSync(join(top, 'package.json'), 'utf8')) as { version: string };
  writeFileSync(join(top, 'package.json'), JSON.stringify({ ...pkg, version }));
  if (main) writeFileSync(join(top, 'dist/keel-agent.mjs'), main);
  const file = join(bundles, `keel-agent-${version}.tar.gz`);
  const r = spawnSync('tar', ['-czf', file, '-C', unpacked, `keel-agent-${version}`]);
  assert.equal(r.status, 0, String(r.stderr));
  const sum = createHash('sha256').update(readFileSync(file)).digest('hex');
  writeFileSync(`${file}.sha256`, `${sum}  keel-agent-${version}.tar.gz\n`);
}

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

/** Builds the agent bundle into `<work>/bundles` (as `npm run build` does) and returns that dir. */
export function buildAgentBundle(work: string): string {
  const bundles = join(work, 'bundles');
  const built = spawnSync(
    process.execPath,
    [join(repoRoot, 'scripts/build-release.mjs'), 'agent', '--out', bundles],
    { encoding: 'utf8' },
  );
  assert.equal(built.status, 0, built.stderr);
  return bundles;
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
  const env = {
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_REMOTE_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    ANSIBLE_GATHERING: 'explicit',
  };
  const playbook = ['ansible-playbook', '-i', inventory, 'ansible/site.yml', '-e', `@${secrets}`];
  return { playbook, env, play: (...extra: string[]) => run([...playbook, ...extra], env) };
}
