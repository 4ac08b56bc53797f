// /api/v1/processes: every supervised process on the hosts the caller sees (filters: host, state,
// name) and one action on many processes of many hosts at once; /api/v1/logs/search: substring or
// regex search of stored output across one process, one host or the fleet, streamed as NDJSON.
// Permissions: host.view for the list, process.control for actions (each host checked again),
// logs.read for search (only hosts the caller may read logs of are searched).
import { createRoute, z } from '@hono/zod-openapi';
import { PROCESS_NAME_PATTERN, processStates } from '@keel/shared';
import type { FleetProcessesService } from '../services/fleet-processes.ts';
import { MAX_BULK_TARGETS } from '../services/fleet-processes.ts';
import type { LogSearchService } from '../services/log-search.ts';
import { MAX_MATCHES, MAX_PATTERN, MAX_SECONDS } from '../services/log-search.ts';
import type { LogRetentionService } from '../services/log-retention.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const errorSchema = z.object({ code: z.string(), message: z.string() }).nullable();

const listRoute = createRoute({
  method: 'get',
  path: '/processes',
  middleware: [permit('host.view')] as const,
  tags: ['processes'],
  summary: 'Every process on the hosts you see',
  description:
    'Stored definitions with live state from each online host (asked in parallel). `hosts` says which hosts were asked and why one gave no live state.',
  security: cookieSecurity,
  request: {
    query: z.object({
      hostId: z
        .union([z.uuid(), z.array(z.uuid()).max(1000)])
        .optional()
        .openapi({ description: 'Only these hosts (repeat the parameter for several).' }),
      state: z.enum([...processStates, 'unknown']).optional(),
      name: z.string().min(1).max(100).optional().openapi({ description: 'Names containing this text.' }),
    }),
  },
  responses: {
    200: {
      description: 'The processes, by host name then process name.',
      content: {
        'application/json': {
          schema: z.object({
            processes: z.array(
              z
                .object({
                  hostId: z.string(),
                  hostName: z.string(),
                  online: z.boolean(),
                  name: z.string(),
                  spec: z.record(z.string(), z.unknown()),
                  status: z.record(z.string(), z.unknown()).nullable(),
                  updatedAt: z.string().nullable(),
                })
                .openapi('FleetProcess'),
            ),
            hosts: z.array(
              z.object({ id: z.string(), name: z.string(), online: z.boolean(), error: errorSchema }),
            ),
          }),
        },
      },
    },
    400: errorResponse('Malformed filter (`request.invalid`).'),
    ...authErrors,
  },
});

const actionRoute = createRoute({
  method: 'post',
  path: '/processes/actions',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Start, stop, restart or kill many processes on many hosts (operator)',
  description: `Each target (host + process name) is carried out as its one-host route would (permission, audit), hosts in parallel; one failing target never stops the others. Give \`targets\`, or \`name\` with \`hostIds\` (the same process name on several hosts). At most ${MAX_BULK_TARGETS} targets.`,
  security: cookieSecurity,
  request: {
    body: {
      content: {
        'application/json': {
          schema: z.object({
            action: z.enum(['start', 'stop', 'restart', 'kill']),
            targets: z
              .array(z.object({ hostId: z.uuid(), name: z.string().regex(PROCESS_NAME_PATTERN) }))
              .max(MAX_BULK_TARGETS)
              .optional(),
            name: z.string().regex(PROCESS_NAME_PATTERN).optional(),
            hostIds: z.array(z.uuid()).max(MAX_BULK_TARGETS).optional(),
          }),
        },
      },
      required: true,
    },
  },
  responses: {
    200: {
      description: 'One result per target, in the order given (duplicates once).',
      content: {
        'application/json': {
          schema: z.object({
            results: z.array(
              z.object({
                hostId: z.string(),
                name: z.string(),
                ok: z.boolean(),
                state: z.string().nullable(),
                error: errorSchema,
              }),
            ),
          }),
        },
      },
    },
    400: errorResponse('No targets, too many, or malformed (`request.invalid`).'),
    ...authErrors,
  },
});

const searchRoute = createRoute({
  method: 'get',
  path: '/logs/search',
  middleware: [permit('logs.read')] as const,
  tags: ['processes'],
  summary: 'Search stored process output across the fleet (streamed NDJSON)',
  description: `One JSON object per line, sent as found: \`{"type":"match",hostId,hostName,process,seq,ts,stream,text,cut,ranges}\` (ranges: [start,end) of each hit in text), \`{"type":"host",…}\` when a host is done, and last \`{"type":"end",matches,scannedLines,readRecords,hosts,reason,elapsedMs}\` (reason: done, limit, time, pattern-too-slow, cancelled). At most ${MAX_MATCHES} matches and ${MAX_SECONDS} s; a regex runs in a worker with a time bound per batch of lines. Only hosts you may read logs of are searched.`,
  security: cookieSecurity,
  request: {
    query: z.object({
      q: z.string().min(1).max(MAX_PATTERN),
      regex: z.enum(['true', 'false']).default('false'),
      caseSensitive: z.enum(['true', 'false']).default('false'),
      hostId: z.uuid().optional(),
      process: z.string().regex(PROCESS_NAME_PATTERN).optional(),
      stream: z.enum(['stdout', 'stderr', 'both']).default('both'),
      since: z.coerce.number().int().min(0).optional().openapi({ type: 'integer', description: 'epoch ms' }),
      until: z.coerce.number().int().min(0).optional().openapi({ type: 'integer', description: 'epoch ms' }),
      limit: z.coerce
        .number()
        .int()
        .min(1)
        .max(MAX_MATCHES)
        .default(500)
        .openapi({ type: 'integer', minimum: 1, maximum: MAX_MATCHES, default: 500 }),
      maxSeconds: z.coerce
        .number()
        .int()
        .min(1)
        .max(MAX_SECONDS)
        .default(30)
        .openapi({ type: 'integer', minimum: 1, maximum: MAX_SECONDS, default: 30 }),
    }),
  },
  responses: {
    200: { description: 'NDJSON events.', content: { 'application/x-ndjson': { schema: z.string() } } },
    400: errorResponse('Malformed query or pattern (`request.invalid`, `search.invalid_pattern`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
    429: errorResponse(
      'As many searches as the controller runs at once are running (`search.busy`, with Retry-After).',
    ),
  },
});

const retentionParams = z.object({
  id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }),
  name: z
    .string()
    .regex(PROCESS_NAME_PATTERN)
    .openapi({ param: { name: 'name', in: 'path' }, example: 'web' }),
});
const retentionLimits = z.object({
  maxAgeDays: z.number().int().min(1).max(36_500).nullable(),
  maxBytes: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 50)
    .nullable(),
});
const retentionBody = z
  .object({ set: retentionLimits, effective: z.object({ maxAgeDays: z.number(), maxBytes: z.number() }) })
  .openapi('LogRetention');

const getRetentionRoute = createRoute({
  method: 'get',
  path: '/hosts/{id}/processes/{name}/log-retention',
  middleware: [permit('logs.read')] as const,
  tags: ['processes'],
  summary: "A process's log retention (age and size)",
  security: cookieSecurity,
  request: { params: retentionParams },
  responses: {
    200: {
      description: 'As set (null: the default) and in force.',
      content: { 'application/json': { schema: retentionBody } },
    },
    400: errorResponse('Malformed id or name (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const setRetentionRoute = createRoute({
  method: 'put',
  path: '/hosts/{id}/processes/{name}/log-retention',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: "Set a process's log retention (operator)",
  description:
    "Lines older than `maxAgeDays`, and beyond the newest `maxBytes` of the process's output, are removed by the retention job (KEEL_LOG_RETENTION_INTERVAL_SECONDS). null: the default (KEEL_LOG_RETENTION_DAYS, KEEL_LOG_RETENTION_BYTES).",
  security: cookieSecurity,
  request: {
    params: retentionParams,
    body: { content: { 'application/json': { schema: retentionLimits } }, required: true },
  },
  responses: {
    200: { description: 'Set.', content: { 'application/json': { schema: retentionBody } } },
    400: errorResponse('Malformed limits (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

/** Fleet process and log search routes, mounted at the API root. */
export function fleetProcessRoutes({
  fleet,
  logSearch,
  logRetention,
}: {
  fleet: FleetProcessesService;
  logSearch: LogSearchService;
  logRetention: LogRetentionService;
}) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(getRetentionRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      return c.json(await logRetention.get(actor(c), id, name), 200);
    })
    .openapi(setRetentionRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      return c.json(await logRetention.set(actor(c), id, name, c.req.valid('json')), 200);
    })
    .openapi(listRoute, async (c) => {
      const q = c.req.valid('query');
      const hostIds = q.hostId === undefined ? undefined : Array.isArray(q.hostId) ? q.hostId : [q.hostId];
      const result = await fleet.list(actor(c), { hostIds, state: q.state, name: q.name });
      return c.json(result as unknown as { processes: never[]; hosts: typeof result.hosts }, 200);
    })
    .openapi(actionRoute, async (c) => {
      const body = c.req.valid('json');
      const targets = [
        ...(body.targets ?? []),
        ...(body.name ? (body.hostIds ?? []).map((hostId) => ({ hostId, name: body.name! })) : []),
      ];
      return c.json({ results: await fleet.act(actor(c), body.action, targets) }, 200);
    })
    .openapi(searchRoute, async (c) => {
      const q = c.req.valid('query');
      const abort = new AbortController();
      c.req.raw.signal?.addEventListener('abort', () => abort.abort(), { once: true });
      // Access and the pattern are checked before the answer starts, so a refusal is a JSON error.
      const events = await logSearch.start(
        actor(c),
        { ...q, regex: q.regex === 'true', caseSensitive: q.caseSensitive === 'true' },
        abort.signal,
      );
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = await events.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(`${JSON.stringify(next.value)}\n`));
        },
        async cancel() {
          // The client went away: stop scanning (and end a regex worker) at once.
          abort.abort();
          await events.return(undefined);
        },
      });
      // A stream is a valid body; the declared answer (NDJSON text) is what the client reads.
      return c.body(body, 200, {
        'content-type': 'application/x-ndjson; charset=utf-8',
        'x-content-type-options': 'nosniff',
      }) as never;
    });
}
