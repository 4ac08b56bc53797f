// Proves the keel-agent command line as a user meets it (a child process): --help, help and
// `<command> --help` print usage and exit 0; an unknown command or flag, a missing value or a
// missing/doubled join token gives one clear line and exit 2; a token file is read. The first
// usage form runs the real launcher (bin/keel-agent.mjs, through tsx in a checkout: ~0.5 s of CPU
// a start); the other cases run the agent build of the run (KEEL_TEST_AGENT_BIN: `npm test`
// bundles src/ as the release does, ~0.25 s a start), else the launcher too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const launcher = fileURLToPath(new URL('../bin/keel-agent.mjs', import.meta.url));
const build = process.env.KEEL_TEST_AGENT_BIN ?? launcher;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A command that has not ended after this long is stopped and reported with where it stood. */
const HUNG_MS = 40_000;

function agent(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string; bin?: string } = {},
): Promise<Run> {
  // Only the token a case gives: one in this process's environment must not leak into the cases.
  const env: NodeJS.ProcessEnv = { ...process.env, KEEL_JOIN_TOKEN: undefined };
  Object.assign(env, { KEEL_AGENT_LOG_LEVEL: 'silent' }, opts.env);
  // A Node diagnostic report on SIGUSR2 (its JavaScript stack and open handles) if it hangs: an
  // enroll to a closed port hung once in a loaded CI run (2 Dec) and ends in ~0.3 s otherwise.
  const reports = mkdtempSync(join(tmpdir(), 'keel-cli-report-'));
  const child = spawn(
    process.execPath,
    [
      '--report-on-signal',
      '--report-signal=SIGUSR2',
      `--report-directory=${reports}`,
      opts.bin ?? build,
      ...args,
    ],
    { env, stdio: 'pipe' },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.stdin ?? '');
  const hung = setTimeout(() => {
    child.kill('SIGUSR2');
    setTimeout(() => {
      for (const f of readdirSync(reports)) {
        const report = JSON.parse(readFileSync(join(reports, f), 'utf8')) as {
          javascriptStack?: { stack?: string[] };
          libuv?: { type: string; is_active: boolean; remoteEndpoint?: unknown }[];
        };
        stderr += `\n[hung after ${HUNG_MS} ms] stack: ${(report.javascriptStack?.stack ?? []).join(' | ')}`;
        stderr += `\n[hung] active handles: ${JSON.stringify((report.libuv ?? []).filter((h) => h.is_active))}`;
      }
      child.kill('SIGKILL');
    }, 2_000).unref();
  }, HUNG_MS);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(hung);
      rmSync(reports, { recursive: true, force: true });
      resolve({ code, stdout, stderr });
    }),
  );
}

test(
  '--help, -h, help and <command> --help print the usage text and exit 0',
  { timeout: 60_000 },
  async () => {
    const forms = [['--help'], ['-h'], ['help'], ['help', 'enroll'], ['run', '--help'], ['enroll', '-h']];
    const runs = await Promise.all(forms.map((args, i) => agent(args, i === 0 ? { bin: launcher } : {})));
    runs.forEach((r, i) => {
      const form = forms[i]!.join(' ');
      assert.equal(r.code, 0, `${form}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage:/, form);
      assert.match(r.stdout, /keel-agent enroll .*--pin/, form);
      assert.match(r.stdout, /--token-file/, form);
      assert.match(r.stdout, /KEEL_JOIN_TOKEN/, form);
      assert.match(r.stdout, /Node\.js >= 20\.19/, form);
    });
  },
);

test('usage mistakes give one line naming the mistake and exit 2', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-cli-'));
  try {
    const empty = join(dir, 'empty-token');
    writeFileSync(empty, '\n');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'kjt_x\n');
    const enroll = ['enroll', '--controller', 'http://127.0.0.1:9', '--pin', 'sha256:x', '--state-dir', dir];
    const cases: [string[], RegExp][] = [
      [['--bogus'], /unknown option --bogus/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [['run', '--bogus'], /unknown option --bogus for "run"/],
      [['run', '--state-dir'], /option --state-dir needs a value/],
      [['version', 'extra'], /unexpected argument "extra"/],
      [['help', 'frobnicate'], /unknown command "frobnicate"/],
      [['enroll', '--pin', 'sha256:x'], /needs --controller/],
      [enroll, /needs a join token: set KEEL_JOIN_TOKEN or give --token-file/],
      [[...enroll, '--token', 'kjt_x', '--token-file', tokenFile], /--token-file or --token, not both/],
      [[...enroll, '--token-file', empty], /join token from .* is empty/],
    ];
    const runs = await Promise.all(cases.map(([args]) => agent(args)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i]!;
      const form = args.join(' ');
      assert.equal(r.code, 2, `${form}: exit ${r.code}, ${r.stderr}`);
      assert.equal(r.stdout, '', form);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, `${form}: ${r.stderr}`);
      assert.match(lines[0]!, /^keel-agent: /, form);
      assert.match(lines[0]!, message, form);
    });
    // No command at all: the usage text, on stderr, exit 2.
    const bare = await agent([]);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /^Usage:/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('enroll reads the join token from a file', { timeout: 60_000 }, async () => {
  // KEEL_JOIN_TOKEN is what every end-to-end enroll uses (test/helpers/fleet.ts) and stdin is how
  // the controller's local agent gets it (controller/src/local-agent.test.ts); this is the file.
  const dir = mkdtempSync(join(tmpdir(), 'keel-cli-'));
  try {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'kjt_from_file\n');
    // Nothing listens on port 9: the command gets past the command line and fails to connect
    // (exit 1), which a usage mistake (exit 2) would not do.
    const r = await agent([
      'enroll',
      '--controller',
      'http://127.0.0.1:9',
      '--pin',
      'sha256:x',
      '--state-dir',
      join(dir, 'state'),
      '--token-file',
      tokenFile,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /enroll failed/);
    assert.doesNotMatch(r.stderr, /kjt_/, 'the token is never printed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
