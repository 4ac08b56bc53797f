// /api/v1/jobs: run a command on many hosts (runs: start, list, detail with per-host output,
// cancel, a live Server-Sent Events view) and scheduled jobs (CRUD, run now). Who may: `job.run`,
// and on every host of the selection (services/jobs.ts, services/schedules.ts). See docs/jobs.md.
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import type { FleetBus } from '../bus/index.ts';
import type { AuthService } from '../services/auth.ts';
import type { JobBusEvent, JobsService } from '../services/jobs.ts';
import type { SchedulesService } from '../services/schedules.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const anyObject = z.record(z.string(), z.unknown());
const runBody = z.object({ run: anyObject }).openapi('JobRunBody');
const json = (schema: z.ZodType, description: string) => ({
  description,
  content: { 'application/json': { schema } },
});
const bodyOf = (description: string) => ({
  body: { content: { 'application/json': { schema: anyObject.openapi({ description }) } }, required: true },
});
const common = { tags: ['jobs'], security: cookieSecurity, middleware: [permit('job.run')] };
const invalid = {
  400: errorResponse('Malformed body (`request.invalid`), empty selection (`job.no_hosts`).'),
};
const notFound = (what: string) => ({ 404: errorResponse(`No such ${what}, or a host you may not see.`) });

const startRun = createRoute({
  ...common,
  method: 'post',
  path: '/runs',
  summary: 'Run a command on many hosts',
  description:
    'Body `{ command: { argv, cwd?, env?, user? }, target: { hostIds?, groupId?, tag? }, concurrency?=20, timeoutSeconds?=300, maxOutputBytes?=262144 }`. ' +
    'argv runs as is (no shell); a script runs through an interpreter you name, e.g. `["/bin/sh","-c","…"]`. Answers at once; watch `/runs/{id}/events`.',
  request: bodyOf('The run request.'),
  responses: { 201: json(runBody, 'The run, running.'), ...invalid, ...authErrors, ...notFound('host') },
});
const listRuns = createRoute({
  ...common,
  method: 'get',
  path: '/runs',
  summary: 'Job runs, newest first',
  request: {
    query: z.object({
      scheduleId: z.uuid().optional(),
      before: z.iso.datetime().optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: json(z.object({ runs: z.array(anyObject) }), 'One page of runs.'),
    ...invalid,
    ...authErrors,
  },
});
const getRun = createRoute({
  ...common,
  method: 'get',
  path: '/runs/{id}',
  summary: 'A run with each host’s status, exit code, duration and output',
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ run: anyObject, hosts: z.array(anyObject) }), 'The run.'),
    ...authErrors,
    ...notFound('run (`job.not_found`)'),
  },
});
const cancelRun = createRoute({
  ...common,
  method: 'post',
  path: '/runs/{id}/cancel',
  summary: 'Cancel a run (running hosts have their process group killed)',
  request: { params: idParamSchema },
  responses: {
    200: json(runBody, 'The run, ended.'),
    409: errorResponse('Not running (`job.not_running`).'),
    ...authErrors,
    ...notFound('run (`job.not_found`)'),
  },
});
const runEvents = createRoute({
  ...common,
  method: 'get',
  path: '/runs/{id}/events',
  summary: 'A run, live (Server-Sent Events)',
  description:
    '`event: snapshot` `{run, hosts}` first (output so far, the last 64 KiB per stream of a running host), then ' +
    '`event: output` `{hostId, stream, offset, text}`, `event: host` (a host’s status changed) and `event: run` (the run changed; ends the stream when it ended).',
  request: { params: idParamSchema },
  responses: {
    200: { description: 'An event stream.', content: { 'text/event-stream': { schema: z.string() } } },
    ...authErrors,
    ...notFound('run (`job.not_found`)'),
  },
});
const scheduleBody = z.object({ schedule: anyObject }).openapi('JobScheduleBody');
const listSchedules = createRoute({
  ...common,
  method: 'get',
  path: '/schedules',
  summary: 'Scheduled jobs (with each one’s last run)',
  responses: { 200: json(z.object({ schedules: z.array(anyObject) }), 'The schedules.'), ...authErrors },
});
const createSchedule = createRoute({
  ...common,
  method: 'post',
  path: '/schedules',
  summary: 'Create a scheduled job',
  description:
    'Body `{ name, command, target, cron, timezone?="UTC", concurrency?, timeoutSeconds?, enabled?=true, notifyChannelIds?=[] }`. `cron`: 5 fields, or 6 with seconds first (croner). `notifyChannelIds`: notification channels told when a run fails (needs `monitoring.view`).',
  request: bodyOf('The schedule.'),
  responses: {
    201: json(scheduleBody, 'The schedule.'),
    400: errorResponse('Malformed (`request.invalid`), bad cron or time zone (`schedule.invalid_cron`).'),
    ...authErrors,
    ...notFound('host'),
  },
});
const getSchedule = createRoute({
  ...common,
  method: 'get',
  path: '/schedules/{id}',
  summary: 'A scheduled job',
  request: { params: idParamSchema },
  responses: { 200: json(scheduleBody, 'The schedule.'), ...authErrors, ...notFound('schedule') },
});
const patchSchedule = createRoute({
  ...common,
  method: 'patch',
  path: '/schedules/{id}',
  summary: 'Change a scheduled job (enable/disable, cron, command, target); it then runs with your rights',
  request: { params: idParamSchema, ...bodyOf('Fields to change.') },
  responses: {
    200: json(scheduleBody, 'The schedule.'),
    400: errorResponse('Malformed (`request.invalid`), bad cron (`schedule.invalid_cron`).'),
    ...authErrors,
    ...notFound('schedule'),
  },
});
const deleteSchedule = createRoute({
  ...common,
  method: 'delete',
  path: '/schedules/{id}',
  summary: 'Delete a scheduled job (and its history)',
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...authErrors, ...notFound('schedule') },
});
const runSchedule = createRoute({
  ...common,
  method: 'post',
  path: '/schedules/{id}/run',
  summary: 'Run a scheduled job now',
  request: { params: idParamSchema },
  responses: {
    201: json(runBody, 'The run, running.'),
    400: errorResponse('No hosts (`job.no_hosts`).'),
    ...authErrors,
    ...notFound('schedule'),
  },
});

/** Events queued for one live view before it is dropped. */
const MAX_QUEUED = 2048;

export function jobRoutes({
  jobs,
  schedules,
  bus,
  auth,
}: {
  jobs: JobsService;
  schedules: SchedulesService;
  bus: FleetBus;
  /** Re-reads a live view's access at each heartbeat (a user who loses the run's hosts is cut off). */
  auth: Pick<AuthService, 'currentActor'>;
}) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(
      startRun,
      async (c) => c.json({ run: await jobs.run(actor(c), c.req.valid('json')) }, 201) as never,
    )
    .openapi(listRuns, async (c) => {
      const q = c.req.valid('query');
      const runs = await jobs.list(sessionOf(c).actor, {
        scheduleId: q.scheduleId,
        before: q.before ? new Date(q.before) : undefined,
        limit: q.limit,
      });
      return c.json({ runs }, 200) as never;
    })
    .openapi(
      getRun,
      async (c) => c.json(await jobs.get(sessionOf(c).actor, c.req.valid('param').id), 200) as never,
    )
    .openapi(
      cancelRun,
      async (c) => c.json({ run: await jobs.cancel(actor(c), c.req.valid('param').id) }, 200) as never,
    )
    .openapi(runEvents, async (c) => {
      const id = c.req.valid('param').id;
      const { actor: who, sessionId } = sessionOf(c);
      await jobs.watchable(who, id);
      c.header('x-accel-buffering', 'no');
      return streamSSE(c, async (stream) => {
        const queue: { event: string; data: string }[] = [];
        let done = false;
        let wake: (() => void) | undefined;
        const signal = () => {
          wake?.();
          wake = undefined;
        };
        const unsubscribe = bus.subscribe((e) => {
          const event = e as unknown as JobBusEvent;
          if (done) return;
          let message: { event: string; data: string } | null = null;
          if (event.type === 'job.output' && event.runId === id)
            message = { event: 'output', data: JSON.stringify(event) };
          else if (event.type === 'job.host' && event.runId === id)
            message = { event: 'host', data: JSON.stringify(event.host) };
          else if (event.type === 'job.run' && event.run.id === id)
            message = { event: 'run', data: JSON.stringify(event.run) };
          if (!message) return;
          if (queue.length >= MAX_QUEUED) {
            done = true;
            stream.abort();
            return;
          }
          queue.push(message);
          signal();
        });
        stream.onAbort(() => {
          done = true;
          signal();
        });
        try {
          const snapshot = await jobs.get(who, id);
          await stream.writeSSE({ event: 'snapshot', data: JSON.stringify(snapshot), retry: 3000 });
          let ended = snapshot.run.status !== 'running';
          while (!done && !ended) {
            const next = queue.shift();
            if (!next) {
              await new Promise<void>((resolve) => {
                wake = resolve;
                setTimeout(resolve, 15_000).unref();
              });
              if (queue.length === 0 && !done) {
                // Still allowed to watch this run (session live, the run's hosts still granted)?
                const now = await auth.currentActor(sessionId);
                const allowed = now
                  ? await jobs.watchable(now, id).then(
                      () => true,
                      () => false,
                    )
                  : false;
                if (!allowed) {
                  const reason = now ? 'access.revoked' : 'session.ended';
                  await stream.writeSSE({ event: 'closed', data: JSON.stringify({ reason }) });
                  break;
                }
                await stream.write(': heartbeat\n\n');
              }
              continue;
            }
            await stream.writeSSE(next);
            if (next.event === 'run' && (JSON.parse(next.data) as { status: string }).status !== 'running')
              ended = true;
          }
        } finally {
          unsubscribe();
        }
      });
    })
    .openapi(
      listSchedules,
      async (c) => c.json({ schedules: await schedules.list(sessionOf(c).actor) }, 200) as never,
    )
    .openapi(
      createSchedule,
      async (c) => c.json({ schedule: await schedules.create(actor(c), c.req.valid('json')) }, 201) as never,
    )
    .openapi(
      getSchedule,
      async (c) =>
        c.json({ schedule: await schedules.get(sessionOf(c).actor, c.req.valid('param').id) }, 200) as never,
    )
    .openapi(
      patchSchedule,
      async (c) =>
        c.json(
          { schedule: await schedules.update(actor(c), c.req.valid('param').id, c.req.valid('json')) },
          200,
        ) as never,
    )
    .openapi(deleteSchedule, async (c) => {
      await schedules.remove(actor(c), c.req.valid('param').id);
      return c.body(null, 204) as never;
    })
    .openapi(
      runSchedule,
      async (c) => c.json({ run: await schedules.runNow(actor(c), c.req.valid('param').id) }, 201) as never,
    );
}
