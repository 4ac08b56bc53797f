// The console build (web/build) made once per set of inputs: `npm test` (scripts/test-web.mjs) and
// `npm start` (scripts/start.mjs) build it through here. A stamp in
// node_modules/.cache/keel-test/web-build-stamp holds a SHA-256 of every input (web/ but its
// outputs, shared/src, which the console imports, package-lock.json, the root and shared
// package.json and tsconfig files, and the Node version the build ran on) and the modification
// time of the index.html that build wrote (a build made since by hand, from other sources
// perhaps, has another). The build is current only when both match,
// so a changed input always rebuilds (test/console-build.test.ts); a clean clone has no stamp and
// builds.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const outputs = new Set(['node_modules', 'build', '.svelte-kit']);

/** Every file under `dir` but the build outputs, sorted (so the hash does not depend on order). */
function files(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    if (outputs.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else out.push(p);
  }
  return out;
}

/**
 * Inputs outside web/ and shared/src: the dependencies' versions, the workspaces and shared's
 * exports, and the compiler options shared's sources are built with.
 */
const singleInputs = [
  'package-lock.json',
  'package.json',
  'shared/package.json',
  'shared/tsconfig.json',
  'tsconfig.base.json',
];

/** The inputs' hash: each file's path and contents, and the Node version. */
export function consoleSourceHash(root, nodeVersion = process.version) {
  const hash = createHash('sha256');
  hash.update(`node ${nodeVersion}\0`);
  const single = singleInputs.map((f) => join(root, f)).filter((f) => existsSync(f));
  for (const f of [...files(join(root, 'web')), ...files(join(root, 'shared/src')), ...single]) {
    hash.update(`${relative(root, f)}\0`);
    hash.update(readFileSync(f));
    hash.update('\0');
  }
  return hash.digest('hex');
}

const stampOf = (root) => join(root, 'node_modules/.cache/keel-test/web-build-stamp');
const indexOf = (root) => join(root, 'web/build/index.html');
/** What the stamp says of the build there now: its inputs' hash and its index.html's time. */
const stampText = (root, hash) =>
  `${hash} ${existsSync(indexOf(root)) ? statSync(indexOf(root)).mtimeMs : 'none'}\n`;

/** Builds the console with `npm run build -w web`; returns the exit status. */
function npmBuild(root) {
  return spawnSync('npm', ['run', 'build', '-w', 'web'], { cwd: root, stdio: 'inherit' }).status ?? 1;
}

/**
 * Builds web/build unless the stamp says it was built from these inputs. Returns whether it built
 * and the build's exit status (0 when current). `build` is the build itself (tests give a stand-in).
 */
export function ensureConsoleBuild(root, { build = npmBuild, nodeVersion = process.version } = {}) {
  const hash = consoleSourceHash(root, nodeVersion);
  const stamp = stampOf(root);
  if (
    existsSync(indexOf(root)) &&
    existsSync(stamp) &&
    readFileSync(stamp, 'utf8') === stampText(root, hash)
  ) {
    return { built: false, status: 0 };
  }
  const status = build(root);
  if (status === 0) {
    mkdirSync(dirname(stamp), { recursive: true });
    writeFileSync(stamp, stampText(root, hash));
  }
  return { built: true, status };
}

/** Whether a build of the console is there at all (npm start builds only when there is none). */
export const consoleBuilt = (root) => existsSync(indexOf(root));
