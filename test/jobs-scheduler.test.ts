// Proves the job scheduler against a controlled clock, with a real controller, database and agent:
// a schedule fires at its time in its time zone (not a second early) and its failure publishes the
// `job.failed` hook; a late tick catches up so that every slot it passed gets exactly one run row;
// slots past the catch-up bound (a long outage) become one visible missed row, the rest still run;
// each host's last result survives skipped slots; a failed run notifies the schedule's
// notification channel (a webhook here) once; a PATCH changes
// only what it sends; a replica holding none of the target's hosts leaves a slot to the one that holds it for
// HOLDER_GRACE_MS, then claims it itself; two schedulers ticking at once claim each slot once; a
// slot whose row a killed controller wrote before moving the claim keeps that one row.
// Each scheduler here is a second instance of the real service on the controller's database, with
// its own clock, set years ahead so that the controller's own scheduler (real clock) never finds
// these schedules due.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pino from 'pino';
import type { FleetEvent } from '../controller/src/bus/index.ts';
import { createGroupsRepository } from '../controller/src/repositories/groups.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { createJobsRepository } from '../controller/src/repositories/jobs.ts';
import { createUsersRepository } from '../controller/src/repositories/users.ts';
import type { Actor } from '../controller/src/services/access.ts';
import { createActorResolver } from '../controller/src/services/groups.ts';
import {
  createSchedulesService,
  HOLDER_GRACE_MS,
  MISSED_AFTER_MS,
  type SchedulesService,
} from '../controller/src/services/schedules.ts';
import {
  kill,
  removeDir,
  startFleet,
  waitFor,
  type Fleet,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
let fleet: Fleet<TestController>;
let actor: Actor;
const events: FleetEvent[] = [];
/** A webhook receiver standing in for the on-call's endpoint (a notification channel). */
let hookServer: Server;
const hooks: { headers: Record<string, unknown>; body: Record<string, unknown> }[] = [];

/** A scheduler on the controller's database whose clock the test sets. */
function scheduler(opts: { holdsHosts: boolean }) {
  const db = fleet.ctl.database.db;
  const groups = createGroupsRepository(db);
  const clock = { now: new Date(0) };
  const service = createSchedulesService({
    jobs: createJobsRepository(db),
    runs: fleet.ctl.services.jobs,
    users: createUsersRepository(db),
    resolveActor: createActorResolver(groups),
    groups,
    hosts: createHostRepository(db),
    // Whether this replica holds the host's link is the test's to say: under load the real link
    // may be re-established at the moment of a tick, which is not what these tests are about.
    isOnline: () => opts.holdsHosts,
    audit: fleet.ctl.services.audit,
    // Channels are checked here; the failure hook itself runs in the controller's own scheduler
    // service (started, on the bus), so each failure is told once.
    notifications: fleet.ctl.services.notifications,
    log: pino({ level: 'silent' }),
    now: () => clock.now,
    history: { days: 0, runsPerSchedule: 0 },
  });
  return { service, clock, at: (iso: string) => (clock.now = new Date(iso)) };
}

const runsOf = async (scheduleId: string) =>
  (await fleet.ctl.services.jobs.list(actor, { scheduleId, limit: 500 })).sort((a, b) =>
    a.scheduledFor!.localeCompare(b.scheduledFor!),
  );
const nextRunAt = async (s: SchedulesService, id: string) => (await s.get(actor, id)).nextRunAt;

before(async () => {
  fleet = await startFleet(procs, dirs, { name: 'sched-host' });
  fleet.ctl.bus.subscribe((e) => events.push(e));
  const db = fleet.ctl.database.db;
  const admin = await createUsersRepository(db).findByUsername(fleet.ctl.firstAdmin!.username);
  actor = await createActorResolver(createGroupsRepository(db))(admin!);
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      hooks.push({ headers: req.headers, body: JSON.parse(body) as Record<string, unknown> });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
});

after(async () => {
  hookServer?.close();
  for (const p of procs) await kill(p);
  await fleet?.ctl.close();
  for (const d of dirs) removeDir(d);
});

test(
  'a schedule fires at its time in its time zone; its failure raises job.failed and notifies its channel',
  { timeout: 60_000 },
  async () => {
    const { service, at } = scheduler({ holdsHosts: true });
    const channel = await fleet.ctl.services.notifications.create(actor, {
      name: 'on-call hook',
      kind: 'webhook',
      config: { url: `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook` },
    });
    // An unknown channel is refused by name.
    await assert.rejects(
      service.create(actor, {
        name: 'x',
        command: { argv: ['true'] },
        target: { hostIds: [fleet.hostId] },
        cron: '0 3 * * *',
        notifyChannelIds: ['00000000-0000-4000-8000-000000000000'],
      }),
      /no notification channel 00000000-0000-4000-8000-000000000000/,
    );
    // 03:00 in Berlin is 02:00 UTC in March (CET, UTC+1).
    at('2031-03-01T01:59:58.000Z');
    const s = await service.create(actor, {
      name: 'nightly check',
      command: { argv: ['/bin/sh', '-c', 'echo checking; exit 4'] },
      target: { hostIds: [fleet.hostId] },
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      notifyChannelIds: [channel.id],
    });
    assert.deepEqual(s.notifyChannelIds, [channel.id]);
    assert.equal(s.nextRunAt, '2031-03-01T02:00:00.000Z');
    at('2031-03-01T01:59:59.900Z');
    await service.tick();
    assert.equal((await runsOf(s.id)).length, 0, 'nothing before its time');
    at('2031-03-01T02:00:00.400Z');
    await service.tick();
    const runs = await runsOf(s.id);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.scheduledFor, '2031-03-01T02:00:00.000Z');
    assert.equal(runs[0]!.trigger, 'schedule');
    const ended = await fleet.ctl.services.jobs.wait(runs[0]!.id);
    assert.equal(ended?.status, 'failed');
    const detail = await fleet.ctl.services.jobs.get(actor, runs[0]!.id);
    assert.equal(detail.hosts[0]!.exitCode, 4);
    assert.equal(detail.hosts[0]!.stdout, 'checking\n');
    const hook = events.find((e) => e.type === 'job.failed' && e.runId === runs[0]!.id);
    assert.ok(hook && hook.type === 'job.failed', 'job.failed published');
    assert.equal(hook.scheduleId, s.id);
    assert.equal(hook.scheduleName, 'nightly check');
    assert.deepEqual(
      hook.failedHosts.map((h) => [h.hostName, h.status, h.exitCode]),
      [['sched-host', 'failed', 4]],
    );
    assert.equal(await nextRunAt(service, s.id), '2031-03-02T02:00:00.000Z');
    // The controller's own scheduler service (subscribed to the bus) told the channel, once.
    const told = await waitFor(
      () => hooks.find((h) => (h.body.alert as { subject?: string }).subject === `schedule:${s.id}`),
      30_000,
      'the webhook notification',
    );
    const alert = told.body.alert as Record<string, unknown>;
    assert.equal(told.body.event, 'firing');
    assert.deepEqual(alert.rule, {
      id: s.id,
      name: 'nightly check',
      kind: 'job_failed',
      severity: 'warning',
    });
    assert.equal(alert.hostName, 'sched-host');
    assert.equal(alert.summary, 'Scheduled job "nightly check" failed on 1 of 1 hosts: sched-host (exit 4).');
    assert.match(String(told.body.url), new RegExp(`/jobs\\?run=${runs[0]!.id}$`));
    // A second tick in the same second does not fire it again.
    await service.tick();
    assert.equal((await runsOf(s.id)).length, 1);
    // A PATCH changes only what it sends (it once reset the time zone, concurrency and timeout).
    const off = await service.update(actor, s.id, { enabled: false });
    assert.equal(off.timezone, 'Europe/Berlin');
    assert.deepEqual(off.notifyChannelIds, [channel.id]);
    assert.equal(off.nextRunAt, null);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(
      hooks.filter((h) => (h.body.alert as { subject?: string }).subject === `schedule:${s.id}`).length,
      1,
    );
    await service.remove(actor, s.id);
  },
);

test(
  'a late tick catches up: every slot it passed gets exactly one run row',
  { timeout: 60_000 },
  async () => {
    const { service, at } = scheduler({ holdsHosts: true });
    at('2031-04-01T00:00:00.200Z');
    const s = await service.create(actor, {
      name: 'every second',
      command: { argv: ['sleep', '3'] },
      target: { hostIds: [fleet.hostId] },
      cron: '* * * * * *',
    });
    assert.equal(s.nextRunAt, '2031-04-01T00:00:01.000Z');
    // The tick comes 3.5 s late (a stalled event loop, a busy machine): slots 1 to 4 are due.
    at('2031-04-01T00:00:04.500Z');
    await service.tick();
    const runs = await runsOf(s.id);
    assert.deepEqual(
      runs.map((r) => r.scheduledFor),
      ['01', '02', '03', '04'].map((x) => `2031-04-01T00:00:${x}.000Z`),
    );
    // The first slot runs; the others find it still running and are recorded as skipped.
    assert.equal(runs[0]!.status, 'running');
    for (const r of runs.slice(1)) {
      assert.equal(r.status, 'skipped');
      assert.equal(r.note, 'the previous run was still running');
    }
    assert.equal(await nextRunAt(service, s.id), '2031-04-01T00:00:05.000Z');
    assert.equal((await fleet.ctl.services.jobs.wait(runs[0]!.id))?.status, 'succeeded');
    // The last run is a skipped slot with no hosts; each host's last result is still there.
    const view = await service.get(actor, s.id);
    assert.equal(view.lastRun?.status, 'skipped');
    assert.deepEqual(
      view.lastResults.map((r) => [r.hostName, r.status, r.exitCode, r.runId]),
      [['sched-host', 'succeeded', 0, runs[0]!.id]],
    );
    await service.remove(actor, s.id);
  },
);

test(
  'slots past the catch-up bound are one visible missed row; the slots within it still run',
  { timeout: 60_000 },
  async () => {
    const { service, at } = scheduler({ holdsHosts: true });
    at('2031-05-01T00:00:30.000Z');
    const s = await service.create(actor, {
      name: 'every minute',
      command: { argv: ['true'] },
      target: { hostIds: [fleet.hostId] },
      cron: '* * * * *',
    });
    assert.equal(s.nextRunAt, '2031-05-01T00:01:00.000Z');
    assert.equal(MISSED_AFTER_MS, 60_000);
    // No controller ticked for ten minutes: 00:01 to 00:09 are more than a minute late, 00:10 is not.
    at('2031-05-01T00:10:30.000Z');
    await service.tick();
    const runs = await runsOf(s.id);
    assert.equal(runs.length, 2, JSON.stringify(runs));
    assert.equal(runs[0]!.scheduledFor, '2031-05-01T00:01:00.000Z');
    assert.equal(runs[0]!.status, 'skipped');
    assert.equal(
      runs[0]!.note,
      'missed 9 slots from 2031-05-01T00:01:00.000Z to 2031-05-01T00:09:00.000Z: no controller ran them within 60 s',
    );
    assert.equal(runs[1]!.scheduledFor, '2031-05-01T00:10:00.000Z');
    assert.equal((await fleet.ctl.services.jobs.wait(runs[1]!.id))?.status, 'succeeded');
    assert.equal(await nextRunAt(service, s.id), '2031-05-01T00:11:00.000Z');

    // A per-second pattern after an hour: the missed row says how many it counted, not 3,540 rows.
    const { service: fast, at: atFast } = scheduler({ holdsHosts: true });
    atFast('2031-05-02T00:00:00.500Z');
    const f = await fast.create(actor, {
      name: 'per second',
      command: { argv: ['true'] },
      target: { hostIds: [fleet.hostId] },
      cron: '* * * * * *',
      enabled: true,
    });
    await fast.update(actor, f.id, { enabled: false });
    atFast('2031-05-02T01:00:00.500Z');
    await fast.update(actor, f.id, { enabled: true }); // enabling starts from now: no backlog
    assert.equal(await nextRunAt(fast, f.id), '2031-05-02T01:00:01.000Z');
    atFast('2031-05-02T02:00:00.500Z');
    await fast.tick();
    const fastRuns = await runsOf(f.id);
    assert.equal(fastRuns[0]!.status, 'skipped');
    assert.match(fastRuns[0]!.note!, /^missed more than 100 slots from 2031-05-02T01:00:01.000Z until /);
    // Then the slots of the last minute, each once (one runs, the rest overlap it or run after it).
    const rest = fastRuns.slice(1).map((r) => r.scheduledFor);
    assert.equal(new Set(rest).size, rest.length);
    assert.equal(rest.length, 60, `${rest.length} slots within the last minute`);
    await fast.update(actor, f.id, { enabled: false });
    for (const r of fastRuns) await fleet.ctl.services.jobs.wait(r.id);
    await service.remove(actor, s.id);
    await fast.remove(actor, f.id);
  },
);

test(
  'replicas: the one holding the host claims the slot; another waits, then claims it; never twice',
  { timeout: 60_000 },
  async () => {
    const holder = scheduler({ holdsHosts: true });
    const other = scheduler({ holdsHosts: false });
    const both = (iso: string) => {
      holder.at(iso);
      other.at(iso);
    };
    both('2031-06-01T00:00:30.000Z');
    const s = await holder.service.create(actor, {
      name: 'replicated',
      command: { argv: ['true'] },
      target: { hostIds: [fleet.hostId] },
      cron: '* * * * *',
    });
    // The other replica ticks first, just after the slot: it leaves the slot to the holder.
    both('2031-06-01T00:01:00.300Z');
    await other.service.tick();
    assert.equal((await runsOf(s.id)).length, 0);
    await holder.service.tick();
    let runs = await runsOf(s.id);
    assert.equal(runs.length, 1);
    await fleet.ctl.services.jobs.wait(runs[0]!.id);
    // The holder does not tick (stalled, or stopped): the other claims once the grace is over.
    both(new Date(Date.parse('2031-06-01T00:02:00.000Z') + HOLDER_GRACE_MS - 500).toISOString());
    await other.service.tick();
    assert.equal((await runsOf(s.id)).length, 1);
    both(new Date(Date.parse('2031-06-01T00:02:00.000Z') + HOLDER_GRACE_MS + 500).toISOString());
    await other.service.tick();
    await holder.service.tick();
    runs = await runsOf(s.id);
    assert.deepEqual(
      runs.map((r) => r.scheduledFor),
      ['2031-06-01T00:01:00.000Z', '2031-06-01T00:02:00.000Z'],
    );
    await fleet.ctl.services.jobs.wait(runs[1]!.id);
    // Three ticks at the same moment with two slots due (00:03 past the catch-up bound, 00:04
    // within it): each slot once.
    both('2031-06-01T00:04:30.000Z');
    await Promise.all([holder.service.tick(), other.service.tick(), holder.service.tick()]);
    runs = await runsOf(s.id);
    assert.deepEqual(
      runs.map((r) => r.scheduledFor),
      ['01', '02', '03', '04'].map((m) => `2031-06-01T00:${m}:00.000Z`),
    );
    assert.equal(runs[2]!.status, 'skipped');
    assert.equal(runs[2]!.note, 'missed: no controller ran the slot at 2031-06-01T00:03:00.000Z within 60 s');
    assert.notEqual(runs[3]!.status, 'skipped');
    await holder.service.update(actor, s.id, { enabled: false });
    for (const r of runs) await fleet.ctl.services.jobs.wait(r.id);
    await holder.service.remove(actor, s.id);
  },
);

test(
  'a controller killed after writing a slot’s row, before its claim: the slot keeps one row',
  { timeout: 60_000 },
  async () => {
    const { service, at } = scheduler({ holdsHosts: true });
    at('2031-07-01T00:00:30.000Z');
    const s = await service.create(actor, {
      name: 'crashed mid-slot',
      command: { argv: ['true'] },
      target: { hostIds: [fleet.hostId] },
      cron: '* * * * *',
    });
    // What the killed controller left: the 00:01 run (marked interrupted by the orphan sweep), and
    // next_run_at still at 00:01.
    const repo = createJobsRepository(fleet.ctl.database.db);
    const left = new Date('2031-07-01T00:01:00.000Z');
    await repo.createRun(
      {
        id: randomUUID(),
        scheduleId: s.id,
        scheduledFor: left,
        trigger: 'schedule',
        userId: actor.id,
        command: { argv: ['true'], env: {} },
        target: { hostIds: [fleet.hostId] },
        concurrency: 1,
        timeoutSeconds: 60,
        maxOutputBytes: 1024,
        status: 'interrupted',
        startedAt: left,
        endedAt: left,
        heartbeatAt: left,
      },
      [],
    );
    at('2031-07-01T00:01:20.000Z');
    await service.tick();
    const runs = await runsOf(s.id);
    assert.deepEqual(
      runs.map((r) => [r.scheduledFor, r.status]),
      [['2031-07-01T00:01:00.000Z', 'interrupted']],
    );
    assert.equal(await nextRunAt(service, s.id), '2031-07-01T00:02:00.000Z');
    await service.remove(actor, s.id);
  },
);
