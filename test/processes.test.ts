// Proves supervised processes end to end with a real controller process and a real agent process:
// a process's output is stored; after kill -9 of the agent, then of the controller, the process keeps running (same pid),
// what it printed meanwhile is stored once and in order (a checker compares the numbers), and its
// stdin still works; every stdin line is audited; a crash loop ends in `crash-loop`; stop kills the
// whole group (a child ignoring SIGTERM too, checked by pid); malformed params are refused; a viewer
// reads output but cannot change a process or write to it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import {
  kill,
  removeDir,
  runAgent,
  waitFor,
  type ControllerProcess,
  type Proc,
  startFleet,
} from './helpers/fleet.ts';

interface ProcessView {
  name: string;
  status: {
    state: string;
    pid: number | null;
    adopted: boolean;
    restarts: number;
    rssBytes: number | null;
  } | null;
}
interface LogPage {
  lines: { seq: number; stream: string; text: string }[];
  nextAfter: number;
  end: boolean;
}

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: ControllerProcess;
let agent: Proc;
let agentDir: string;
let hostId: string;

function startAgent() {
  agent = runAgent(agentDir);
  procs.push(agent);
}

async function online(): Promise<void> {
  await waitFor(
    async () => {
      const res = await ctl.api.get<{ host: { online: boolean } }>(`/hosts/${hostId}`);
      return res.body.host?.online;
    },
    30_000,
    'the agent online',
  );
}

async function list(): Promise<ProcessView[]> {
  const res = await ctl.api.get<{ processes: ProcessView[] }>(`/hosts/${hostId}/processes`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.processes;
}

async function status(name: string) {
  return (await list()).find((p) => p.name === name)?.status ?? null;
}

/** Every stored line of a process, paging from the start. */
async function storedLines(name: string, stream?: 'stdout' | 'stderr'): Promise<string[]> {
  const out: string[] = [];
  let after = 0;
  for (;;) {
    const res = await ctl.api.get<LogPage>(
      `/hosts/${hostId}/processes/${name}/logs?after=${after}&limit=5000`,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    out.push(...res.body.lines.filter((l) => !stream || l.stream === stream).map((l) => l.text));
    if (res.body.end) return out;
    after = res.body.nextAfter;
  }
}

async function apply(spec: Record<string, unknown>) {
  const res = await ctl.api.post<{ process: ProcessView }>(`/hosts/${hostId}/processes`, spec);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.process;
}

before(async () => {
  ({ ctl, agent, agentDir, hostId } = await startFleet(procs, dirs, {
    controller: 'process',
    name: 'process-host',
  }));
});

after(async () => {
  // removeDir (helpers/fleet.ts) kills the process groups the agent's state dir still supervises.
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

test(
  'output is stored; across kill -9 of the agent and of the controller the process runs on (same pid), its output is stored once and in order, stdin works and is audited',
  { timeout: 180_000 },
  async () => {
    await apply({
      name: 'counter',
      argv: ['sh', '-c', 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo "n $i"; sleep 0.01; done'],
    });
    await apply({ name: 'echo', argv: ['sh', '-c', 'echo ready; while read l; do echo "got $l"; done'] });
    await waitFor(async () => (await storedLines('counter')).length >= 5, 20_000, 'counter output stored');
    const stdin = await ctl.api.post<{ bytes: number }>(`/hosts/${hostId}/processes/echo/stdin`, {
      line: 'hello',
    });
    assert.equal(stdin.status, 200, JSON.stringify(stdin.body));
    await waitFor(
      async () => (await storedLines('echo')).includes('got hello'),
      20_000,
      'echo answer stored',
    );

    const before = await status('counter');
    assert.equal(before?.state, 'running');
    const pid = before.pid!;

    await kill(agent);
    // The counter keeps printing while no agent runs.
    await new Promise((r) => setTimeout(r, 1_000));
    process.kill(pid, 0);
    startAgent();
    await online();
    // The agent reports its processes just after it connects: wait for the report, not a moment.
    const adopted = await waitFor(() => status('counter'), 20_000, 'counter status after the agent restart');
    assert.equal(adopted?.pid, pid, 'same pid after the agent restart');
    assert.equal(adopted?.adopted, true);
    assert.equal(adopted?.state, 'running');
    assert.ok((adopted?.rssBytes ?? 0) > 0);

    const again = await ctl.api.post(`/hosts/${hostId}/processes/echo/stdin`, { line: 'after restart' });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    await waitFor(
      async () => (await storedLines('echo')).includes('got after restart'),
      20_000,
      'stdin after restart',
    );

    // And the controller goes away (kill -9) and comes back while the counter prints on.
    await ctl.restart();
    await online();
    const restarted = await waitFor(
      async () => (await status('counter'))?.pid,
      20_000,
      'counter status after the controller restart',
    );
    assert.equal(restarted, pid, 'same pid after the controller restart');

    const stopped = await ctl.api.post<{ process: ProcessView }>(`/hosts/${hostId}/processes/counter/stop`);
    assert.equal(stopped.status, 200);
    assert.equal(stopped.body.process.status?.state, 'stopped');
    // Everything it printed arrives; the checker wants exactly 1..N. Its stdout only: the keeper
    // (dash) reports "Terminated" on the program's stderr when the stop's SIGTERM ends it — noise in
    // the user's log, left on issue 8 — which is not a counter line.
    let lines: string[] = [];
    await waitFor(
      async () => {
        lines = await storedLines('counter', 'stdout');
        const last = Number(lines.at(-1)?.slice(2));
        return last > 0 && lines.length === last;
      },
      60_000,
      'all counter lines',
    ).catch(() => {
      // Not all there in time: the checks below say which line is missing or repeated.
    });
    const numbers = lines.map((l) => Number(l.slice(2)));
    assert.ok(numbers.length > 100, `${numbers.length} lines across the agent restart`);
    numbers.forEach((n, i) => assert.equal(n, i + 1, `line ${i + 1} is n ${i + 1}`));
    assert.deepEqual(await storedLines('echo'), ['ready', 'got hello', 'got after restart']);

    const audit = await ctl.api.get<{ entries: { action: string; detail: Record<string, unknown> }[] }>(
      '/audit?action=process.stdin',
    );
    assert.deepEqual(audit.body.entries.map((e) => e.detail.line).sort(), ['after restart', 'hello']);
  },
);

test('a process that keeps failing ends in crash-loop', { timeout: 30_000 }, async () => {
  await apply({
    name: 'crashy',
    argv: ['sh', '-c', 'echo boom; exit 2'],
    restart: { policy: 'on-failure', backoffMs: 100, maxBackoffMs: 400, maxRestarts: 2, windowSeconds: 60 },
  });
  await waitFor(async () => (await status('crashy'))?.state === 'crash-loop', 20_000, 'crash-loop');
  assert.equal((await status('crashy'))?.restarts, 2);
  await waitFor(async () => (await storedLines('crashy')).length === 3, 10_000, 'three runs stored');
});

test('stop kills the whole group: a child ignoring SIGTERM too (by pid)', { timeout: 30_000 }, async () => {
  await apply({
    name: 'tree',
    argv: ['sh', '-c', 'trap "" TERM; sleep 1000 & echo "child $!"; wait; wait'],
    stop: { signal: 'SIGTERM', graceMs: 300 },
  });
  const child = await waitFor(
    async () => {
      const l = (await storedLines('tree')).find((x) => x.startsWith('child '));
      return l ? Number(l.slice(6)) : undefined;
    },
    20_000,
    'child pid',
  );
  const leader = (await status('tree'))!.pid!;
  const res = await ctl.api.post<{ process: ProcessView }>(`/hosts/${hostId}/processes/tree/stop`);
  assert.equal(res.status, 200);
  for (const pid of [leader, child]) {
    let alive = true;
    try {
      alive = !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      alive = false;
    }
    assert.equal(alive, false, `pid ${pid} is gone`);
  }
});

test('malformed params are refused; an unknown process is 404', { timeout: 30_000 }, async () => {
  const bad = [
    { name: 'x', argv: 'echo hi' },
    { name: 'Bad Name', argv: ['true'] },
    { name: 'x', argv: [] },
    { name: 'x', argv: ['true'], restart: { policy: 'sometimes' } },
    { name: 'x', argv: ['true'], cwd: 'relative' },
  ];
  for (const body of bad) {
    const res = await ctl.api.post<{ error: { code: string } }>(`/hosts/${hostId}/processes`, body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(res.body.error.code, 'request.invalid');
  }
  const twoLines = await ctl.api.post<{ error: { code: string } }>(`/hosts/${hostId}/processes/echo/stdin`, {
    line: 'a\nb',
  });
  assert.equal(twoLines.status, 400);
  const missing = await ctl.api.post<{ error: { code: string } }>(`/hosts/${hostId}/processes/nope/start`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'process.not_found');
  const tooLate = await ctl.api.get<LogPage>(
    `/hosts/${hostId}/processes/echo/logs?since=${Date.now() + 60_000}`,
  );
  assert.equal(tooLate.status, 200);
  assert.deepEqual(tooLate.body.lines, []);
  const inRange = await ctl.api.get<LogPage>(
    `/hosts/${hostId}/processes/echo/logs?since=0&until=${Date.now() + 60_000}&contains=hello`,
  );
  assert.deepEqual(
    inRange.body.lines.map((l) => l.text),
    ['got hello'],
  );
  const download = await ctl.api.fetchRaw(`/hosts/${hostId}/processes/echo/logs.txt`);
  assert.equal(download.status, 200);
  assert.match(download.headers.get('content-disposition') ?? '', /attachment; filename="echo.log"/);
  assert.match(await download.text(), /^\d{4}-\d\d-\d\dT[\d:.]+Z out ready\n.* out got hello\n/s);
  const del = await ctl.api.request('DELETE', `/hosts/${hostId}/processes/crashy`);
  assert.equal(del.status, 204);
  assert.equal(await status('crashy'), null);
});

test(
  'a viewer reads logs but cannot change a process or write to its input',
  { timeout: 30_000 },
  async () => {
    const { api: viewer } = await ctl.api.newUser({ username: 'proc-viewer', role: 'viewer' });
    const logs = await viewer.get<LogPage>(`/hosts/${hostId}/processes/echo/logs?tail=10`);
    assert.equal(logs.status, 200);
    assert.ok(logs.body.lines.some((l) => l.text === 'got hello'));
    assert.equal((await viewer.get(`/hosts/${hostId}/processes`)).status, 200);
    for (const [path, body] of [
      [`/hosts/${hostId}/processes/echo/stdin`, { line: 'sneaky' }],
      [`/hosts/${hostId}/processes/echo/stop`, {}],
      [`/hosts/${hostId}/processes`, { name: 'evil', argv: ['true'] }],
    ] as const) {
      const res = await viewer.post<{ error: { code: string } }>(path, body);
      assert.equal(res.status, 403, path);
      assert.equal(res.body.error.code, 'auth.forbidden');
    }
    assert.ok(!(await storedLines('echo')).includes('got sneaky'));

    // And kill (an operator's) ends it at once.
    const killed = await ctl.api.post<{ process: ProcessView }>(`/hosts/${hostId}/processes/echo/kill`);
    assert.equal(killed.status, 200, JSON.stringify(killed.body));
    assert.equal(killed.body.process.status?.state, 'stopped');
  },
);
