// The controller release bundle for the install tests (test/install-controller.test.ts), exactly as
// `scripts/build-release.mjs controller` makes it, built once per change of what goes into it and
// kept in KEEL_TEST_CACHE_DIR (`npm test` sets it: /dev/shm/keel-test-cache) or the temp dir. A
// build is ~5 CPU-s (esbuild of the controller, then gzip of the console, PGlite and the agent
// bundle it carries), which the file paid in every run. The newest two are kept.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './fleet.ts';

/** What the controller bundle is made from (its agent bundle's sources too): a change to any makes a new one. */
const controllerSources = [
  'controller/src',
  'controller/bin',
  'controller/drizzle',
  'controller/package.json',
  'web/build',
  'install.sh',
  'systemd',
  'agent/src',
  'agent/bin',
  'agent/package.json',
  'shared/src',
  'shared/package.json',
  'scripts/build-release.mjs',
  'scripts/agent-bundle.mjs',
  'package-lock.json',
];

const prefix = 'keel-test-controller-release-';

/** The SHA-256 of the sources' paths and contents, in a fixed order. */
function sourcesHash(): string {
  const hash = createHash('sha256');
  const add = (rel: string) => {
    const abs = join(repoRoot, rel);
    if (!existsSync(abs)) return;
    if (!statSync(abs).isDirectory()) {
      hash.update(rel).update(readFileSync(abs));
      return;
    }
    for (const name of readdirSync(abs).sort()) add(join(rel, name));
  };
  for (const rel of controllerSources) add(rel);
  return hash.digest('hex').slice(0, 16);
}

/** Removes all but the `keep` newest finished releases of this kind from `cache`. */
function prune(cache: string, keep: number): void {
  const made = readdirSync(cache)
    .filter((n) => n.startsWith(prefix) && !n.startsWith(`${prefix}make-`))
    .map((name) => ({ name, at: statSync(join(cache, name)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  for (const e of made.slice(keep)) rmSync(join(cache, e.name), { recursive: true, force: true });
}

/**
 * Copies the controller release for the current sources (keel-controller-<version>-linux-<arch>.tar.gz,
 * the agent bundle, SHA256SUMS: build-release.mjs's output) into `out`, building it on first use.
 * The console must be built (web/build), as for `npm run build`.
 */
export function controllerRelease(out: string): void {
  const cache = process.env.KEEL_TEST_CACHE_DIR ?? tmpdir();
  mkdirSync(cache, { recursive: true });
  const dir = join(cache, `${prefix}${sourcesHash()}`);
  if (!existsSync(join(dir, 'done'))) {
    const work = mkdtempSync(join(cache, `${prefix}make-`));
    try {
      const built = spawnSync(
        process.execPath,
        [join(repoRoot, 'scripts/build-release.mjs'), 'controller', '--out', join(work, 'release')],
        { encoding: 'utf8' },
      );
      assert.equal(built.status, 0, built.stderr);
      writeFileSync(join(work, 'release/done'), '');
      try {
        renameSync(join(work, 'release'), dir);
      } catch (err) {
        // Another run made it at the same moment.
        if (!existsSync(join(dir, 'done'))) throw err;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    prune(cache, 2);
  }
  cpSync(dir, out, { recursive: true, filter: (src) => !src.endsWith('/done') });
}
