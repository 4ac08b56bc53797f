// Proves a job host whose start the database refuses to store ends `error` with the reason, stored,
// published and counted as any failed host (before, its row stayed `pending` for ever): one
// controller on PostgreSQL, a real agent, and a trigger on job_run_hosts that fails the start's
// update for that run only (a database failing at that moment).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import postgres from 'postgres';
import type { FleetEvent } from '../controller/src/bus/index.ts';
import { HOST_START_NOT_STORED } from '../controller/src/services/jobs.ts';
import { signedInApi } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startReplicas,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const p of procs) await kill(p);
  for (const c of closers.reverse()) await c().catch(() => {});
  for (const d of dirs) removeDir(d);
});

test(
  'a host whose start cannot be stored ends `error` with the reason, not `pending`',
  { timeout: 60_000 },
  async (t) => {
    const replicas = await startReplicas(t, 'keel_jobs_start');
    if (!replicas) return;
    closers.push(() => replicas.close());
    const ctl = await replicas.start();
    const api = await signedInApi(ctl);
    const dir = await enrollNewAgent(ctl, 'start-fails');
    dirs.push(dir);
    procs.push(runAgent(dir));
    const hostId = (await ctl.services.hosts.list()).find((h) => h.name === 'start-fails')!.id;
    await waitFor(() => ctl.gateway.isOnline(hostId), 30_000, 'the agent online');

    // The start's update (pending -> running) fails for runs of this command.
    const sql = postgres(replicas.url, { max: 1, onnotice: () => {} });
    closers.push(() => sql.end());
    await sql.unsafe(`
    create function refuse_job_start() returns trigger language plpgsql as $$
    begin
      if new.status = 'running' then raise exception 'the disk is full (test)'; end if;
      return new;
    end $$;
    create trigger refuse_job_start before update on job_run_hosts
      for each row execute function refuse_job_start();`);

    const events: FleetEvent[] = [];
    t.after(ctl.bus.subscribe((e) => events.push(e)));
    const started = await api.post<{ run: { id: string } }>('/jobs/runs', {
      command: { argv: ['/bin/true'] },
      target: { hostIds: [hostId] },
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const runId = started.body.run.id;
    const ended = await waitFor(() => ctl.services.jobs.wait(runId), 15_000, 'the run ends');
    assert.equal(ended.status, 'failed');
    assert.equal(ended.failedCount, 1);

    const detail = await api.get<{
      hosts: { status: string; error: string | null; endedAt: string | null }[];
    }>(`/jobs/runs/${runId}`);
    const [host] = detail.body.hosts;
    assert.equal(host?.status, 'error', JSON.stringify(host));
    assert.equal(host.error, HOST_START_NOT_STORED, 'the reason, not the database message');
    assert.ok(host.endedAt, 'an end time');
    // Published as other host ends are: the host's end, and the run's failure naming it.
    assert.ok(
      events.some((e) => e.type === 'job.host' && e.runId === runId && e.host.status === 'error'),
      'job.host published',
    );
    const failed = events.find((e) => e.type === 'job.failed' && e.runId === runId);
    assert.ok(failed && failed.type === 'job.failed');
    assert.deepEqual(
      failed.failedHosts.map((h) => [h.hostId, h.status, h.error]),
      [[hostId, 'error', HOST_START_NOT_STORED]],
    );
  },
);
