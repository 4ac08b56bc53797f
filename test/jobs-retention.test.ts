// Proves job history retention on a real (embedded) database: runs older than KEEL_JOB_HISTORY_DAYS
// go, each schedule keeps only its newest KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE runs, a run still
// running is never deleted, per-host rows go with their run, and bad settings are refused by name.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Controller } from '../controller/src/server.ts';
import { createJobsRepository } from '../controller/src/repositories/jobs.ts';
import { jobHistoryFromEnv } from '../controller/src/services/schedules.ts';
import { removeDir, startTestController } from './helpers/fleet.ts';

let ctl: Controller & { dataDir: string };
const DAY = 86_400_000;

before(async () => {
  // The schedules service reads its retention from the environment when the controller starts.
  process.env.KEEL_JOB_HISTORY_DAYS = '30';
  process.env.KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE = '3';
  ctl = await startTestController();
});

after(async () => {
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

test('old runs go, each schedule keeps its newest runs, running ones stay', { timeout: 60_000 }, async () => {
  const jobs = createJobsRepository(ctl.database.db);
  const now = Date.now();
  const command = { argv: ['true'], env: {} };
  const target = { hostIds: [] as string[] };
  const schedule = await jobs.createSchedule({
    id: randomUUID(),
    name: 'retention',
    command,
    target,
    concurrency: 1,
    timeoutSeconds: 60,
    cron: '0 0 1 1 *',
    timezone: 'UTC',
    enabled: false,
    nextRunAt: null,
    ownerId: null,
    createdAt: new Date(now),
    updatedAt: new Date(now),
  });
  const run = async (ageMs: number, status: string, scheduled: boolean) => {
    const at = new Date(now - ageMs);
    const id = randomUUID();
    await jobs.createRun(
      {
        id,
        scheduleId: scheduled ? schedule.id : null,
        scheduledFor: scheduled ? at : null,
        trigger: scheduled ? 'schedule' : 'manual',
        userId: null,
        command,
        target,
        concurrency: 1,
        timeoutSeconds: 60,
        maxOutputBytes: 1024,
        status,
        startedAt: at,
        endedAt: status === 'running' ? null : at,
        heartbeatAt: at,
      },
      [],
    );
    return id;
  };
  // Six finished runs of the schedule, newest first, and one still running from long ago.
  const scheduled = [];
  for (let i = 1; i <= 6; i++) scheduled.push(await run(i * 60_000, 'succeeded', true));
  const stillRunning = await run(40 * DAY, 'running', true);
  const oldManual = await run(40 * DAY, 'failed', false);
  const recentManual = await run(10 * DAY, 'succeeded', false);

  const removed = await ctl.services.schedules.sweepHistory();
  assert.equal(removed, 4); // three of the schedule's six, and the 40-day-old manual run

  const left = new Set((await jobs.listRuns({ limit: 200 })).map((r) => r.id));
  for (const id of scheduled.slice(0, 3)) assert.ok(left.has(id), 'the newest three stay');
  for (const id of scheduled.slice(3)) assert.ok(!left.has(id), 'older ones go');
  assert.ok(left.has(stillRunning), 'a running run is never deleted');
  assert.ok(!left.has(oldManual));
  assert.ok(left.has(recentManual));
  // A second sweep finds nothing more.
  assert.equal(await ctl.services.schedules.sweepHistory(), 0);
});

test('retention settings: defaults, 0 turns a limit off, bad values are refused by name', () => {
  assert.deepEqual(jobHistoryFromEnv({}), { days: 90, runsPerSchedule: 1000 });
  assert.deepEqual(
    jobHistoryFromEnv({ KEEL_JOB_HISTORY_DAYS: '0', KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE: '0' }),
    {
      days: 0,
      runsPerSchedule: 0,
    },
  );
  assert.throws(() => jobHistoryFromEnv({ KEEL_JOB_HISTORY_DAYS: 'forever' }), /KEEL_JOB_HISTORY_DAYS/);
  assert.throws(
    () => jobHistoryFromEnv({ KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE: '-1' }),
    /KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE/,
  );
});
