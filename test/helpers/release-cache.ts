// Release builds for the install tests, exactly as `scripts/build-release.mjs <kind>` makes them,
// built once per change of what goes into them and kept in KEEL_TEST_CACHE_DIR (`npm test` sets
// it: /dev/shm/keel-test-cache) or the temp dir; the newest two of each kind are kept. The agent
// bundle (test/install-helpers.ts: several install files serve it) and the controller release
// (test/install-controller.test.ts: ~5 CPU-s, esbuild of the controller, then gzip of the console,
// PGlite and the agent bundle it carries) were each paid in every run before.
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
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './fleet.ts';

/** What each release is made from: a change to any of these makes a new one. */
const releaseSources = {
  agent: [
    'agent/src',
    'agent/bin',
    'agent/package.json',
    'shared/src',
    'shared/package.json',
    'systemd',
    'scripts/build-release.mjs',
    'scripts/agent-bundle.mjs',
    'package-lock.json',
  ],
  // The controller's carries the agent bundle, so the agent's sources count too.
  controller: [
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
  ],
} as const;

export type ReleaseKind = keyof typeof releaseSources;

/**
 * The SHA-256 of the sources' paths and contents, in a fixed order. Test files (`*.test.ts`) are
 * left out: no release carries them, and editing one made the install tests build again (~5 CPU-s).
 */
function sourcesHash(kind: ReleaseKind): string {
  const hash = createHash('sha256');
  const add = (rel: string) => {
    const abs = join(repoRoot, rel);
    if (rel.endsWith('.test.ts') || !existsSync(abs)) return;
    if (!statSync(abs).isDirectory()) {
      hash.update(rel).update(readFileSync(abs));
      return;
    }
    for (const name of readdirSync(abs).sort()) add(join(rel, name));
  };
  for (const rel of releaseSources[kind]) add(rel);
  return hash.digest('hex').slice(0, 16);
}

/** Removes all but the `keep` newest finished releases named `prefix…` from `cache`. */
function prune(cache: string, prefix: string, keep: number): void {
  const made = readdirSync(cache)
    .filter((n) => n.startsWith(prefix) && !n.startsWith(`${prefix}make-`))
    .map((name) => ({ name, at: statSync(join(cache, name)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  // Not one used within the hour: a run beside this one, on other sources (another checkout, or a
  // commit made meanwhile), may be copying it right now.
  for (const e of made.slice(keep))
    if (Date.now() - e.at > 60 * 60_000) rmSync(join(cache, e.name), { recursive: true, force: true });
}

/**
 * The dir holding the `kind` release for the current sources (build-release.mjs's output and a
 * `done` marker), built on first use; several runs or files making it at once are safe.
 * `agentVersion`: the agent built from the same sources under another version (build-release.mjs
 * `--agent-version`; test/upgrades.test.ts's newer release), kept under a name of its own.
 */
export function cachedRelease(kind: ReleaseKind, opts: { agentVersion?: string } = {}): string {
  const prefix = `keel-test-${kind}-${opts.agentVersion ? `${opts.agentVersion}-` : ''}release-`;
  const cache = process.env.KEEL_TEST_CACHE_DIR ?? tmpdir();
  mkdirSync(cache, { recursive: true });
  const dir = join(cache, `${prefix}${sourcesHash(kind)}`);
  if (existsSync(join(dir, 'done'))) {
    // Touched on use: prune() leaves releases used within the hour to the runs copying them.
    utimesSync(dir, new Date(), new Date());
    return dir;
  }
  const work = mkdtempSync(join(cache, `${prefix}make-`));
  try {
    const built = spawnSync(
      process.execPath,
      [
        join(repoRoot, 'scripts/build-release.mjs'),
        kind,
        '--out',
        join(work, 'release'),
        ...(opts.agentVersion ? ['--agent-version', opts.agentVersion] : []),
      ],
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
  prune(cache, prefix, 2);
  return dir;
}

/** Copies the `kind` release for the current sources into `out` (without the marker). */
export function copyRelease(kind: ReleaseKind, out: string): void {
  cpSync(cachedRelease(kind), out, { recursive: true, filter: (src) => !src.endsWith('/done') });
}

/**
 * Copies the controller release for the current sources (keel-controller-<version>-linux-<arch>.tar.gz,
 * the agent bundle, SHA256SUMS) into `out`, building it on first use. The console must be built
 * (web/build), as for `npm run build`.
 */
export function controllerRelease(out: string): void {
  copyRelease('controller', out);
}
