// Proves the keel-controller command line: --help prints the usage (whatever the configuration),
// an unknown command or option is one clear line and exit 2, and create-admin refuses, with a
// message saying why, while a controller holds the embedded database (PGlite is one process).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test, type TestContext } from 'node:test';
import { seedDatabase } from '../../test/helpers/database-template.ts';
import { openDatabase } from './db/index.ts';
import { main } from './main.ts';

const launcher = fileURLToPath(new URL('../bin/keel-controller.mjs', import.meta.url));
/**
 * The controller build of the run (KEEL_TEST_CONTROLLER_BIN: `npm test` bundles src/ as the release
 * does) for the second command, the launcher (through tsx in a checkout) for the first; both with
 * the run's Node options (KEEL_TEST_NODE_ARGS: no second of CPU optimizing PGlite's WebAssembly).
 */
const build = process.env.KEEL_TEST_CONTROLLER_BIN ?? launcher;
const nodeArgs = (process.env.KEEL_TEST_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

/** Runs main() in this process with console output captured. */
async function run(t: TestContext, argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  t.mock.method(console, 'log', (...a: unknown[]) => out.push(a.join(' ')));
  t.mock.method(console, 'error', (...a: unknown[]) => err.push(a.join(' ')));
  const code = await main(argv);
  t.mock.restoreAll();
  return { code, out: out.join('\n'), err: err.join('\n'), errLines: err.join('\n').split('\n') };
}

describe('usage', () => {
  test('--help, -h and help print the usage and exit 0, even with a broken configuration', async (t) => {
    const saved = process.env.KEEL_PORT;
    process.env.KEEL_PORT = 'not-a-port';
    try {
      for (const argv of [['--help'], ['-h'], ['help'], ['serve', '--help'], ['fingerprint', '--help']]) {
        const r = await run(t, argv);
        assert.equal(r.code, 0, argv.join(' '));
        assert.match(r.out, /^Usage:\n {2}keel-controller \[serve\]/, argv.join(' '));
        assert.equal(r.err, '');
      }
      const admin = await run(t, ['create-admin', '--help']);
      assert.equal(admin.code, 0);
      assert.match(admin.out, /^Usage: keel-controller create-admin/);
    } finally {
      if (saved === undefined) delete process.env.KEEL_PORT;
      else process.env.KEEL_PORT = saved;
    }
  });

  test('an unknown command or option is one line on stderr and exit 2', async (t) => {
    const cases: [string[], RegExp][] = [
      [['--bogus'], /^keel-controller: Unknown option '--bogus' \(see keel-controller --help\)$/],
      [['serve', '--port=1'], /^keel-controller: Unknown option '--port' \(see keel-controller --help\)$/],
      [['serve', 'extra'], /^keel-controller: .*'extra'.* \(see keel-controller --help\)$/],
      [['frobnicate'], /^keel-controller: unknown command "frobnicate" \(see keel-controller --help\)$/],
    ];
    for (const [argv, line] of cases) {
      const r = await run(t, argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.equal(r.errLines.length, 1, `${argv.join(' ')}: ${r.err}`);
      assert.match(r.err, line);
      assert.equal(r.out, '');
    }
  });
});

describe('create-admin beside a running controller', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keel-main-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('refuses with a clear message while the embedded database is held, works once it is not', async () => {
    // This process plays the running controller: it holds the database, as `serve` does (a copy
    // of the migrated test template: no initdb).
    await seedDatabase(dir);
    const holder = await openDatabase({ dataDir: dir });
    const env = { ...process.env, KEEL_DATA_DIR: dir, KEEL_LOG_LEVEL: 'silent' };
    const cli = promisify(execFile);
    try {
      const refused = await cli(
        process.execPath,
        [...nodeArgs, launcher, 'create-admin', '--username', 'late'],
        {
          env,
        },
      ).then(
        () => null,
        (err: { code: number; stderr: string; stdout: string }) => err,
      );
      assert.ok(refused, 'create-admin succeeded beside a running controller');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /the controller is running on .* \(pid \d+\)/);
      assert.match(refused.stderr, /one process at a time/);
      assert.doesNotMatch(refused.stdout, /Created user/);
    } finally {
      await holder.close();
    }
    const ok = await cli(process.execPath, [...nodeArgs, build, 'create-admin', '--username', 'late'], {
      env,
    });
    assert.match(ok.stdout, /Created user "late" with role admin/);
  });
});
