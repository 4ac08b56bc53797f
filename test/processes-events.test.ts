// Proves that every process state change reaches the host timeline and the audit trail, once:
// started, exited with its code, restarting, crash-loop, adopted after kill -9 of the agent, and
// the exit code of a process that ended after it was adopted (its keeper kept it); a controller
// restart (kill -9) does not write any event into the trail twice.
import assert from 'node:assert/strict';
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

interface AuditEntry {
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}
interface HostEvent {
  seq: number;
  kind: string;
  data: Record<string, unknown>;
}

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: ControllerProcess;
let agent: Proc;
let agentDir: string;
let hostId: string;

before(async () => {
  ({ ctl, agent, agentDir, hostId } = await startFleet(procs, dirs, {
    controller: 'process',
    name: 'events-host',
  }));
});

after(async () => {
  // removeDir (helpers/fleet.ts) kills the process groups the agent's state dir still supervises.
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

/** The agent's process rows in the audit trail, oldest first. */
async function trail(): Promise<AuditEntry[]> {
  const res = await ctl.api.get<{ entries: AuditEntry[] }>(
    `/audit?actor=${encodeURIComponent(`agent:${hostId}`)}&limit=200`,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.entries.reverse();
}

async function timeline(): Promise<HostEvent[]> {
  const res = await ctl.api.get<{ events: HostEvent[] }>(`/hosts/${hostId}/events?tail=1000`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.events.filter((e) => e.kind.startsWith('process.'));
}

const kinds = (
  rows: {
    action?: string;
    kind?: string;
    detail?: Record<string, unknown>;
    data?: Record<string, unknown>;
  }[],
  name: string,
) => rows.filter((r) => (r.detail ?? r.data)?.process === name).map((r) => r.action ?? r.kind);

test(
  'process state changes are on the timeline and in the audit trail, once, across agent and controller kill -9',
  { timeout: 240_000 },
  async () => {
    const apply = async (spec: Record<string, unknown>) => {
      const res = await ctl.api.post(`/hosts/${hostId}/processes`, spec);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };
    await apply({
      name: 'flaky',
      argv: ['sh', '-c', 'exit 3'],
      restart: { policy: 'on-failure', backoffMs: 100, maxBackoffMs: 200, maxRestarts: 2, windowSeconds: 60 },
    });
    await apply({ name: 'ender', argv: ['sh', '-c', 'read x; exit 7'], restart: { policy: 'never' } });
    const expected = [
      'process.started',
      'process.exited',
      'process.restarting',
      'process.started',
      'process.exited',
      'process.restarting',
      'process.started',
      'process.exited',
      'process.crash-loop',
    ];
    await waitFor(
      async () => kinds(await trail(), 'flaky').length >= expected.length,
      60_000,
      'flaky in the trail',
    );
    const rows = await trail();
    assert.deepEqual(kinds(rows, 'flaky'), expected);
    assert.deepEqual(kinds(await timeline(), 'flaky'), expected);
    const exited = rows.find((r) => r.action === 'process.exited')!;
    assert.equal(exited.detail.exitCode, 3);
    assert.equal(exited.target, `host:${hostId}`);

    // kill -9 of the agent: the process is adopted, and its exit code is still known afterwards.
    await kill(agent);
    agent = runAgent(agentDir);
    procs.push(agent);
    await waitFor(
      async () => kinds(await trail(), 'ender').includes('process.adopted'),
      60_000,
      'ender adopted in the trail',
    );
    // The controller goes away and back (kill -9) before the exit.
    await ctl.restart();
    await waitFor(
      async () => {
        const res = await ctl.api.post(`/hosts/${hostId}/processes/ender/stdin`, { line: 'bye' });
        return res.status === 200;
      },
      60_000,
      'stdin to ender after the restarts',
    );
    const end = await waitFor(
      async () => (await trail()).find((r) => r.action === 'process.exited' && r.detail.process === 'ender'),
      60_000,
      'ender exit in the trail',
    );
    assert.equal(end.detail.exitCode, 7, 'the exit code of an adopted process');
    assert.deepEqual(kinds(await trail(), 'ender'), ['process.started', 'process.adopted', 'process.exited']);
    assert.deepEqual(kinds(await timeline(), 'ender'), [
      'process.started',
      'process.adopted',
      'process.exited',
    ]);
    // Once each: no stream sequence twice in the trail.
    const seqs = (await trail()).map((r) => r.detail.seq);
    assert.equal(new Set(seqs).size, seqs.length);
  },
);
