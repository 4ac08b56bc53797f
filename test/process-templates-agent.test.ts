// Proves templates on a real agent: a Pterodactyl egg in the real PTDL_v2 format, imported through
// the API, installs on a host and runs — its program gets exactly the argv the startup line and
// the values make (a hostile MOTD stays one literal argument), prints its done line, answers a
// console command on stdin and stops with the egg's stop command; a Keel template's files are
// written into the working directory before the start (and a path cannot leave it).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import {
  kill,
  removeDir,
  startFleet,
  tempDir,
  waitFor,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';
import { testEgg } from './helpers/pterodactyl-egg.ts';

const SERVER = `
const args = process.argv.slice(2);
console.log('ARGV ' + JSON.stringify(args));
console.log('Loading world...');
console.log('Done (0.01s)! For help, type "help"');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line === 'stop') { console.log('Stopping the server'); process.exit(0); }
    if (line.startsWith('say ')) console.log('[Server] ' + line.slice(4));
  }
});
`;

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: TestController;
let hostId: string;
let api: ApiClient;

interface ProcessView {
  name: string;
  status: { state: string; pid: number | null } | null;
}

async function state(name: string): Promise<string | undefined> {
  const res = await api.get<{ processes: ProcessView[] }>(`/hosts/${hostId}/processes`);
  return res.body.processes.find((p) => p.name === name)?.status?.state;
}

async function stored(name: string): Promise<string[]> {
  const res = await api.get<{ lines: { text: string }[] }>(
    `/hosts/${hostId}/processes/${name}/logs?limit=5000`,
  );
  return res.body.lines.map((l) => l.text);
}

before(
  async () => {
    ({ ctl, hostId } = await startFleet(procs, dirs, { name: 'template-host' }));
    api = await signedInApi(ctl, {
      username: 'tpl-admin',
      password: 'template admin password 1',
      role: 'admin',
    });
  },
  { timeout: 180_000 },
);

after(async () => {
  // removeDir (helpers/fleet.ts) kills the process groups the agent's state dir still supervises.
  for (const p of procs) await kill(p);
  await ctl?.close();
  for (const d of dirs) removeDir(d);
});

test(
  'a Pterodactyl egg imports, installs and runs on a real agent; console and stop work',
  { timeout: 120_000 },
  async () => {
    const serverDir = tempDir('keel-egg-server-');
    dirs.push(serverDir);
    writeFileSync(join(serverDir, 'server.cjs'), SERVER);

    const imported = await api.post<{ template: { id: string; source: { notApplied: string[] } } }>(
      '/process-templates/import',
      { document: JSON.stringify(testEgg, null, 2), id: 'echo-egg' },
    );
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    assert.ok(imported.body.template.source.notApplied.some((n) => n.startsWith('docker_images')));

    const motd = `it's "fun"; rm -rf / $(id) -x`;
    const res = await api.post<{ process: ProcessView; ports: { port: number }[] }>(
      `/hosts/${hostId}/processes/from-template`,
      {
        template: 'echo-egg',
        name: 'echo-game',
        cwd: serverDir,
        values: { NODE_BIN: process.execPath, MOTD: motd, SERVER_PORT: 4321, MAX_PLAYERS: '7' },
      },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.ports, [{ name: 'server', port: 4321, protocol: 'tcp' }]);

    await waitFor(
      async () => (await stored('echo-game')).some((l) => l.startsWith('Done (')),
      60_000,
      'done line stored',
    );
    const lines = await stored('echo-game');
    const argv = JSON.parse(lines.find((l) => l.startsWith('ARGV '))!.slice(5)) as string[];
    assert.deepEqual(
      argv,
      ['--port=4321', '--motd', motd, '--max', '7'],
      'each value is one literal argument',
    );
    await waitFor(async () => (await state('echo-game')) === 'running', 60_000, 'running');

    const said = await api.post(`/hosts/${hostId}/processes/echo-game/stdin`, {
      line: 'say hello from keel',
    });
    assert.equal(said.status, 200, JSON.stringify(said.body));
    await waitFor(
      async () => (await stored('echo-game')).includes('[Server] hello from keel'),
      30_000,
      'console answer',
    );

    // The egg's stop command is `stop`, written to stdin: the server says so and exits by itself.
    const stopped = await api.post<{ process: ProcessView }>(`/hosts/${hostId}/processes/echo-game/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.process.status?.state, 'stopped');
    await waitFor(
      async () => (await stored('echo-game')).includes('Stopping the server'),
      30_000,
      'stop line reached it',
    );
  },
);

test(
  "a template's files are written into the working directory before the start",
  { timeout: 120_000 },
  async () => {
    const workDir = tempDir('keel-tpl-files-');
    dirs.push(workDir);
    const doc = [
      'id: greeter',
      'name: Greeter',
      "argv: [\"{{NODE}}\", \"-e\", \"console.log('FILE ' + require('fs').readFileSync('conf/greeting.txt', 'utf8').trim())\"]",
      'variables:',
      '  - { key: NODE, label: Node, env: false }',
      '  - { key: GREETING, label: Greeting, default: hi }',
      'files:',
      '  - { path: conf/greeting.txt, content: "{{GREETING}} from a template\\n", mode: 0o600 }',
      'restart: never',
    ].join('\n');
    const imported = await api.post('/process-templates/import', { document: doc });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    const res = await api.post(`/hosts/${hostId}/processes/from-template`, {
      template: 'greeter',
      name: 'greeter',
      cwd: workDir,
      values: { NODE: process.execPath, GREETING: 'hello $(id);' },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await waitFor(
      async () => (await stored('greeter')).includes('FILE hello $(id); from a template'),
      60_000,
      'the program read the file',
    );
    assert.equal(readFileSync(join(workDir, 'conf/greeting.txt'), 'utf8'), 'hello $(id); from a template\n');

    // A spec whose file would leave the working directory is refused before anything runs.
    const bad = await api.post(`/hosts/${hostId}/processes`, {
      name: 'escaper',
      argv: ['true'],
      cwd: workDir,
      files: [{ path: '../escaped.txt', content: 'x' }],
    });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
  },
);
