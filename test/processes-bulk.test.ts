// Proves the fleet-wide process list and bulk actions with a real controller and two real agents:
// GET /processes lists the processes of both hosts with live state, filtered by host, state and
// name; one POST /processes/actions stops (then starts) the same process on both hosts at once,
// each target answering for itself (an unknown process fails alone, the others still act), every
// action audited per host; a viewer sees the list but may not act.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startFleet,
  waitFor,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: TestController;
let api: ApiClient;
let viewer: ApiClient;
const hostIds: string[] = [];

interface FleetProcess {
  hostId: string;
  hostName: string;
  name: string;
  status: { state: string } | null;
}

async function fleet(query = ''): Promise<FleetProcess[]> {
  const res = await api.get<{ processes: FleetProcess[] }>(`/processes${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.processes;
}

before(async () => {
  const first = await startFleet(procs, dirs, { name: 'bulk-a' });
  ctl = first.ctl;
  hostIds.push(first.hostId);
  const second = await enrollNewAgent(ctl, 'bulk-b');
  dirs.push(second);
  procs.push(runAgent(second));
  const b = await waitFor(
    async () =>
      (await ctl.services.hosts.list()).find((h) => h.name === 'bulk-b' && ctl.gateway.isOnline(h.id))?.id,
    60_000,
    'bulk-b online',
  );
  hostIds.push(b);
  api = await signedInApi(ctl, { username: 'bulk-admin', password: 'bulk admin password 1', role: 'admin' });
  viewer = await signedInApi(ctl, {
    username: 'bulk-viewer',
    password: 'bulk viewer password 1',
    role: 'viewer',
  });
});

after(async () => {
  // removeDir (helpers/fleet.ts) kills the process groups the agents' state dirs still supervise.
  for (const p of procs) await kill(p);
  await ctl?.close();
  for (const d of dirs) removeDir(d);
});

test(
  'the fleet list filters by host, state and name; one action stops and starts a process on both hosts',
  { timeout: 180_000 },
  async () => {
    for (const id of hostIds) {
      for (const name of ['sleeper', 'other']) {
        const res = await api.post(`/hosts/${id}/processes`, { name, argv: ['sleep', '600'] });
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
    }
    await waitFor(async () => (await fleet('?state=running')).length === 4, 60_000, 'four running processes');
    let list = await fleet('?name=sleep');
    assert.deepEqual(
      list.map((p) => [p.hostName, p.name, p.status?.state]),
      [
        ['bulk-a', 'sleeper', 'running'],
        ['bulk-b', 'sleeper', 'running'],
      ],
    );
    list = await fleet(`?hostId=${hostIds[1]}`);
    assert.deepEqual(
      list.map((p) => p.name),
      ['other', 'sleeper'],
    );

    // Stop `sleeper` on both hosts, plus a process that does not exist: that one fails alone.
    const res = await api.post<{
      results: {
        hostId: string;
        name: string;
        ok: boolean;
        state: string | null;
        error: { code: string } | null;
      }[];
    }>('/processes/actions', {
      action: 'stop',
      name: 'sleeper',
      hostIds,
      targets: [{ hostId: hostIds[0], name: 'ghost' }],
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const byKey = new Map(res.body.results.map((r) => [`${r.hostId}/${r.name}`, r]));
    assert.equal(res.body.results.length, 3);
    for (const id of hostIds) {
      assert.equal(byKey.get(`${id}/sleeper`)?.ok, true);
      assert.equal(byKey.get(`${id}/sleeper`)?.state, 'stopped');
    }
    assert.equal(byKey.get(`${hostIds[0]}/ghost`)?.ok, false);
    assert.equal(byKey.get(`${hostIds[0]}/ghost`)?.error?.code, 'process.not_found');
    list = await fleet('?state=stopped');
    assert.deepEqual(
      list.map((p) => `${p.hostName}/${p.name}`),
      ['bulk-a/sleeper', 'bulk-b/sleeper'],
    );
    assert.equal((await fleet('?state=running')).length, 2, 'the others still run');

    const started = await api.post<{ results: { ok: boolean; state: string }[] }>('/processes/actions', {
      action: 'start',
      targets: hostIds.map((hostId) => ({ hostId, name: 'sleeper' })),
    });
    assert.deepEqual(
      started.body.results.map((r) => [r.ok, r.state]),
      [
        [true, 'running'],
        [true, 'running'],
      ],
    );
    // Each host's action is in the audit trail.
    const audit = await api.get<{ entries: { action: string; target: string }[] }>('/audit?limit=100');
    for (const id of hostIds) {
      assert.ok(
        audit.body.entries.some((e) => e.action === 'process.stop' && e.target === `host:${id}`),
        id,
      );
    }
  },
);

test('a viewer sees the fleet list but may not act', { timeout: 60_000 }, async () => {
  const list = await viewer.get<{ processes: unknown[] }>('/processes');
  assert.equal(list.status, 200);
  assert.ok(list.body.processes.length >= 4);
  const act = await viewer.post('/processes/actions', { action: 'stop', name: 'sleeper', hostIds });
  assert.equal(act.status, 403);
  const none = await api.post('/processes/actions', { action: 'stop', targets: [] });
  assert.equal(none.status, 400);
});
