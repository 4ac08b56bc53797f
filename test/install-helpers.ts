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
