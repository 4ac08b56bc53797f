#!/usr/bin/env node
// `npm test`: the whole suite with node:test — the cross-package tests in test/ (multi-process,
// browser) and the unit tests beside the code in every workspace. The storage suite also runs
// against PostgreSQL when KEEL_TEST_DATABASE_URL is set (CI always sets it).
// `node scripts/test.mjs [node:test flags] [files]`: named files only, with their full output.
//
// This runner schedules the files itself (node --test sorts them by name, so the slowest
// end-to-end files started last): each job is one node process, heavy files alone, light files
// several to a process; the longest jobs start first, as many at once as their expected CPU loads
// fit the cores (figures from the last runs). It prints each file's wall time and CPU seconds (its
// process and everything it started), the most CPU-hungry files and the totals: on a shared machine
// CPU is what the suite costs. Limits are per test (each slow test names its `timeout`); a process
// gets only a hang guard far beyond any file's time. See docs/testing.md.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { SourceMap } from 'node:module';
import { availableParallelism, homedir, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { machineSlots } from './test-slots.mjs';

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
/** node:test flags (`--test-name-pattern=x`: give values with `=`); the rest are files. */
const flags = args.filter((a) => a.startsWith('-'));
const named = args.filter((a) => !a.startsWith('-'));
const files = named.length
  ? named.map((f) => relative(root, resolve(f)))
  : [
      ...find(join(root, 'test')),
      ...['controller', 'agent', 'shared', 'web'].flatMap((w) => find(join(root, w, 'src'))),
    ];

const cacheDir = join(root, 'node_modules/.cache/keel-test');
const readJson = (file) => {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return {};
  }
};
/**
 * What each file cost the last time: wall ms and CPU seconds (the file's process and every
 * process it started), from the last runs here (node_modules/.cache), else the figures committed
 * in scripts/test-durations.json (a clean clone, CI: `{ file: { ms, cpu } }`), else a guess.
 */
const measured = {};
for (const file of [join(root, 'scripts/test-durations.json'), join(cacheDir, 'durations.json')])
  for (const [f, v] of Object.entries(readJson(file)))
    measured[f] = { ...measured[f], ...(typeof v === 'number' ? { ms: v } : v) };
/** The committed figures, for files whose wall time here was only seen on a saturated machine. */
const committed = readJson(join(root, 'scripts/test-durations.json'));
const estimate = (f) => measured[f]?.ms ?? (f.startsWith('test/') ? 60_000 : 5_000);
/** CPU seconds a file is expected to use; unknown: half a core for its expected time. */
const cpuEstimate = (f) => measured[f]?.cpu ?? estimate(f) / 2000;
/**
 * What a file's expected load is figured from ({ cpu, ms }): its CPU and wall time from its last
 * run here while the machine's cores were not saturated (`quietMs`), else the committed figures
 * (another machine's, but a ratio: CPU per wall second), else its last run's. A file run on a
 * saturated machine waits for the CPU, so its CPU over that wall time understates what it needs:
 * figured from this morning's run at load 17-31, console-pages came out at 0.08 cores (43.8 CPU-s
 * in 574 s), and the next run started six browser files at once.
 */
function loadBasis(f) {
  const m = measured[f];
  if (m?.quietMs && m.cpu !== undefined) return { cpu: m.cpu, ms: m.quietMs };
  const c = committed[f];
  if (c && typeof c === 'object' && c.cpu !== undefined) return { cpu: c.cpu, ms: c.ms };
  return { cpu: cpuEstimate(f), ms: estimate(f) };
}
const cores = availableParallelism();
/** A job's expected load in cores (CPU seconds per wall second), at least 0.05. */
const loadOf = (job) => Math.max(0.05, Math.min(cores, job.basis.cpu / Math.max(1, job.basis.ms / 1000)));

/**
 * A light file shares a node process with other light files: starting node with tsx and the
 * controller's modules costs ~1.5 s of CPU per process, more than many files' tests. A file is light
 * when it used at most LIGHT_CPU seconds of CPU and LIGHT_MS of wall time the last time (without a
 * CPU figure: LIGHT_MS/2 of wall); a batch holds files up to BATCH_CPU seconds and BATCH_MS. Such
 * a file may have root before/after hooks (they run around the whole batch, see docs/testing.md)
 * but not root beforeEach/afterEach (they would run around every file's tests), a top-level await
 * (a later file's hooks would be registered after the first tests started), or assignments to
 * process.env (they would leak into the other files). Nor may it block the event loop for long
 * (spawnSync of a child that runs seconds): the batch's other files hold controllers and agent links
 * in the process, whose heartbeats would go unanswered. `// keel-test: own process` keeps it alone.
 */
const LIGHT_CPU = 4;
const LIGHT_MS = 40_000;
const BATCH_CPU = 10;
const BATCH_MS = 60_000;
function batchable(f) {
  const cpu = measured[f]?.cpu;
  if (cpu === undefined ? estimate(f) > LIGHT_MS / 2 : cpu > LIGHT_CPU || estimate(f) > LIGHT_MS)
    return false;
  const src = readFileSync(join(root, f), 'utf8');
  return (
    !/^(beforeEach|afterEach)\(/m.test(src) &&
    !/^(await |for await|(export )?(const|let|var) [^=\n]+= ?await )/m.test(src) &&
    !/process\.env(\.\w+|\[[^\]]+\])\s*=[^=]|delete process\.env/.test(src) &&
    !src.includes('keel-test: own process')
  );
}

/**
 * `// keel-test: exclusive <name>` in a file: no two files naming the same <name> run at once
 * (the Ansible files: each keeps both cores busy for a minute, side by side they time out).
 */
const exclusive = (f) => /keel-test: exclusive ([\w-]+)/.exec(readFileSync(join(root, f), 'utf8'))?.[1];

/**
 * `// keel-test: idle` in a file: it spends nearly all its time waiting on the clock (metrics: a
 * two-minute controller outage, ~5 CPU seconds in ~130 s), so it runs beside the others without
 * taking one of the KEEL_TEST_CONCURRENCY places (its expected load still counts against the CPU
 * budget). Without this it held one of CI's three places for more than half the run.
 */
const idle = (f) => readFileSync(join(root, f), 'utf8').includes('keel-test: idle');

/** The jobs, each one node process: heavy files alone, light ones packed up to BATCH_CPU/BATCH_MS. */
function plan() {
  const jobs = [];
  const light = [];
  for (const f of files)
    (batchable(f) ? light : jobs).push({
      files: [f],
      ms: estimate(f),
      basis: loadBasis(f),
      cpu: cpuEstimate(f),
      exclusive: exclusive(f),
      idle: idle(f),
    });
  for (const f of light.map((j) => j.files[0]).sort((a, b) => estimate(b) - estimate(a))) {
    const batch = jobs.find(
      (j) => j.batch && j.ms + estimate(f) <= BATCH_MS && j.cpu + cpuEstimate(f) <= BATCH_CPU,
    );
    if (batch) {
      batch.files.push(f);
      batch.ms += estimate(f);
      batch.basis = {
        cpu: batch.basis.cpu + loadBasis(f).cpu,
        ms: batch.basis.ms + loadBasis(f).ms,
      };
      batch.cpu += cpuEstimate(f);
    } else jobs.push({ files: [f], ms: estimate(f), basis: loadBasis(f), cpu: cpuEstimate(f), batch: true });
  }
  // Longest first: a long file that starts last keeps one core busy while the other idles.
  return jobs.sort((a, b) => b.ms - a.ms);
}

if (process.env.KEEL_TEST_DRY_RUN) {
  // The plan only: which files share a process, and each job's expected wall time and CPU.
  for (const job of plan())
    console.log(
      `${(job.ms / 1000).toFixed(0).padStart(4)} s ${job.cpu.toFixed(1).padStart(5)} cpu-s ${loadOf(job).toFixed(2)} cores  ${job.files.join(' + ')}${job.exclusive ? ` (exclusive ${job.exclusive})` : ''}${job.idle ? ' (idle)' : ''}`,
    );
  process.exit(0);
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
/**
 * The terminal tests open login shells of the user running the tests. On a machine whose shell
 * profile runs `pyenv init` (as root's does on our CI machines), a login shell killed during its
 * `pyenv rehash` leaves the rehash lock `~/.pyenv/shims/.pyenv-shim` behind, and every later login
 * shell waits 60 s for it: the terminal tests then time out with no output. A lock older than a
 * minute belongs to no running rehash (one takes well under a second), so it is removed here.
 */
function clearStaleShellLock() {
  const lock = join(homedir(), '.pyenv/shims/.pyenv-shim');
  try {
    if (Date.now() - statSync(lock).mtimeMs > 60_000) {
      rmSync(lock, { force: true });
      console.log(`note: removed a stale pyenv rehash lock (${lock}) that would stall login shells`);
    }
  } catch {
    // No lock: nothing to do.
  }
}
clearStaleShellLock();

/**
 * The terminal tests' shells: a login shell of a dedicated user with the system's skeleton profile
 * (`KEEL_TEST_TERMINAL_USER`, default `keel-test`, created here when the runner is root and it is
 * missing), so they do not depend on the profile of whoever runs the tests. Root's here runs
 * `pyenv init`, which serialises login shells on its rehash lock: 1.3 s for one shell when quiet,
 * 8-17 s for six at load 19 (the skeleton's: 0.05 s). test/helpers/fleet.ts passes it to the agents
 * as KEEL_TERMINAL_USER (the agent opens it with `runuser -l`, as on a host). `root`: root's own.
 */
function terminalUser() {
  const name = process.env.KEEL_TEST_TERMINAL_USER ?? 'keel-test';
  if (process.getuid?.() !== 0 || name === 'root') return undefined;
  const known = () =>
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${name}:`));
  if (known()) return name;
  const made = spawnSync(
    'useradd',
    ['--create-home', '--shell', '/bin/bash', '--comment', 'Keel tests terminal sessions', name],
    { encoding: 'utf8' },
  );
  // A run started beside this one may have made it a moment ago (useradd then fails: it exists).
  if (known()) {
    console.log(
      `note: created the user ${name} for the terminal tests' login shells (KEEL_TEST_TERMINAL_USER)`,
    );
    return name;
  }
  console.log(
    `note: the terminal tests open root's login shells (useradd ${name}: ${made.stderr?.trim() || made.error?.message})`,
  );
  return undefined;
}
const testTerminalUser = terminalUser();

/** The wall time before the first test process (the builds and bundles) is printed from here. */
const preparing = Date.now();
const runDir = mkdtempSync(join(tmpdir(), 'keel-test-run-'));
/** A child's exit: its status (1 when it could not start), `out` its output when collected. */
function runChild(command, argv, options) {
  return new Promise((resolveRun) => {
    const child = spawn(command, argv, { cwd: root, ...options });
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (out += d));
    child.once('error', (err) => resolveRun({ status: 1, out: err.message }));
    child.once('close', (code) => resolveRun({ status: code ?? 1, out }));
  });
}

/**
 * This run's own directory for the agent and controller bundles below (node_modules/.cache/
 * keel-test/runs/<pid>: inside the repository, so that what they leave out resolves from its
 * node_modules; the controller's local agent is found beside it as ../../agent). With one shared
 * path, a run started beside another wrote its bundles over the other's (truncated, then written,
 * then rewritten ASCII-only) and removed and re-made the controller's links while the other's
 * tests were starting agents and controllers from them. Removed when the run exits; those of runs
 * no longer alive, at the next run's start.
 */
const bundlesDir = join(cacheDir, 'runs', String(process.pid));
function pruneDeadRuns() {
  let names = [];
  try {
    names = readdirSync(join(cacheDir, 'runs'));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if (err.code === 'ESRCH') rmSync(join(cacheDir, 'runs', name), { recursive: true, force: true });
    }
  }
}
pruneDeadRuns();
process.on('exit', () => rmSync(bundlesDir, { recursive: true, force: true }));

/**
 * The ports test processes reserved (freePort in test/helpers/ports.ts: a file per port naming its
 * process, removed at that process's exit): those of processes that died without exiting (the hang
 * guard's SIGKILL) are removed here, so their ports are drawn again.
 */
function pruneDeadPortReservations() {
  const dir =
    process.env.KEEL_TEST_PORTS_DIR ??
    (existsSync('/dev/shm') ? '/dev/shm/keel-test-ports' : '/tmp/keel-test-ports');
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const pid = Number(readFileSync(join(dir, name), 'utf8'));
      if (!Number.isInteger(pid) || pid <= 0) continue; // being written
      process.kill(pid, 0);
    } catch (err) {
      if (err.code === 'ESRCH') rmSync(join(dir, name), { force: true });
    }
  }
}
pruneDeadPortReservations();

/**
 * The console build (web/build: the controllers the tests start serve it), started beside the
 * agent, controller and test-file bundles below: none of them reads it (the controller bundle only
 * links to web/build), and the build is mostly one busy thread, so on two cores the bundles run
 * in its shadow (30 Nov: 29 s to the first test when they ran one after another; see
 * docs/testing.md). The test processes start once all of them are done.
 */
const webBuilt = (async () => {
  // scripts/test-web.mjs builds it unless it is current, under a lock shared by every run on this
  // machine (two builds at once broke each other; flock(1) is util-linux's). Without flock: directly.
  const lock = join(root, 'node_modules/.cache/keel-test/web-build.lock');
  mkdirSync(dirname(lock), { recursive: true });
  const script = [process.execPath, join(root, 'scripts/test-web.mjs')];
  const locked = await runChild('flock', [lock, ...script], { stdio: 'inherit' });
  if (locked.status !== 1 || !/ENOENT/.test(locked.out)) return locked;
  return runChild(script[0], script.slice(1), { stdio: 'inherit' });
})();
const testsBundled = bundleTests();

/**
 * The end-to-end tests start ~150 agent processes. Through the launcher and tsx one costs ~0.9 s of
 * CPU here; from one bundled file with its dependencies outside ~0.45 s; bundled as the release
 * bundles it (scripts/agent-bundle.mjs: dependencies inside, execa on first use) ~0.25 s. So the
 * agent is bundled from src/ that way for this run (what the tests run is still what is in src/,
 * and it is what hosts run), into node_modules/.cache beside a copy of its package.json (it reads
 * its version from there; node-pty, left out, resolves from the repository's node_modules).
 * test/helpers/fleet.ts uses it through KEEL_TEST_AGENT_BIN; agent/src/cli.test.ts keeps testing
 * the launcher itself.
 */
async function bundleAgent() {
  const top = join(bundlesDir, 'agent');
  const outfile = join(top, 'dist/keel-agent.mjs');
  try {
    const { build } = await import('esbuild');
    const { agentBundleOptions, asciiOnly } = await import('./agent-bundle.mjs');
    mkdirSync(join(top, 'dist'), { recursive: true });
    copyFileSync(join(root, 'agent/package.json'), join(top, 'package.json'));
    await build(agentBundleOptions(root, { outfile }));
    asciiOnly(outfile);
    return outfile;
  } catch (err) {
    console.log(`note: agent not bundled for the tests (${err.message}); they use agent/bin/keel-agent.mjs`);
    return undefined;
  }
}

/**
 * The end-to-end tests start ~20 controller processes (and restart several). Through the launcher
 * and tsx one start costs ~6.5 s of CPU here, from a bundle ~4 s (the rest is PGlite), so the
 * controller is bundled from src/ for this run as the release build bundles it (PGlite, argon2, lz4 and
 * Swagger UI stay in node_modules), beside links to what the bundled layout finds next to it:
 * migrations, the built console, install.sh, the agent bundles of dist/. test/helpers/fleet.ts
 * uses it through KEEL_TEST_CONTROLLER_BIN; controller/src/main.test.ts tests the launcher itself.
 */
async function bundleController() {
  const top = join(bundlesDir, 'controller');
  const outfile = join(top, 'dist/keel-controller.mjs');
  try {
    const { build } = await import('esbuild');
    mkdirSync(join(top, 'dist'), { recursive: true });
    copyFileSync(join(root, 'controller/package.json'), join(top, 'package.json'));
    const { controllerExternal } = await import('./controller-bundle.mjs');
    const { requireBanner } = await import('./agent-bundle.mjs');
    await build({
      entryPoints: [join(root, 'controller/src/cli.ts')],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      external: controllerExternal,
      banner: requireBanner,
      logLevel: 'warning',
    });
    for (const [name, target] of [
      ['drizzle', 'controller/drizzle'],
      ['web', 'web/build'],
      ['install.sh', 'install.sh'],
      ['agent', 'dist'],
    ]) {
      rmSync(join(top, 'dist', name), { force: true });
      symlinkSync(join(root, target), join(top, 'dist', name));
    }
    return outfile;
  } catch (err) {
    console.log(
      `note: controller not bundled for the tests (${err.message}); they use controller/bin/keel-controller.mjs`,
    );
    return undefined;
  }
}

const [agentBin, controllerBin] = await Promise.all([
  process.env.KEEL_TEST_AGENT_BIN ?? bundleAgent(),
  process.env.KEEL_TEST_CONTROLLER_BIN ?? bundleController(),
]);
const env = { ...process.env };
if (agentBin) {
  env.KEEL_TEST_AGENT_BIN = agentBin;
  // The controller bundle's local agent (serve --local-agent) is the agent bundle, through a copy
  // of the launcher (it runs ../dist/keel-agent.mjs when there is no ../src beside it).
  mkdirSync(join(dirname(dirname(agentBin)), 'bin'), { recursive: true });
  copyFileSync(
    join(root, 'agent/bin/keel-agent.mjs'),
    join(dirname(dirname(agentBin)), 'bin/keel-agent.mjs'),
  );
}
if (controllerBin) env.KEEL_TEST_CONTROLLER_BIN = controllerBin;

/**
 * How many files run at once. Most end-to-end files spend most of their time waiting (timers,
 * sockets, a browser), so a fixed count either leaves cores idle or overloads them. Each job's
 * expected load is its CPU seconds over its wall time from the last runs; a job starts while the
 * running jobs' loads add up to at most `KEEL_TEST_CPU_BUDGET` cores (default: all of them) and
 * fewer than `KEEL_TEST_CONCURRENCY` jobs run (default: 3 per core). One job always runs.
 */
const concurrency = Number(process.env.KEEL_TEST_CONCURRENCY) || cores * 3;
const cpuBudget = Number(process.env.KEEL_TEST_CPU_BUDGET) || cores;
/**
 * Expected loads are a guess from other runs; what the cores do now is measured. While the whole
 * machine's cores were less than `KEEL_TEST_SPARE` busy over the last SPARE_WINDOW_MS (and no job
 * started in that window, so its start is in the figure), the next job may start although the
 * expected loads would then exceed the budget, up to OVERCOMMIT times it. The end of a run is
 * made of browser files (short, ~1.1 cores each alone by their figures, less beside another:
 * they take turns with Chromium): by the budget they ran one at a time with a core a third idle
 * (docs/testing.md, "2–3 Dec: idle cores, the last 10 s"). Other runs' work counts in the
 * measure, so two runs side by side start nothing more than before. `0` turns it off.
 */
const spareBelow = process.env.KEEL_TEST_SPARE === undefined ? 0.8 : Number(process.env.KEEL_TEST_SPARE);
const SPARE_WINDOW_MS = 1000;
const OVERCOMMIT = 1.5;
/**
 * Runs on one machine share its cores: before starting a process a run takes a machine-wide slot
 * (scripts/test-slots.mjs: a file per running process in KEEL_TEST_SLOTS_DIR, default
 * /dev/shm/keel-test-slots) and frees it after, and a process starts only while the loads of every
 * run's processes fit KEEL_TEST_CPU_BUDGET and their count KEEL_TEST_CONCURRENCY. Two runs side by
 * side then take longer together but do not oversubscribe the cores (each one's timing-sensitive
 * tests starved the other's). `KEEL_TEST_SLOTS_DIR=off`: this run ignores the others.
 */
const slotsDir =
  process.env.KEEL_TEST_SLOTS_DIR ??
  (existsSync('/dev/shm') ? '/dev/shm/keel-test-slots' : join(tmpdir(), 'keel-test-slots'));
/** The machine's slots; undefined (with a note) when off or when the directory cannot be used. */
let slots;
if (slotsDir !== 'off') {
  try {
    slots = machineSlots({ dir: slotsDir, budget: cpuBudget, places: concurrency });
    // A first take and free: a directory this user may not write fails here, not mid-run.
    slots.take('probe', 0, { idle: true });
    slots.free('probe');
  } catch (err) {
    console.log(`note: this run ignores other runs on the machine (${slotsDir}: ${err.message})`);
    slots = undefined;
  }
}
/** The machine's busy and total CPU time so far (/proc/stat), to tell whether the cores were saturated. */
function machineCpu() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    // idle and iowait are the 4th and 5th fields.
    return { busy: total - f[3] - (f[4] ?? 0), total };
  } catch {
    return undefined;
  }
}
/** Above this busy share of all cores during a job, its wall time is not used for its load. */
const SATURATED = 0.85;
/** The hang guard per process: far beyond any file's run time on a busy machine. */
const hangMs = Number(process.env.KEEL_TEST_HANG_MS) || 15 * 60_000;
/** Print every file's test-by-test output (default when files are named), else failures only. */
const verbose = process.env.KEEL_TEST_VERBOSE ? process.env.KEEL_TEST_VERBOSE !== '0' : named.length > 0;
const reporter = join(root, 'scripts/test-reporter.mjs');
const leakGuard = join(root, 'scripts/test-leak-guard.mjs');
/**
 * The tests' temporary files go to memory when the machine has a tmpfs at /dev/shm: every
 * end-to-end test copies a PGlite data dir (~2,700 files, 41 MB) and removes it, PGlite fsyncs
 * each commit, Chromium writes a profile — on a disk that is system time and I/O waits, on tmpfs
 * a fraction of it. TMPDIR is one directory per run, removed at its end with whatever a test left
 * behind; what is worth keeping between runs (the migrated database template) goes to
 * KEEL_TEST_CACHE_DIR. `KEEL_TEST_TMPDIR=disk` keeps the system's temp dir.
 */
function memoryTmp() {
  if (process.env.KEEL_TEST_TMPDIR === 'disk') return undefined;
  try {
    if (!statSync('/dev/shm').isDirectory()) return undefined;
    return mkdtempSync('/dev/shm/keel-test-run-');
  } catch {
    return undefined;
  }
}
const testTmp = memoryTmp();
/**
 * The cache keeps the newest few database templates and agent bundles (each a whole data dir or
 * release, ~40 MB in memory): the migrations and agent sources change often during a day's work.
 */
function pruneCache(dir, keep = 4) {
  let entries;
  try {
    entries = readdirSync(dir).map((name) => ({ name, at: statSync(join(dir, name)).mtimeMs }));
  } catch {
    return;
  }
  for (const prefix of ['keel-test-db-', 'keel-test-agent-bundle-']) {
    const made = entries
      .filter((e) => e.name.startsWith(prefix) && !e.name.startsWith(`${prefix}make-`))
      .sort((a, b) => b.at - a.at);
    // Not one used within the hour (each use touches it): a run beside this one, on other sources
    // (another checkout, or a commit made meanwhile), may be copying it right now.
    for (const e of made.slice(keep))
      if (Date.now() - e.at > 60 * 60_000) rmSync(join(dir, e.name), { recursive: true, force: true });
  }
  // TypeScript the test loader compiled (scripts/test-loader-hooks.mjs), a file per source
  // version (~25 KB with its source map): started afresh when old versions have piled up.
  try {
    if (readdirSync(join(dir, 'keel-test-ts')).length > 3_000)
      rmSync(join(dir, 'keel-test-ts'), { recursive: true, force: true });
  } catch {
    // Not made yet.
  }
  // Half-made ones an interrupted run left (a maker renames its work dir within seconds).
  for (const e of entries)
    if (e.name.includes('-make-') && Date.now() - e.at > 30 * 60_000)
      rmSync(join(dir, e.name), { recursive: true, force: true });
}
/**
 * V8 options for the test processes and the controllers and agents they start
 * (KEEL_TEST_NODE_ARGS, which test/helpers/fleet.ts passes on). `--liftoff-only`: PGlite is 8 MB
 * of WebAssembly, and V8 spends ~1.3 s of CPU on background threads optimizing it at every open
 * (a controller process's start: 2.7 s of CPU with it, 1.4 s without); a test opens a database a
 * few times and runs little SQL, so the baseline compiler's code is the cheaper one. Benchmarks
 * and production keep V8's defaults.
 */
const nodeArgs = (process.env.KEEL_TEST_NODE_ARGS ?? '--liftoff-only').split(/\s+/).filter(Boolean);
env.KEEL_TEST_NODE_ARGS = nodeArgs.join(' ');
if (testTerminalUser) env.KEEL_TEST_TERMINAL_USER = testTerminalUser;
if (testTmp) {
  // Others may pass through (not list): a terminal test's shell, as the terminal user, writes to a
  // directory a test made inside.
  chmodSync(testTmp, 0o711);
  env.TMPDIR = testTmp;
  env.KEEL_TEST_CACHE_DIR ??= '/dev/shm/keel-test-cache';
  pruneCache(env.KEEL_TEST_CACHE_DIR);
}
const running = new Set();

const seconds = (ms) => `${(ms / 1000).toFixed(1).padStart(6)} s`;
/** The repository file a test event names (a bundled file's output names its source). */
const toFile = (f) => {
  const path = f.startsWith('file:') ? fileURLToPath(f) : f;
  if (bundleDir && path.startsWith(bundleDir + '/')) return relative(bundleDir, path).replace(/\.js$/, '.ts');
  return relative(root, path);
};

/**
 * CPU time is what the suite's speed is judged by on a shared machine (wall time there depends on
 * everyone else's work): each job runs under GNU time, which reports the user+system seconds of
 * the node process and of every descendant it waited for (agents, controllers, Chromium), and the
 * runner adds up its own children's seconds at the end (the bundles and the console build too).
 * A process a test left orphaned is not counted (nor was it waited for).
 */
const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
function readCpu(file) {
  try {
    const [user, sys] = readFileSync(file, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
    return Number.isFinite(user + sys) ? user + sys : undefined;
  } catch {
    return undefined;
  }
}
/**
 * The shared Chromium's CPU that no process of this run reaps (its zygotes end as orphans of init,
 * with the renderers they reaped): scripts/test-browser.mjs writes it third on its line. Added to
 * this process's own figure for the run's total.
 */
let browserOrphanCpu = 0;
function readOrphanCpu(file) {
  try {
    const n = Number(readFileSync(file, 'utf8').trim().split('\n').at(-1).split(' ')[2]);
    return Number.isFinite(n) ? n : 0;
  } catch {
    return 0;
  }
}
/** User+system seconds of this process and of its children that ended (from /proc/self/stat). */
function ownCpu() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // utime, stime, cutime, cstime are fields 14-17 (1-based); the slice starts at field 3.
    return fields.slice(11, 15).reduce((a, b) => a + b, 0) / 100;
  } catch {
    return undefined;
  }
}
/** The test process's own CPU seconds (without its children), written by scripts/test-cpu.mjs. */
function readSelfCpu(file) {
  try {
    const { userCPUTime, systemCPUTime } = JSON.parse(readFileSync(file, 'utf8'));
    return (userCPUTime + systemCPUTime) / 1e6;
  } catch {
    return undefined;
  }
}
const cpuProbe = pathToFileURL(join(root, 'scripts/test-cpu.mjs')).href;
/**
 * How test processes load TypeScript: scripts/test-loader.mjs (esbuild on Node's own resolution,
 * ~0.35 s of CPU less per process start than tsx), or `KEEL_TEST_LOADER=tsx`.
 */
const tsLoader =
  process.env.KEEL_TEST_LOADER === 'tsx' ? 'tsx' : pathToFileURL(join(root, 'scripts/test-loader.mjs')).href;

/**
 * The migrated empty database the tests copy (test/helpers/database-template.ts), made now, beside
 * the console build, when the cache lacks it (new migrations, a new PGlite, a new machine): else
 * the first test processes each made it at once (~4 s of CPU each; 30 Nov's 18:47 run made it and
 * ran 3 at once). When it is there this costs a node start and a hash of the migrations. Should it
 * fail, the tests make it as before.
 */
const templateMade = runChild(
  process.execPath,
  [
    ...nodeArgs,
    '--import',
    tsLoader,
    '--input-type=module',
    '-e',
    `await (await import(${JSON.stringify(pathToFileURL(join(root, 'test/helpers/database-template.ts')).href)})).databaseTemplate();`,
  ],
  { env, stdio: ['ignore', 'pipe', 'pipe'] },
);

/**
 * The test files bundled for this run (scripts/test-bundle.mjs: packages stay imports, the code the
 * files share goes to common chunks, linked source maps), so that a test process loads plain
 * JavaScript without the TypeScript loader: ~0.7 s of CPU less per process (30 Nov: five files
 * alone, 30.9 -> 27.2 CPU-s, the same tests passing; see docs/testing.md). Returns the bundle's
 * directory, or undefined when off (`KEEL_TEST_BUNDLE=0`, `KEEL_TEST_LOADER=tsx`) or when esbuild
 * fails (then every file goes through the loader, with a note).
 */
function bundleTests() {
  if (process.env.KEEL_TEST_BUNDLE === '0' || process.env.KEEL_TEST_LOADER === 'tsx') return undefined;
  const out = join(runDir, 'bundle');
  return runChild(
    process.execPath,
    ['--experimental-import-meta-resolve', join(root, 'scripts/test-bundle.mjs'), out, ...files],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  ).then((made) => ({ status: made.status, output: made.out, dir: out }));
}
/** A test file's bundled output in `bundleDir` (see scripts/test-bundle.mjs). */
const bundledFile = (f) => join(bundleDir, f.replace(/\.[cm]?ts$/, '.js'));
/** The bundle's source maps, parsed when a printed output first names their file. */
const bundleMaps = new Map();
/**
 * A job's output with the bundle's `file.js:line:column` places (stack traces, node:test's
 * `test at …`) turned into their `.ts` sources' places. The processes run without
 * --enable-source-maps (~0.2 s of CPU a process start, 30 Nov, parsing every chunk's map, and
 * more for every stack a test formats): only what is printed is mapped, here.
 */
function mapToSources(text) {
  if (!bundleDir) return text;
  return text.replace(/(?:file:\/\/)?([^\s():'"]+\.js):(\d+):(\d+)/g, (place, named, line, column) => {
    // node:test names a test's place relative to the working directory (the repository).
    const file = resolve(root, named);
    if (!file.startsWith(`${bundleDir}/`)) return place;
    let map = bundleMaps.get(file);
    if (map === undefined) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')));
      } catch {
        map = null;
      }
      bundleMaps.set(file, map);
    }
    const at = map?.findEntry(Number(line) - 1, Number(column) - 1);
    if (!at?.originalSource) return place;
    const source = relative(root, resolve(dirname(file), at.originalSource));
    return `${source}:${at.originalLine + 1}:${at.originalColumn + 1}`;
  });
}
const cpuText = (s) => (s === undefined ? '      ? cpu-s' : `${s.toFixed(1).padStart(6)} cpu-s`);

/**
 * One Chromium for the run, when a file uses the browser helpers: a launch costs ~1 s of CPU and
 * a context a few milliseconds, so the browser tests connect to this one (KEEL_TEST_BROWSER_WS,
 * launchChromium in test/helpers/browser.ts) and each opens its own contexts. Its CPU is counted
 * in the run's total and printed on its own line at the end. `KEEL_TEST_SHARED_BROWSER=0`: each
 * file launches its own, as outside the runner.
 */
const browserCpuFile = join(tmpdir(), `keel-test-browser-${process.pid}.cpu`);
/** Whether a job's files use the browser helpers (such a job starts once the browser is up). */
const usesBrowser = (job) =>
  job.files.some((f) => readFileSync(join(root, f), 'utf8').includes('helpers/browser.ts'));
/** The shared browser's process group, to end it on SIGINT/SIGTERM. */
let sharedBrowserPid;
async function startSharedBrowser() {
  if (process.env.KEEL_TEST_SHARED_BROWSER === '0' || process.env.KEEL_TEST_BROWSER_WS) return undefined;
  if (!usesBrowser({ files })) return undefined;
  const script = join(root, 'scripts/test-browser.mjs');
  // It counts its own CPU and Chromium's whole process tree (GNU time would miss the renderers:
  // their zygote ends as an orphan of init) and writes the figure to this file when it closes.
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...env, KEEL_TEST_BROWSER_CPU_FILE: browserCpuFile },
    detached: true,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  sharedBrowserPid = child.pid;
  const endpoint = await new Promise((resolveEndpoint) => {
    let out = '';
    const timer = setTimeout(() => resolveEndpoint(undefined), 150_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = /^(ws:\/\/\S+)\n/.exec(out)?.[1];
      if (line) {
        clearTimeout(timer);
        resolveEndpoint(line);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolveEndpoint(undefined);
    });
  });
  if (!endpoint) {
    console.log('note: the shared Chromium did not start; each browser test file launches its own');
    killGroup(child.pid);
    return undefined;
  }
  env.KEEL_TEST_BROWSER_WS = endpoint;
  const exited = new Promise((r) => child.once('exit', r));
  return {
    pid: child.pid,
    /** Closes the browser (its stdin ends), waits for it, and returns its CPU seconds. */
    async stop() {
      child.stdin.end();
      // A bound, not a wait: the timer is cleared (left armed, it kept the run alive 10 s after
      // its summary).
      let bound;
      await Promise.race([exited, new Promise((r) => (bound = setTimeout(r, 10_000)))]);
      clearTimeout(bound);
      killGroup(child.pid);
      const cpu = readCpu(browserCpuFile);
      browserOrphanCpu = readOrphanCpu(browserCpuFile);
      rmSync(browserCpuFile, { force: true });
      return cpu;
    },
  };
}
// Started beside the first jobs: only the browser files wait for it (see runJob).
const sharedBrowser = startSharedBrowser();

/** Ends a job's whole process group: agents or browsers a failed test left behind go with it. */
function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const pid of running) killGroup(pid);
    slots?.freeAll();
    if (sharedBrowserPid) killGroup(sharedBrowserPid);
    if (testTmp) rmSync(testTmp, { recursive: true, force: true });
    process.exit(130);
  });
}

/** Runs one job's files in one node process; resolves with its outcome, counts and timings. */
async function runJob(job, n) {
  if (usesBrowser(job)) await sharedBrowser;
  const events = join(runDir, `job-${n}.jsonl`);
  const source = (f) => (bundleDir ? bundledFile(f) : join(root, f));
  // The files, then the leak guard (its after() hook runs after theirs: see test-leak-guard.mjs).
  const entry = join(runDir, `batch-${n}.mjs`);
  writeFileSync(
    entry,
    [...job.files.map(source), leakGuard]
      .map((f) => `import ${JSON.stringify(pathToFileURL(f).href)};\n`)
      .join(''),
  );
  const started = Date.now();
  const machineAtStart = machineCpu();
  const cpuFile = join(runDir, `job-${n}.cpu`);
  return new Promise((done) => {
    const child = spawn(
      timeBin ?? process.execPath,
      [
        ...(timeBin ? ['-f', '%U %S', '-o', cpuFile, process.execPath] : []),
        ...nodeArgs,
        // Bundled: plain JavaScript (what is printed of it is mapped back to the sources).
        ...(bundleDir ? [] : ['--import', tsLoader]),
        '--import',
        cpuProbe,
        '--test-reporter=spec',
        '--test-reporter-destination=stdout',
        `--test-reporter=${reporter}`,
        `--test-reporter-destination=${events}`,
        ...flags,
        entry,
      ],
      {
        cwd: root,
        env: { ...env, KEEL_TEST_CPU_FILE: `${cpuFile}.self`, KEEL_TEST_EVENTS_FILE: events },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    running.add(child.pid);
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let hung = false;
    const guard = setTimeout(() => {
      hung = true;
      killGroup(child.pid);
    }, hangMs);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      killGroup(child.pid);
      running.delete(child.pid);
      const ms = Date.now() - started;
      const machineAtEnd = machineCpu();
      /** How busy all the machine's cores were while this job ran (0-1). */
      const busy =
        machineAtStart && machineAtEnd && machineAtEnd.total > machineAtStart.total
          ? (machineAtEnd.busy - machineAtStart.busy) / (machineAtEnd.total - machineAtStart.total)
          : undefined;
      const counts = {};
      /** What was still active 30 s after the tests had ended (the leak guard ended the process). */
      let left = [];
      /** Where the callbacks of the timers still pending are defined (scripts/test-leak-guard.mjs). */
      let leftTimers = [];
      /** Each top-level test's outcome. */
      const outcomes = [];
      const perFile = Object.fromEntries(job.files.map((f) => [f, 0]));
      /** Each top-level test's wall time, for the slowest-tests list at the end. */
      const tests = [];
      for (const line of existsSync(events) ? readFileSync(events, 'utf8').split('\n') : []) {
        if (!line) continue;
        const e = JSON.parse(line);
        if (e.kind === 'count') counts[e.name] = (counts[e.name] ?? 0) + e.n;
        else if (e.kind === 'left') [left, leftTimers] = [e.resources, e.timers ?? []];
        else if (e.file && toFile(e.file) in perFile) {
          outcomes.push(e.ok);
          perFile[toFile(e.file)] += e.ms;
          tests.push({ file: toFile(e.file), name: e.name, ms: e.ms });
        }
      }
      if (left.length > 0 && counts.tests === undefined) {
        // Ended by the leak guard before node:test's summary: counted from the tests' own records.
        const failed = outcomes.filter((ok) => !ok).length;
        Object.assign(counts, { tests: outcomes.length, pass: outcomes.length - failed, fail: failed });
      }
      // In a batch a file's time is its tests' time plus its share of the process's start.
      const inTests = Object.values(perFile).reduce((a, b) => a + b, 0);
      const share = Math.max(0, ms - inTests) / job.files.length;
      const durations = Object.fromEntries(
        job.files.map((f) => [f, job.files.length > 1 ? Math.round(perFile[f] + share) : ms]),
      );
      const ok = code === 0 && !hung && !counts.fail && !counts.cancelled && counts.tests !== undefined;
      const cpu = readCpu(cpuFile);
      const self = readSelfCpu(`${cpuFile}.self`);
      // A batch's CPU is shared among its files as their times are.
      const cpus = Object.fromEntries(
        job.files.map((f) => [f, cpu === undefined ? undefined : (cpu * durations[f]) / Math.max(1, ms)]),
      );
      done({
        job,
        ok,
        started,
        ms,
        cpu,
        self,
        cpus,
        counts,
        durations,
        busy,
        tests,
        output,
        left,
        leftTimers,
        why: hung ? `hang guard (${hangMs} ms)` : (signal ?? `exit ${code}`),
      });
    });
  });
}

const [built, testsBundle, template] = await Promise.all([webBuilt, testsBundled, templateMade]);
if (built.status !== 0) {
  if (sharedBrowserPid) killGroup(sharedBrowserPid);
  process.exit(built.status);
}
if (template.status !== 0)
  console.log(
    `note: the database template was not made before the tests (${template.out.trim().split('\n').slice(-2).join(' ')}); they make it`,
  );
if (testsBundle && testsBundle.status !== 0)
  console.log(
    `note: test files not bundled (${testsBundle.output.trim().split('\n').slice(0, 2).join(' ')}); they load through ${tsLoader}`,
  );
const bundleDir = testsBundle?.status === 0 ? testsBundle.dir : undefined;
console.log(
  `ready in ${((Date.now() - preparing) / 1000).toFixed(1)} s (the console build, the agent, controller and test bundles, the database template at once)`,
);
if (process.env.KEEL_TEST_PREPARE_ONLY) {
  // Measuring the builds alone: the time to the first test process, then nothing runs.
  await (await sharedBrowser)?.stop();
  rmSync(runDir, { recursive: true, force: true });
  if (testTmp) rmSync(testTmp, { recursive: true, force: true });
  process.exit(0);
}
const began = Date.now();
/** The machine's CPU at the test phase's start: how busy its cores were is printed at the end. */
const machineAtBegin = machineCpu();
const jobs = plan();
console.log(
  `${files.length} files in ${jobs.length} processes, up to ${concurrency} at once (KEEL_TEST_CONCURRENCY) ` +
    `while their expected loads fit ${cpuBudget} cores (KEEL_TEST_CPU_BUDGET)`,
);
const results = [];
const waiting = jobs.map((job, n) => ({ job, n }));
const held = new Set();
/** Running jobs: their promises and loads. */
const active = new Map();
let load = 0;
/** Running jobs that take a place (all but the idle ones, see `idle`). */
let places = 0;
/** When the last job started, and the machine's CPU samples since ({ at, busy, total }). */
let lastStart = Date.now();
const samples = [];
/** The machine's busy share over the last SPARE_WINDOW_MS, if no job started in it; else undefined. */
function recentBusy() {
  const now = Date.now();
  const cpu = machineCpu();
  if (!cpu) return undefined;
  samples.push({ at: now, ...cpu });
  while (samples.length > 1 && samples[1].at <= now - SPARE_WINDOW_MS) samples.shift();
  const first = samples[0];
  if (now - first.at < SPARE_WINDOW_MS || first.at < lastStart || cpu.total <= first.total) return undefined;
  return (cpu.busy - first.busy) / (cpu.total - first.total);
}
/** Jobs started beyond the budget because the cores were measured idle (printed at the end). */
let spareStarts = 0;
function report(r) {
  results.push(r);
  if (verbose || !r.ok) process.stdout.write(mapToSources(r.output));
  const count = r.counts.tests ?? '?';
  const what = r.job.files.length > 1 ? `${r.job.files.length} files` : r.job.files[0];
  const inProcess =
    r.self === undefined || r.cpu === undefined
      ? ''
      : ` (${Math.min(100, Math.round((100 * r.self) / Math.max(r.cpu, 0.01)))}% in the test process)`;
  console.log(
    `${r.ok ? '✔' : '✖'} ${seconds(r.ms)} ${cpuText(r.cpu)}${inProcess}  ${what} (${count} tests)${r.ok ? '' : ` FAILED: ${r.why}`}`,
  );
  if (r.left.length > 0)
    console.log(`  ⚠ still active when its tests had ended (a leak to fix): ${r.left.join(', ')}`);
  for (const timer of r.leftTimers) console.log(`    a timer's callback at ${mapToSources(timer)}`);
}
/** When the machine's slots held a job back: the first time is said, then it is polled. */
let refusedOnce = false;
while (waiting.length || active.size) {
  // The longest waiting job that fits: its exclusive name free, a place free (an idle job needs
  // none), its load within the budget — this run's, and then the machine's (`slots`: other runs
  // on this machine count too).
  let startedOne = false;
  let refused = false;
  const busyNow = spareBelow > 0 ? recentBusy() : undefined;
  const over = busyNow !== undefined && busyNow < spareBelow ? OVERCOMMIT : 1;
  for (let i = 0; i < waiting.length; i++) {
    const { job, n } = waiting[i];
    const fits =
      (!job.exclusive || !held.has(job.exclusive)) &&
      (active.size === 0 ||
        ((job.idle || places < concurrency) && load + loadOf(job) <= cpuBudget * over + 1e-9));
    if (!fits) continue;
    if (slots && !slots.take(`job-${n}`, loadOf(job), { idle: job.idle, over })) {
      refused = true;
      continue;
    }
    if (active.size > 0 && load + loadOf(job) > cpuBudget + 1e-9) spareStarts++;
    lastStart = Date.now();
    waiting.splice(i, 1);
    if (job.exclusive) held.add(job.exclusive);
    load += loadOf(job);
    if (!job.idle) places++;
    active.set(
      n,
      runJob(job, n).then((r) => {
        slots?.free(`job-${n}`);
        if (job.exclusive) held.delete(job.exclusive);
        load -= loadOf(job);
        if (!job.idle) places--;
        active.delete(n);
        report(r);
      }),
    );
    startedOne = true;
    break;
  }
  if (startedOne) continue;
  if (refused && !refusedOnce) {
    refusedOnce = true;
    const u = slots.usage();
    console.log(
      `note: waiting for the machine's test slots (${slotsDir}: ${u.slots} test processes on the machine, ` +
        `expected load ${u.load.toFixed(1)} of ${cpuBudget} cores); this run continues as they free`,
    );
  }
  // Another run's slots free without telling this one: poll the machine while it holds a job back.
  // While jobs wait, look at the cores again in half a second (see `spareBelow`).
  const poll = refused ? 1000 : waiting.length && spareBelow > 0 ? 500 : 0;
  let pollTimer;
  await Promise.race([
    ...active.values(),
    ...(poll ? [new Promise((r) => (pollTimer = setTimeout(r, poll)))] : []),
  ]);
  clearTimeout(pollTimer);
}
slots?.freeAll();
const browser = await sharedBrowser;
const browserCpu = await browser?.stop();
rmSync(runDir, { recursive: true, force: true });
if (testTmp) rmSync(testTmp, { recursive: true, force: true });

const durations = Object.assign({}, ...results.map((r) => r.durations));
/** Files whose job ran while the machine was not saturated: their wall time may set their load. */
const unsaturated = new Set(
  results.filter((r) => r.busy !== undefined && r.busy < SATURATED).flatMap((r) => r.job.files),
);
const cpus = Object.assign({}, ...results.map((r) => r.cpus));
mkdirSync(cacheDir, { recursive: true });
const cached = readJson(join(cacheDir, 'durations.json'));
/**
 * The shared Chromium's CPU is in no file's figure, but the browser files make it work: the figure
 * kept for the scheduler adds each browser file's share of it (by wall time), so their expected
 * load counts the renderer they keep busy (without it the browser files were rated ~3x too light
 * and ran six at once beside Chromium at load 17-31).
 */
const browserFiles = Object.keys(durations).filter((f) => usesBrowser({ files: [f] }));
const browserMs = browserFiles.reduce((a, f) => a + durations[f], 0);
const browserShare = (f) =>
  browserCpu && browserMs && browserFiles.includes(f) ? (browserCpu * durations[f]) / browserMs : 0;
for (const [f, ms] of Object.entries(durations)) {
  const cpu = cpus[f] === undefined ? undefined : Math.round((cpus[f] + browserShare(f)) * 10) / 10;
  const quietMs = unsaturated.has(f) ? ms : cached[f]?.quietMs;
  cached[f] = { ms, ...(cpu === undefined ? {} : { cpu }), ...(quietMs === undefined ? {} : { quietMs }) };
}
// Renamed into place: a run starting beside this one reads the whole file or the old one.
writeFileSync(join(cacheDir, `durations.json.${process.pid}.tmp`), `${JSON.stringify(cached, null, 1)}\n`);
renameSync(join(cacheDir, `durations.json.${process.pid}.tmp`), join(cacheDir, 'durations.json'));
// The last run's schedule: each process's files, start and end (seconds from the test phase's
// start) and CPU, in start order, to see where the cores waited (docs/testing.md, "Knobs").
writeFileSync(
  join(cacheDir, 'timeline.json'),
  `${JSON.stringify(
    results
      .map((r) => ({
        files: r.job.files,
        start: Math.round((r.started - began) / 100) / 10,
        end: Math.round((r.started + r.ms - began) / 100) / 10,
        cpu: r.cpu,
      }))
      .sort((a, b) => a.start - b.start),
    null,
    1,
  )}\n`,
);
const total = {};
for (const r of results) for (const [k, v] of Object.entries(r.counts)) total[k] = (total[k] ?? 0) + v;
const failed = results.filter((r) => !r.ok);
console.log('\nmost CPU (user+system seconds, the file and every process it started and ended):');
for (const [f, s] of Object.entries(cpus)
  .filter(([, s]) => s !== undefined)
  .sort((a, b) => b[1] - a[1])
  .slice(0, 15))
  console.log(`  ${cpuText(s)} ${seconds(durations[f])}  ${f}`);
// Where the wall time goes inside the files: the slowest top-level tests (a long wait shows here).
console.log('\nslowest tests (wall seconds, top-level tests):');
for (const t of results
  .flatMap((r) => r.tests)
  .sort((a, b) => b.ms - a.ms)
  .slice(0, Number(process.env.KEEL_TEST_SLOWEST) || 25))
  console.log(`  ${seconds(t.ms)}  ${t.file}: ${t.name.length > 90 ? `${t.name.slice(0, 89)}…` : t.name}`);
const jobsCpu = results.reduce((a, r) => a + (r.cpu ?? 0), 0);
/** The processes' wall times, without the idle ones (they take no place). */
const wallSum = results.filter((r) => !r.job.idle).reduce((a, r) => a + r.ms, 0);
if (browser)
  console.log(
    `\nthe shared Chromium: ${cpuText(browserCpu)} (in no file's figure above, in the total below)`,
  );
const machineAtEnd = machineCpu();
const phaseBusy =
  machineAtBegin && machineAtEnd && machineAtEnd.total > machineAtBegin.total
    ? (machineAtEnd.busy - machineAtBegin.busy) / (machineAtEnd.total - machineAtBegin.total)
    : undefined;
console.log(
  `\n${['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo'].map((k) => `${k} ${total[k] ?? 0}`).join(', ')}` +
    `\n${files.length} files, ${jobs.length} processes (up to ${concurrency} at once, within ${cpuBudget} cores): ${((Date.now() - began) / 1000).toFixed(1)} s` +
    `\nCPU: ${jobsCpu.toFixed(1)} s in the test processes, ${((ownCpu() ?? 0) + browserOrphanCpu).toFixed(1)} s in all with the builds, Chromium and this runner` +
    ` (= ${(((ownCpu() ?? jobsCpu) + browserOrphanCpu) / cores).toFixed(0)} s of ${cores} busy cores)` +
    // The other floor: the processes' wall times over how many may run at once. A run near this
    // one is held by the limit on processes (their waiting), not by the cores.
    `\nwall: ${(wallSum / 1000).toFixed(0)} s of processes in all but the idle ones (= ${(wallSum / 1000 / concurrency).toFixed(0)} s at ${concurrency} at once)` +
    // Everything on the machine (PostgreSQL's backends, other runs): well under 100 % on a quiet
    // machine, the schedule left cores idle; near it, only less CPU makes the run shorter.
    (phaseBusy === undefined
      ? ''
      : `\ncores: ${(100 * phaseBusy).toFixed(0)} % busy during the test phase (the whole machine, /proc/stat)` +
        (spareStarts
          ? `; ${spareStarts} processes started beyond the budget on idle cores (KEEL_TEST_SPARE)`
          : '')),
);
if (failed.length) {
  console.log(`failed: ${failed.map((r) => r.job.files.join(' + ')).join(', ')}`);
  process.exit(1);
}
