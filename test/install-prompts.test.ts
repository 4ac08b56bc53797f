// Proves install.sh's interactive mode: run on a terminal (a real pseudo-terminal through node-pty)
// with nothing given, the repository's copy asks for the controller URL, the key fingerprint and
// the join token (typed without echo), then installs, enrolls and waits until the host is online.
// (Unattended refusal without a terminal: install.test.ts.)
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { spawn } from 'node-pty';
import {
  removeDir,
  repoRoot,
  startControllerProcess,
  tempDir,
  waitFor,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';
import { buildAgentBundle, standInSystemctl, stopStandInServices } from './install-helpers.ts';

const procs: Proc[] = [];
let controller: ControllerProcess;
let work: string;

before(
  async () => {
    work = tempDir('keel-install-tty-');
    const bundles = buildAgentBundle(work);
    controller = await startControllerProcess(procs, { env: { KEEL_AGENT_BUNDLE_DIR: bundles } });
  },
  { timeout: 100_000 },
);

after(async () => {
  stopStandInServices(work);
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  removeDir(controller.dataDir);
  removeDir(work);
});

test('on a terminal, install.sh asks for what is missing and installs', { timeout: 120_000 }, async () => {
  const created = await controller.api.post<{ secret: string; command: string }>('/join-tokens', {
    note: 'tty',
  });
  assert.equal(created.status, 201);
  const pin = /--pin (sha256:\S+)/.exec(created.body.command)![1]!;
  const root = join(work, 'root');
  const term = spawn('sh', [join(repoRoot, 'install.sh'), 'agent', '--name', 'tty-host'], {
    name: 'xterm',
    cols: 120,
    rows: 40,
    cwd: repoRoot,
    env: {
      ...(process.env as Record<string, string>),
      KEEL_ROOT: root,
      KEEL_SYSTEMCTL: standInSystemctl,
      KEEL_WAIT_SECONDS: '60',
    },
  });
  let screen = '';
  const answered = new Set<string>();
  const answers: [RegExp, string][] = [
    [/Controller URL: $/, controller.url],
    [/Controller key fingerprint \(sha256:\.\.\.\): $/, pin],
    [/Join token \(from Add host in the console\): $/, created.body.secret],
  ];
  const exited = new Promise<number>((resolve) => {
    term.onData((d) => {
      screen += d;
      for (const [prompt, answer] of answers) {
        if (!answered.has(prompt.source) && prompt.test(screen)) {
          answered.add(prompt.source);
          term.write(`${answer}\r`);
        }
      }
    });
    term.onExit(({ exitCode }) => resolve(exitCode));
  });
  const code = await exited;
  assert.equal(code, 0, screen);
  assert.equal(answered.size, 3, `prompts answered: ${[...answered].join(', ')}\n${screen}`);
  assert.match(screen, /Done: this host is online/);
  // The token was typed with echo off: it never reached the screen.
  assert.ok(!screen.includes(created.body.secret), 'the join token was echoed');
  assert.ok(screen.includes(controller.url), 'the URL was echoed as typed');
  // The script saw it online; the fleet list agrees (a busy host may have reconnected since).
  const hosts = async () =>
    (await controller.api.get<{ hosts: { name: string; online: boolean }[] }>('/hosts')).body.hosts.map(
      (h) => [h.name, h.online],
    );
  await waitFor(async () => (await hosts())[0]?.[1] === true, 20_000, 'tty-host online').catch(() => {});
  const agentLog = join(root, 'run/stand-in/keel-agent.service.log');
  assert.deepEqual(
    await hosts(),
    [['tty-host', true]],
    existsSync(agentLog) ? readFileSync(agentLog, 'utf8').slice(-3000) : 'no agent log',
  );
});
