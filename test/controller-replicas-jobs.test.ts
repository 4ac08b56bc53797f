// Proves a job reaches every online host whichever replica runs it (one PostgreSQL, a real
// Mosquitto, two controller replicas in this process, an agent on each): a run started through B
// runs on A's host through a routed channel as on B's own, with the same results, output, events
// and one audit row, the other replica's live view gets all of its output, and a host online nowhere
// is reported offline; a running run read through the replica not running it shows the output so
// far, and cancelled through it ends cancelled; a schedule on both replicas' hosts succeeds on both,
// whichever replica's scheduler claimed the slot. (Before, a replica reported every host held by
// another as offline, refused the cancel and showed no output before the run's end.) A replica off
// the broker says a host online on another replica is out of its reach, not offline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import postgres from 'postgres';
import type { FleetEvent } from '../controller/src/bus/index.ts';
import {
  ON_UNREACHABLE_REPLICA,
  type JobHostView,
  type JobRunView,
} from '../controller/src/services/jobs.ts';
import { ApiClient } from './helpers/api.ts';
import { enrollNewAgent, runAgent, waitFor } from './helpers/fleet.ts';
import { clearedAfter, replicaMasterKey, replicaServices, startReplica } from './helpers/replicas.ts';

const left = clearedAfter();
const { procs, dirs, closers } = left;

test(
  'a job through either replica runs on every online host, wherever its session is',
  { timeout: 180_000 },
  async (t) => {
    const env = await replicaServices(t, left, 'keel_bus_jobs');
    if (!env) return;
    // Both replicas in this process, on the deployment's master key.
    const masterKey = replicaMasterKey();
    const a = await startReplica(left, env, masterKey);
    const b = await startReplica(left, env, masterKey);
    assert.ok(a.bus.connected && b.bus.connected, 'both on the broker');
    const sql = postgres(env.DATABASE_URL, { max: 1, onnotice: () => {} });
    closers.push(() => sql.end());

    const agentOn = async (c: typeof a, name: string, run = true) => {
      const dir = await enrollNewAgent(c, name);
      dirs.push(dir);
      if (run) procs.push(runAgent(dir));
      return (await c.services.hosts.list()).find((h) => h.name === name)!.id;
    };
    const onA = await agentOn(a, 'on-a');
    const onB = await agentOn(b, 'on-b');
    const nowhere = await agentOn(a, 'online-nowhere', false);
    await waitFor(() => a.gateway.isOnline(onA) && b.gateway.isOnline(onB), 30_000, 'both agents on');
    // B reads who holds on-a from the database: wait for A's presence there.
    await waitFor(
      async () => (await b.services.hosts.list()).find((h) => h.id === onA)?.online,
      15_000,
      "on-a online in B's view",
    );

    // A's live view of everything the run publishes (B runs it).
    const heardOnA: FleetEvent[] = [];
    t.after(a.bus.subscribe((e) => heardOnA.push(e)));

    const apiB = await ApiClient.signIn(b.url, a.firstAdmin!);
    const started = await apiB.request<{ run: JobRunView }>('POST', '/jobs/runs', {
      command: { argv: ['/bin/sh', '-c', 'echo "out $0"; echo "err line" >&2; exit 0', 'x'] },
      target: { hostIds: [onA, onB, nowhere] },
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const runId = started.body.run.id;
    const ended = await waitFor(() => b.services.jobs.wait(runId), 60_000, 'the run ends');
    assert.equal(ended.status, 'failed', 'one host offline fails the run');
    assert.equal(ended.failedCount, 1);

    const apiA = await ApiClient.signIn(a.url, a.firstAdmin!);
    const detail = await apiA.get<{ run: JobRunView; hosts: JobHostView[] }>(`/jobs/runs/${runId}`);
    const byName = Object.fromEntries(detail.body.hosts.map((h) => [h.hostName, h]));
    for (const name of ['on-a', 'on-b']) {
      const h = byName[name]!;
      assert.equal(h.status, 'succeeded', `${name}: ${JSON.stringify(h)}`);
      assert.equal(h.exitCode, 0);
      assert.equal(h.stdout, 'out x\n', name);
      assert.equal(h.stderr, 'err line\n', name);
      assert.equal(h.error, null);
    }
    assert.equal(byName['online-nowhere']!.status, 'offline');
    assert.equal(byName['online-nowhere']!.error, 'the host is offline');

    // The other replica's live view had it all: both hosts' output and ends, and the run's end.
    await waitFor(
      () => heardOnA.some((e) => e.type === 'job.run' && e.run.id === runId && e.run.status !== 'running'),
      10_000,
      "the run's end on A's bus",
    );
    for (const hostId of [onA, onB]) {
      const out = heardOnA
        .filter((e) => e.type === 'job.output' && e.runId === runId && e.hostId === hostId)
        .map((e) => (e as { stream: string; text: string }).stream + ':' + (e as { text: string }).text)
        .join('');
      assert.match(out, /stdout:out x\n/, hostId);
      assert.match(out, /stderr:err line\n/, hostId);
      assert.ok(
        heardOnA.some(
          (e) =>
            e.type === 'job.host' &&
            e.runId === runId &&
            e.host.hostId === hostId &&
            e.host.status === 'succeeded',
        ),
      );
    }
    const audited = await sql<{ actor: string }[]>`
      select actor from audit_log where action = 'job.run' and target = ${`job:${runId}`}`;
    assert.equal(audited.length, 1, 'one audit row for the run');
    // The routed channel ended on both sides.
    await waitFor(() => a.channels.openCount === 0 && b.channels.openCount === 0, 5_000, 'no channel left');

    // A run B runs, cancelled through A: the cancel reaches B over the bus, both hosts are killed.
    const long = await apiB.request<{ run: JobRunView }>('POST', '/jobs/runs', {
      command: { argv: ['/bin/sh', '-c', 'echo first; exec sleep 120'] },
      target: { hostIds: [onA, onB] },
    });
    assert.equal(long.status, 201, JSON.stringify(long.body));
    const longId = long.body.run.id;
    const running = (hostId: string) =>
      heardOnA.some(
        (e) =>
          e.type === 'job.host' &&
          e.runId === longId &&
          e.host.hostId === hostId &&
          e.host.status === 'running',
      );
    await waitFor(() => running(onA) && running(onB), 15_000, 'both hosts running');
    const printed = (hostId: string) =>
      heardOnA.some((e) => e.type === 'job.output' && e.runId === longId && e.hostId === hostId);
    await waitFor(() => printed(onA) && printed(onB), 15_000, "both hosts' first line heard on A");
    // A live view opened through A starts with the output so far, as one on B does.
    const midRun = await apiA.get<{ hosts: JobHostView[] }>(`/jobs/runs/${longId}`);
    assert.deepEqual(
      midRun.body.hosts.map((h) => [h.status, h.stdout, h.stdoutBytes]),
      [
        ['running', 'first\n', 6],
        ['running', 'first\n', 6],
      ],
    );
    const cancelled = await apiA.request<{ run: JobRunView }>('POST', `/jobs/runs/${longId}/cancel`);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.run.status, 'cancelled');
    const afterCancel = await apiA.get<{ hosts: JobHostView[] }>(`/jobs/runs/${longId}`);
    assert.deepEqual(
      afterCancel.body.hosts.map((h) => h.status),
      ['cancelled', 'cancelled'],
    );
    const cancelAudit = await sql`
      select 1 from audit_log where action = 'job.cancel' and target = ${`job:${longId}`}`;
    assert.equal(cancelAudit.length, 1);
    await waitFor(() => a.channels.openCount === 0 && b.channels.openCount === 0, 5_000, 'no channel left');

    // A schedule on both replicas' hosts: both schedulers tick; whichever claims a slot runs it on both.
    const made = await apiA.request<{ schedule: { id: string } }>('POST', '/jobs/schedules', {
      name: 'both replicas',
      command: { argv: ['/bin/echo', 'scheduled'] },
      target: { hostIds: [onA, onB] },
      cron: '*/2 * * * * *',
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const scheduleId = made.body.schedule.id;
    const runs = await waitFor(
      async () => {
        const rows = await sql<{ id: string; status: string }[]>`
          select id, status from job_runs where schedule_id = ${scheduleId}
            and status in ('succeeded', 'failed') order by started_at`;
        return rows.length >= 2 ? rows : null;
      },
      30_000,
      'two scheduled runs ended',
    );
    const off = await apiA.request('PATCH', `/jobs/schedules/${scheduleId}`, { enabled: false });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    for (const run of runs.slice(0, 2)) {
      const hosts = await sql<{ host_name: string; status: string; stdout: Buffer | null }[]>`
        select host_name, status, stdout from job_run_hosts where run_id = ${run.id} order by host_name`;
      assert.deepEqual(
        hosts.map((h) => [h.host_name, h.status, h.stdout?.toString()]),
        [
          ['on-a', 'succeeded', 'scheduled\n'],
          ['on-b', 'succeeded', 'scheduled\n'],
        ],
        `scheduled run ${run.id}`,
      );
      assert.equal(run.status, 'succeeded');
    }

    // B without its broker: a host online on A is not called offline as if it were down anywhere.
    await b.bus.close();
    const cutOff = await apiB.request<{ run: JobRunView }>('POST', '/jobs/runs', {
      command: { argv: ['/bin/true'] },
      target: { hostIds: [onA] },
    });
    assert.equal(cutOff.status, 201, JSON.stringify(cutOff.body));
    const cutOffEnd = await waitFor(() => b.services.jobs.wait(cutOff.body.run.id), 30_000, 'the run ends');
    assert.equal(cutOffEnd.status, 'failed');
    const [cutOffHost] = (await apiB.get<{ hosts: JobHostView[] }>(`/jobs/runs/${cutOff.body.run.id}`)).body
      .hosts;
    assert.equal(cutOffHost?.status, 'offline');
    assert.equal(cutOffHost?.error, ON_UNREACHABLE_REPLICA);
    const ticket = await apiB.request<{ error: { code: string; message: string } }>(
      'POST',
      `/hosts/${onA}/channels`,
      { kind: 'terminal', params: { cols: 80, rows: 24 } },
    );
    assert.equal(ticket.status, 409);
    assert.equal(ticket.body.error.code, 'host.offline');
    assert.match(
      ticket.body.error.message,
      /online on another controller replica, which this one cannot reach now/,
    );
  },
);
