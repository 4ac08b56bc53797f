// /api/v1/hosts: the fleet list, one host, its event history, and operator actions.
import { createRoute, z } from '@hono/zod-openapi';
import { hostFactsSchema } from '@keel/shared';
import type { HostsService } from '../services/hosts.ts';
import type { HostEventsReader } from '../services/host-events.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';
import { hasHostPermission, hostPermissions, permissions as permissionList } from '../services/access.ts';

// The shared schema was built before zod-openapi extended zod, so it has no `.openapi()`; a new
// object over the same shape does, and validates identically.
export const hostFactsApiSchema = z.object(hostFactsSchema.shape).openapi('HostFacts');

export const hostCapabilitiesSchema = z
  .object({
    agentVersion: z
      .string()
      .nullable()
      .openapi({ description: 'As announced; null when the agent announced nothing.' }),
    requests: z
      .array(z.string())
      .openapi({ description: 'Agent requests it serves (`ping`, `facts.refresh`, …).' }),
    streams: z.array(z.string()).openapi({ description: 'Streams it sends (`events`, …).' }),
    channels: z.array(z.string()).openapi({ description: 'Live channel kinds it opens (`echo`, …).' }),
    announced: z.boolean().openapi({
      description:
        'False for an agent that announces nothing (0.1.0): the lists are the baseline it is assumed to serve.',
    }),
  })
  .openapi('HostCapabilities', {
    description: "What the host's agent supports, from its live session; null while it is not connected.",
  });

export const hostSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    online: z.boolean(),
    connectedAt: z.iso.datetime().nullable(),
    lastSeenAt: z.iso.datetime().nullable(),
    enrolledAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().nullable(),
    agentVersion: z.string().nullable(),
    // A union rather than .nullable(): the generator drops nullability on a referenced schema.
    facts: z.union([hostFactsApiSchema, z.null()]),
    capabilities: z.union([hostCapabilitiesSchema, z.null()]),
  })
  .openapi('Host');

const hostBody = z.object({ host: hostSchema });
/** One host with what the caller may do on it, so the console offers only the actions the API allows. */
const hostDetailBody = z.object({
  host: hostSchema,
  permissions: z
    .array(z.string())
    .describe(
      "The caller's permissions on this host (host.operate: ping and refresh, host.manage: revoke, …).",
    ),
});
const notFound = errorResponse('No such host (`host.not_found`).');

const listRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('host.view')] as const,
  tags: ['hosts'],
  summary: 'Every enrolled host',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'The fleet.',
      content: { 'application/json': { schema: z.object({ hosts: z.array(hostSchema) }) } },
    },
    401: authErrors[401],
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/{id}',
  middleware: [permit('host.view')] as const,
  tags: ['hosts'],
  summary: 'One host',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: { description: 'The host.', content: { 'application/json': { schema: hostDetailBody } } },
    400: errorResponse('Malformed id (`request.invalid`).'),
    401: authErrors[401],
    404: notFound,
  },
});

const agentErrors = {
  409: errorResponse(
    'The host is revoked (`host.revoked`), or its agent does not serve this request (`agent.unsupported`, naming the agent version needed).',
  ),
  502: errorResponse(
    'The agent failed or disconnected (`request.failed`, `request.disconnected`), or answered with a malformed result (`agent.bad_result`; nothing is stored).',
  ),
  504: errorResponse('No answer within 10 s (`request.deadline_exceeded`).'),
} as const;

const revokeRoute = createRoute({
  method: 'post',
  path: '/{id}/revoke',
  tags: ['hosts'],
  summary: 'Revoke a host (admin)',
  description: "The host's key can no longer connect; its live session is closed at once.",
  security: cookieSecurity,
  middleware: [permit('host.manage')] as const,
  request: { params: idParamSchema },
  responses: {
    200: { description: 'The revoked host.', content: { 'application/json': { schema: hostBody } } },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: notFound,
  },
});

const pingRoute = createRoute({
  method: 'post',
  path: '/{id}/ping',
  tags: ['hosts'],
  summary: 'Round trip to the agent (operator)',
  security: cookieSecurity,
  middleware: [permit('host.operate')] as const,
  request: { params: idParamSchema },
  responses: {
    200: {
      description: 'The agent answered.',
      content: {
        'application/json': {
          schema: z.object({
            rttMs: z.number().openapi({ description: 'Round trip through the controller, in ms.' }),
            agentTime: z.number().openapi({ description: "The agent's clock when it answered (epoch ms)." }),
          }),
        },
      },
    },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: notFound,
    ...agentErrors,
  },
});

const refreshFactsRoute = createRoute({
  method: 'post',
  path: '/{id}/refresh-facts',
  tags: ['hosts'],
  summary: 'Ask the agent for fresh facts (operator)',
  security: cookieSecurity,
  middleware: [permit('host.operate')] as const,
  request: { params: idParamSchema },
  responses: {
    200: {
      description: 'The host with its new facts.',
      content: { 'application/json': { schema: hostBody } },
    },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: notFound,
    ...agentErrors,
  },
});

const hostEventSchema = z
  .object({
    seq: z.number().int(),
    ts: z.number().openapi({ description: 'When the agent recorded it (epoch ms).' }),
    kind: z.string(),
    data: z.record(z.string(), z.unknown()),
  })
  .openapi('HostEvent');

const gapSchema = z
  .object({
    fromSeq: z.number().int(),
    toSeq: z.number().int(),
    reason: z.enum(['lost', 'restart']).openapi({
      description:
        "`lost`: records the agent numbered and lost (e.g. its spool overflowed). `restart`: the agent's numbering went backwards (its spool was wiped or restored from an older copy); this one seq holds no record, the records after it are the new run, and what the old spool had not delivered is unknown.",
    }),
    at: z.iso.datetime().openapi({ description: 'When the controller noticed the gap.' }),
  })
  .openapi('StreamGap');

const eventsRoute = createRoute({
  method: 'get',
  path: '/{id}/events',
  middleware: [permit('host.view')] as const,
  tags: ['hosts'],
  summary: "A host's event stream",
  description:
    'Events with `seq > after` (or the newest `tail` events), oldest first, and the gaps (records the agent lost, or a restart of its numbering) in that range.',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    query: z.object({
      after: z.coerce
        .number()
        .int()
        .min(0)
        .default(0)
        .openapi({ type: 'integer', minimum: 0, default: 0, description: 'Return events with seq > after.' }),
      limit: z.coerce.number().int().min(1).max(1000).default(200).openapi({
        type: 'integer',
        minimum: 1,
        maximum: 1000,
        default: 200,
        description: 'At most this many events.',
      }),
      tail: z.coerce.number().int().min(1).max(1000).optional().openapi({
        type: 'integer',
        minimum: 1,
        maximum: 1000,
        description: 'Instead of `after`: the newest `tail` events (what a console shows first).',
      }),
    }),
  },
  responses: {
    200: {
      description: 'The events.',
      content: {
        'application/json': {
          schema: z.object({ events: z.array(hostEventSchema), gaps: z.array(gapSchema) }),
        },
      },
    },
    400: errorResponse('Malformed id or query (`request.invalid`).'),
    401: authErrors[401],
    404: notFound,
  },
});

export interface HostRoutesDeps {
  hosts: HostsService;
  events: HostEventsReader;
}

/** Host routes (behind the session and CSRF middleware). */
export function hostRoutes({ hosts, events }: HostRoutesDeps) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({
    id: sessionOf(c).user.id,
    ip: c.get('clientIp'),
    access: sessionOf(c).actor,
  });
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ hosts: await hosts.list(actor(c)) }, 200))
    .openapi(getRoute, async (c) => {
      const { id } = c.req.valid('param');
      const host = await hosts.get(id, actor(c));
      const access = sessionOf(c).actor;
      const permissions = permissionList.filter(
        (p) => hostPermissions.has(p) && hasHostPermission(access, p, id),
      );
      return c.json({ host, permissions }, 200);
    })
    .openapi(revokeRoute, async (c) =>
      c.json({ host: await hosts.revoke(c.req.valid('param').id, actor(c)) }, 200),
    )
    .openapi(pingRoute, async (c) => c.json(await hosts.ping(c.req.valid('param').id, actor(c)), 200))
    .openapi(refreshFactsRoute, async (c) =>
      c.json({ host: await hosts.refreshFacts(c.req.valid('param').id, actor(c)) }, 200),
    )
    .openapi(eventsRoute, async (c) => {
      const { id } = c.req.valid('param');
      const { after, limit, tail } = c.req.valid('query');
      await hosts.get(id, actor(c));
      return c.json(await (tail ? events.tail(id, tail) : events.read(id, after, limit)), 200);
    });
}
