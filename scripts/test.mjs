#!/usr/bin/env node
// `npm test`: the whole suite with node:test — unit tests beside the code in every workspace, then
// the cross-package tests in test/ (multi-process, browser). The storage suite also runs against
// PostgreSQL when KEEL_TEST_DATABASE_URL is set (CI always sets it). Extra args pass to node --test.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = new Set(['node_modules', 'dist', 'build', '.svelte-kit', 'data']);

function find(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.some((a) => !a.startsWith('-'))
  ? []
  : [
      ...['shared', 'agent', 'controller', 'web'].flatMap((w) => find(join(root, w, 'src'))),
      ...find(join(root, 'test')),
    ];

if (!process.env.KEEL_TEST_DATABASE_URL) {
  if (process.env.CI) {
    console.error(
      'CI must run the storage suite against PostgreSQL: set KEEL_TEST_DATABASE_URL (.ci/run does).',
    );
    process.exit(1);
  }
  console.log(
    'note: KEEL_TEST_DATABASE_URL is unset, so the PostgreSQL half of the storage suite is skipped.',
  );
}
if (!existsSync(join(root, 'web/build/index.html')) || process.env.CI) {
  const built = spawnSync('npm', ['run', 'build', '-w', 'web'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...args, ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
