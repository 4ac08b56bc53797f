#!/usr/bin/env node
// The console build for a test run (scripts/test.mjs): builds web/build unless it was already built
// from the same sources, which it knows by a stamp kept in node_modules/.cache/keel-test: a SHA-256
// of every input (web/ but its outputs, shared/src, which the console imports, package-lock.json)
// and the modification time of the index.html that build wrote (a build made since by hand, from
// other sources perhaps, has another).
//
// The runner calls it under `flock` on one lock file, so runs on one machine build one at a time:
// two builds at once write the same .svelte-kit/ and web/build/ and broke each other (30 Nov), and
// a run that starts beside another whose console is current finds the stamp and leaves the build
// that the other run's controllers are serving alone. A clean clone has no stamp and builds.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outputs = new Set(['node_modules', 'build', '.svelte-kit']);

/** Every file under `dir` but the build outputs, sorted (so the hash does not depend on order). */
function files(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    if (outputs.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else out.push(p);
  }
  return out;
}

/** The inputs' hash: each file's path and contents. */
export function consoleSourceHash() {
  const hash = createHash('sha256');
  for (const f of [
    ...files(join(root, 'web')),
    ...files(join(root, 'shared/src')),
    join(root, 'package-lock.json'),
  ]) {
    hash.update(`${relative(root, f)}\0`);
    hash.update(readFileSync(f));
    hash.update('\0');
  }
  return hash.digest('hex');
}

const stamp = join(root, 'node_modules/.cache/keel-test/web-build-stamp');
const index = join(root, 'web/build/index.html');
/** What the stamp says of the build there now: its sources' hash and its index.html's time. */
const current = (hash) => `${hash} ${existsSync(index) ? statSync(index).mtimeMs : 'none'}\n`;
const hash = consoleSourceHash();
if (existsSync(index) && existsSync(stamp) && readFileSync(stamp, 'utf8') === current(hash)) {
  console.log('note: the console build is current (built from these sources); not rebuilt');
} else {
  const built = spawnSync('npm', ['run', 'build', '-w', 'web'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
  mkdirSync(dirname(stamp), { recursive: true });
  writeFileSync(stamp, current(hash));
}
