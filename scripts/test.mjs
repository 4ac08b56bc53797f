#!/usr/bin/env node
// `npm test`: the whole suite with node:test — the cross-package tests in test/ (multi-process,
// browser) and the unit tests beside the code in every workspace. The storage suite also runs
// against PostgreSQL when KEEL_TEST_DATABASE_URL is set (CI always sets it). Extra args pass to
// node --test.
//
// Limits are per test: each slow test names its own `timeout`. On Node 20 `--test-timeout` given
// to the runner limits each whole file instead (it cancelled a file whose tests all passed, on a
// loaded machine), so the runner gets only a hang guard far beyond any file's run time.
// Two files run at once (the machines here have 2 cores); the longest files start first, so a
// slow one does not begin last and leave the other core idle.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
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
      ...find(join(root, 'test')),
      ...['controller', 'agent', 'shared', 'web'].flatMap((w) => find(join(root, w, 'src'))),
    ].sort(bySlowness);

/**
 * The files measured slowest here (wall time on a loaded 2-core machine, slowest first) start
 * first; then the other end-to-end files, then the rest in workspace order.
 */
function bySlowness(a, b) {
  const slow = [
    'test/streams.',
    'test/console-pages.',
    'test/channels.',
    'test/fleet-processes.',
    'test/install-ansible.',
    'test/install.',
    'controller/src/main.',
    'test/agent-channel.',
    'test/heartbeats.',
    'test/console.',
    'controller/src/repositories/streams.',
    'controller/src/cli/create-admin.',
  ];
  const rank = (f) => {
    const i = slow.findIndex((s) => f.startsWith(s));
    return i >= 0 ? i : f.startsWith('test/') ? slow.length : slow.length + 1;
  };
  return rank(a) - rank(b);
}

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

/**
 * The end-to-end tests start dozens of agent processes. Through the launcher and tsx one costs
 * ~0.9 s of CPU here, from one bundled file ~0.35 s; so the agent is bundled from src/ for this
 * run (what the tests run is still what is in src/), into node_modules/.cache beside a copy of
 * its package.json (it reads its version from there). test/helpers/fleet.ts uses it through
 * KEEL_TEST_AGENT_BIN; agent/src/cli.test.ts keeps testing the launcher itself.
 */
async function bundleAgent() {
  const top = join(root, 'node_modules/.cache/keel-test/agent');
  const outfile = join(top, 'dist/keel-agent.mjs');
  try {
    const { build } = await import('esbuild');
    const pkg = JSON.parse(readFileSync(join(root, 'agent/package.json'), 'utf8'));
    const external = Object.keys(pkg.dependencies ?? {}).filter((d) => d !== '@keel/shared');
    mkdirSync(join(top, 'dist'), { recursive: true });
    copyFileSync(join(root, 'agent/package.json'), join(top, 'package.json'));
    await build({
      entryPoints: [join(root, 'agent/src/cli.ts')],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      external: [...external, ...external.map((d) => `${d}/*`)],
      banner: {
        js: "import { createRequire as __keelRequire } from 'node:module'; const require = __keelRequire(import.meta.url);",
      },
      logLevel: 'warning',
    });
    return outfile;
  } catch (err) {
    console.log(`note: agent not bundled for the tests (${err.message}); they use agent/bin/keel-agent.mjs`);
    return undefined;
  }
}

const agentBin = process.env.KEEL_TEST_AGENT_BIN ?? (await bundleAgent());
const result = spawnSync(
  process.execPath,
  // The hang guard: 15 minutes for a file that runs 0.5-2 minutes on a busy machine.
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=900000', ...args, ...files],
  {
    cwd: root,
    stdio: 'inherit',
    env: agentBin ? { ...process.env, KEEL_TEST_AGENT_BIN: agentBin } : process.env,
  },
);
process.exit(result.status ?? 1);
