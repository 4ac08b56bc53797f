// Proxy nodes over REST: /api/v1/hosts/:id/proxies (a host's nodes: create, change, delete, push,
// generation history, diff, rollback, drift) and /api/v1/proxies (the fleet's nodes, staged
// rollouts, and a Server-Sent Events stream of changes for the console). host.view reads,
// config.apply changes; the service checks them per host (docs/proxies.md).
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { KeelError, PROCESS_NAME_PATTERN, proxyAdapters } from '@keel/shared';
import type { AuthService } from '../services/auth.ts';
import { canSeeHost, hasPermission } from '../services/access.ts';
import type { ProxyChange, ProxyNodesService } from '../services/proxy-nodes.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { defaultEventStreamOptions } from './events.ts';
import { permit } from './permit.ts';

const errorSchema = z.object({ code: z.string(), message: z.string() });
const settingsSchema = z.record(z.string(), z.unknown()).openapi({
  description: "The adapter's settings (docs/proxies.md; `adapterSettingsSchemas` in @keel/shared).",
});
const publicAddressSchema = z.string().max(253).nullable().optional().openapi({
  description:
    "The DNS name or address users' share links and subscriptions point at (no port); null or absent: the host's name. Not the agent's connect address.",
  example: 'vpn.example.net',
});
const reasonSchema = z
  .string()
  .max(500)
  .optional()
  .openapi({ description: 'Why (kept with the generation).' });

const generationSchema = z
  .object({
    generation: z.number().int(),
    adapter: z.string(),
    settings: settingsSchema,
    userIds: z.array(z.string()),
    files: z.array(z.object({ path: z.string(), sha256: z.string(), content: z.string().optional() })),
    origin: z.string().openapi({ description: '`apply`, `rollback`, `rollout`, `users`, `host-edit`.' }),
    rollbackOf: z.number().int().nullable(),
    actor: z.string(),
    reason: z.string().nullable(),
    outcome: z.enum(['pending', 'applied', 'refused', 'rolled-back', 'failed']),
    method: z.string().nullable(),
    error: errorSchema.nullable(),
    createdAt: z.string(),
    finishedAt: z.string().nullable(),
  })
  .openapi('ConfigGeneration');

const nodeSchema = z
  .object({
    hostId: z.string(),
    hostName: z.string(),
    instance: z.string(),
    adapter: z.string(),
    settings: settingsSchema,
    publicAddress: z.string().nullable(),
    state: z.enum(['pending', 'applied', 'failed']),
    currentGeneration: z.number().int().nullable(),
    lastGeneration: z.number().int(),
    drift: z.array(z.object({ path: z.string(), diff: z.string(), at: z.string() })),
    latest: generationSchema.nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('ProxyNode');

const rolloutSchema = z
  .object({
    id: z.string(),
    adapter: z.string().nullable(),
    settings: settingsSchema.nullable(),
    canary: z.number().int(),
    batchSize: z.number().int(),
    state: z.enum(['running', 'halted', 'completed', 'cancelled']),
    haltReason: z.string().nullable(),
    actor: z.string(),
    reason: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    finishedAt: z.string().nullable(),
    steps: z.array(
      z.object({
        position: z.number().int(),
        stage: z.number().int(),
        hostId: z.string(),
        instance: z.string(),
        state: z.enum(['pending', 'running', 'applied', 'failed', 'interrupted']),
        generation: z.number().int().nullable(),
        error: errorSchema.nullable(),
        startedAt: z.string().nullable(),
        finishedAt: z.string().nullable(),
      }),
    ),
  })
  .openapi('ConfigRollout');

const instanceSchema = z
  .string()
  .regex(PROCESS_NAME_PATTERN)
  .openapi({ param: { name: 'instance', in: 'path' }, example: 'edge' });
const nodeParams = idParamSchema.extend({ instance: instanceSchema });
const generationParams = nodeParams.extend({
  generation: z.coerce
    .number()
    .int()
    .min(1)
    .openapi({ param: { name: 'generation', in: 'path' }, type: 'integer', example: 3 }),
});
const rolloutParams = z.object({
  rolloutId: z.uuid().openapi({ param: { name: 'rolloutId', in: 'path' } }),
});

const agentErrors = {
  404: errorResponse(
    'No such host, node or generation (`host.not_found`, `proxy.node_not_found`, `proxy.generation_not_found`).',
  ),
  409: errorResponse(
    'The host is offline or revoked, a newer generation runs there, or the agent has no configs capability (`host.offline`, `host.revoked`, `config.stale_generation`, `agent.unsupported`, `proxy.node_exists`).',
  ),
  422: errorResponse("The proxy's own check refused the configuration; nothing changed (`config.invalid`)."),
  502: errorResponse(
    'The change failed its health check and was rolled back, or the agent failed (`config.unhealthy`, `config.apply_failed`, `request.failed`).',
  ),
  504: errorResponse('No answer before the deadline (`request.deadline_exceeded`).'),
} as const;

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});

const listHostRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: "A host's proxy nodes",
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ nodes: z.array(nodeSchema) }), 'The nodes.'),
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const createNodeRoute = createRoute({
  method: 'post',
  path: '/{id}/proxies',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: 'Create a proxy node (operator)',
  description:
    'Stores the node with its settings (validated against the adapter schema). With `apply: true` the settings are pushed at once as its first generation.',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    ...body(
      z.object({
        instance: z.string().regex(PROCESS_NAME_PATTERN),
        adapter: z.enum(proxyAdapters),
        settings: settingsSchema,
        publicAddress: publicAddressSchema,
        apply: z.boolean().optional(),
        reason: reasonSchema,
      }),
    ),
  },
  responses: {
    201: json(z.object({ node: nodeSchema, generation: generationSchema.nullable() }), 'Created.'),
    400: errorResponse('Malformed node (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const getNodeRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies/{instance}',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'One proxy node',
  security: cookieSecurity,
  request: { params: nodeParams },
  responses: {
    200: json(z.object({ node: nodeSchema }), 'The node.'),
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const updateNodeRoute = createRoute({
  method: 'put',
  path: '/{id}/proxies/{instance}',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: "Replace a node's settings or public address (operator)",
  description:
    'New `settings` make the node `pending` until pushed; with `apply: true` it is pushed at once. `publicAddress` alone changes only where links and subscriptions point (nothing is pushed).',
  security: cookieSecurity,
  request: {
    params: nodeParams,
    ...body(
      z.object({
        adapter: z.enum(proxyAdapters).optional(),
        settings: settingsSchema.optional(),
        publicAddress: publicAddressSchema,
        apply: z.boolean().optional(),
        reason: reasonSchema,
      }),
    ),
  },
  responses: {
    200: json(z.object({ node: nodeSchema, generation: generationSchema.nullable() }), 'The node.'),
    400: errorResponse('Malformed settings (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const deleteNodeRoute = createRoute({
  method: 'delete',
  path: '/{id}/proxies/{instance}',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: 'Forget a proxy node (operator)',
  description: 'Its generations stay as history; the host keeps running what it has.',
  security: cookieSecurity,
  request: { params: nodeParams },
  responses: {
    204: { description: 'Deleted.' },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const applyRoute = createRoute({
  method: 'post',
  path: '/{id}/proxies/{instance}/apply',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: "Push the node's settings and users as its next generation (operator)",
  description:
    "The agent renders, validates with the proxy's own check, writes atomically, reloads and health-checks, and restores the previous files by itself on any failure. A refused push is stored too (see the generations).",
  security: cookieSecurity,
  request: { params: nodeParams, ...body(z.object({ reason: reasonSchema })) },
  responses: {
    200: json(z.object({ generation: generationSchema }), 'Applied.'),
    400: errorResponse('Malformed request (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const generationsRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies/{instance}/generations',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: "A node's configuration generations, newest first",
  security: cookieSecurity,
  request: {
    params: nodeParams,
    query: z.object({
      before: z.coerce.number().int().min(1).optional().openapi({ type: 'integer' }),
      limit: z.coerce
        .number()
        .int()
        .min(1)
        .max(200)
        .default(50)
        .openapi({ type: 'integer', minimum: 1, maximum: 200, default: 50 }),
    }),
  },
  responses: {
    200: json(z.object({ generations: z.array(generationSchema) }), 'Files without content.'),
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const generationRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies/{instance}/generations/{generation}',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'One generation with its rendered files',
  security: cookieSecurity,
  request: { params: generationParams },
  responses: {
    200: json(z.object({ generation: generationSchema }), 'The generation.'),
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const diffRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies/{instance}/diff',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'What changed between two generations',
  description:
    'One unified diff per rendered file, plus `settings` (the settings as sorted JSON) and `users` (the user ids), so a refused generation (no files) still shows what it would have changed.',
  security: cookieSecurity,
  request: {
    params: nodeParams,
    query: z.object({
      from: z.coerce.number().int().min(1).openapi({ type: 'integer' }),
      to: z.coerce.number().int().min(1).openapi({ type: 'integer' }),
    }),
  },
  responses: {
    200: json(
      z.object({
        from: z.number().int(),
        to: z.number().int(),
        parts: z.array(
          z.object({
            path: z.string(),
            kind: z.enum(['file', 'settings', 'users']),
            status: z.enum(['added', 'removed', 'changed', 'unchanged']),
            diff: z.string(),
          }),
        ),
      }),
      'The diff.',
    ),
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const rollbackRoute = createRoute({
  method: 'post',
  path: '/{id}/proxies/{instance}/rollback',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: "Push an older generation's settings again, as a new generation (operator)",
  description:
    "Generations only go up: the old settings become the next number. Users are the node's users now (a user removed for quota or expiry since stays removed).",
  security: cookieSecurity,
  request: {
    params: nodeParams,
    ...body(z.object({ generation: z.number().int().min(1), reason: reasonSchema })),
  },
  responses: {
    200: json(z.object({ generation: generationSchema }), 'Applied.'),
    400: errorResponse('Malformed request (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const driftRoute = createRoute({
  method: 'get',
  path: '/{id}/proxies/{instance}/drift',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: "Local edits of the node's applied files",
  description: 'Read from the agent when the host is online (and stored); the stored drift otherwise.',
  security: cookieSecurity,
  request: { params: nodeParams },
  responses: {
    200: json(z.object({ node: nodeSchema }), 'The node with its drift.'),
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: agentErrors[404],
  },
});

const resolveDriftRoute = createRoute({
  method: 'post',
  path: '/{id}/proxies/{instance}/drift',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: 'Adopt or overwrite local edits (operator)',
  description:
    '`adopt` keeps the edit and stores it as a new generation (origin `host-edit`); `overwrite` writes the applied generation back.',
  security: cookieSecurity,
  request: { params: nodeParams, ...body(z.object({ action: z.enum(['adopt', 'overwrite']) })) },
  responses: {
    200: json(z.object({ node: nodeSchema }), 'Resolved.'),
    400: errorResponse('Malformed request (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const fleetRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'Every proxy node you may see',
  security: cookieSecurity,
  responses: { 200: json(z.object({ nodes: z.array(nodeSchema) }), 'The nodes.'), ...authErrors },
});

const rolloutsRoute = createRoute({
  method: 'get',
  path: '/rollouts',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'Staged rollouts, newest first',
  security: cookieSecurity,
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ type: 'integer', default: 20 }),
    }),
  },
  responses: {
    200: json(z.object({ rollouts: z.array(rolloutSchema) }), 'The rollouts.'),
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
  },
});

const startRolloutRoute = createRoute({
  method: 'post',
  path: '/rollouts',
  middleware: [permit('config.apply')] as const,
  tags: ['proxies'],
  summary: 'Start a staged rollout (operator)',
  description:
    'Aimed at nodes picked by hand (`targets`), or every node of a host group (`groupId`) or a tag (`tag`), optionally one `instance` name; with `settings`, a group or tag takes only the nodes running `adapter`. The first `canary` nodes go first, then stages of `batchSize` nodes in parallel; the rollout halts after the first stage in which a node failed. With `settings` (and `adapter`), every node gets those settings; without, each node is pushed its own settings again. Audited as config.rollout.start with the group or tag. Progress: GET /proxies/rollouts/{rolloutId} or the /proxies/events stream.',
  security: cookieSecurity,
  request: {
    ...body(
      z.object({
        targets: z
          .array(z.object({ hostId: z.uuid(), instance: z.string().regex(PROCESS_NAME_PATTERN) }))
          .min(1)
          .max(10_000)
          .optional()
          .openapi({ description: 'Nodes picked by hand (exactly one of targets, groupId, tag).' }),
        groupId: z.uuid().optional().openapi({
          description:
            "Every node on the hosts of this host group (explicit members and tag matches); hosts you may not apply configs to are left out (counted in the audit entry's leftOut).",
        }),
        tag: z
          .string()
          .regex(/^[a-z0-9][a-z0-9._:-]{0,63}$/)
          .optional()
          .openapi({ description: 'Every node on the hosts carrying this tag.' }),
        instance: z
          .string()
          .regex(PROCESS_NAME_PATTERN)
          .optional()
          .openapi({ description: 'With groupId or tag: only nodes of this instance name.' }),
        adapter: z.enum(proxyAdapters).optional(),
        settings: settingsSchema.optional(),
        canary: z.number().int().min(0).max(100).optional(),
        batchSize: z.number().int().min(1).max(1000).optional(),
        reason: reasonSchema,
      }),
    ),
  },
  responses: {
    201: json(z.object({ rollout: rolloutSchema }), 'Started.'),
    400: errorResponse('Malformed rollout (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such node or host group (`proxy.node_not_found`, `group.not_found`).'),
  },
});

const rolloutRoute = createRoute({
  method: 'get',
  path: '/rollouts/{rolloutId}',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'One rollout with its progress per node',
  security: cookieSecurity,
  request: { params: rolloutParams },
  responses: {
    200: json(z.object({ rollout: rolloutSchema }), 'The rollout.'),
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such rollout (`proxy.rollout_not_found`).'),
  },
});

const rolloutActionRoute = (action: 'resume' | 'cancel', summary: string) =>
  createRoute({
    method: 'post',
    path: `/rollouts/{rolloutId}/${action}`,
    middleware: [permit('config.apply')] as const,
    tags: ['proxies'],
    summary,
    security: cookieSecurity,
    request: { params: rolloutParams },
    responses: {
      200: json(z.object({ rollout: rolloutSchema }), 'The rollout.'),
      400: errorResponse('Malformed id (`request.invalid`).'),
      ...authErrors,
      404: errorResponse('No such rollout (`proxy.rollout_not_found`).'),
      409: errorResponse('Not in a state that allows this (`proxy.rollout_state`).'),
    },
  });

const eventsRoute = createRoute({
  method: 'get',
  path: '/events',
  middleware: [permit('host.view')] as const,
  tags: ['proxies'],
  summary: 'Proxy changes (Server-Sent Events)',
  description:
    '`event: node` `{hostId, instance}` when a node, its generations or its drift change; `event: rollout` `{rolloutId}` when a rollout progresses. Read the resource again on each. First `event: ready`; a heartbeat comment every 15 s.',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'An endless event stream.',
      content: { 'text/event-stream': { schema: z.string() } },
    },
    400: errorResponse('The request does not accept `text/event-stream` (`request.invalid`).'),
    401: authErrors[401],
  },
});

type Ctx = Parameters<typeof sessionOf>[0];
const actorOf = (c: Ctx) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });

/** A host's proxy nodes (behind the session and CSRF middleware), mounted at /hosts. */
export function hostProxyRoutes({ proxyNodes }: { proxyNodes: ProxyNodesService }) {
  return createRouter()
    .openapi(listHostRoute, async (c) =>
      c.json({ nodes: await proxyNodes.list(actorOf(c), c.req.valid('param').id) }, 200),
    )
    .openapi(createNodeRoute, async (c) => {
      const { id } = c.req.valid('param');
      const input = c.req.valid('json');
      const actor = actorOf(c);
      let node = await proxyNodes.create(actor, id, input);
      let generation = null;
      if (input.apply) {
        generation = await proxyNodes.apply(actor, id, node.instance, { reason: input.reason });
        node = await proxyNodes.get(actor, id, node.instance);
      }
      return c.json({ node, generation }, 201);
    })
    .openapi(getNodeRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      return c.json({ node: await proxyNodes.get(actorOf(c), id, instance) }, 200);
    })
    .openapi(updateNodeRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      const input = c.req.valid('json');
      const actor = actorOf(c);
      let node = await proxyNodes.update(actor, id, instance, input);
      let generation = null;
      if (input.apply) {
        generation = await proxyNodes.apply(actor, id, instance, { reason: input.reason });
        node = await proxyNodes.get(actor, id, instance);
      }
      return c.json({ node, generation }, 200);
    })
    .openapi(deleteNodeRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      await proxyNodes.remove(actorOf(c), id, instance);
      return c.body(null, 204);
    })
    .openapi(applyRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      const { reason } = c.req.valid('json');
      return c.json({ generation: await proxyNodes.apply(actorOf(c), id, instance, { reason }) }, 200);
    })
    .openapi(generationsRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      return c.json(
        { generations: await proxyNodes.generations(actorOf(c), id, instance, c.req.valid('query')) },
        200,
      );
    })
    .openapi(generationRoute, async (c) => {
      const { id, instance, generation } = c.req.valid('param');
      return c.json({ generation: await proxyNodes.generation(actorOf(c), id, instance, generation) }, 200);
    })
    .openapi(diffRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      const { from, to } = c.req.valid('query');
      return c.json(await proxyNodes.diff(actorOf(c), id, instance, from, to), 200);
    })
    .openapi(rollbackRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      const { generation, reason } = c.req.valid('json');
      return c.json(
        { generation: await proxyNodes.rollback(actorOf(c), id, instance, generation, { reason }) },
        200,
      );
    })
    .openapi(driftRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      return c.json({ node: await proxyNodes.drift(actorOf(c), id, instance) }, 200);
    })
    .openapi(resolveDriftRoute, async (c) => {
      const { id, instance } = c.req.valid('param');
      return c.json(
        { node: await proxyNodes.resolveDrift(actorOf(c), id, instance, c.req.valid('json').action) },
        200,
      );
    });
}

/** What proxyRoutes needs; `heartbeatMs` is the change stream's (default 15 s, as /events'). */
export interface ProxyRoutesDeps {
  proxyNodes: ProxyNodesService;
  auth: AuthService;
  /**
   * How often the change stream sends a heartbeat comment (keeping proxies from closing an idle
   * stream) and re-reads its session's access: a revoked session ends within one period. The app
   * passes /events' `heartbeatMs` (AppDeps.events), so tests shorten both with one setting.
   */
  heartbeatMs?: number;
}

/** Fleet-wide proxy nodes, rollouts and the change stream, mounted at /proxies. */
export function proxyRoutes({
  proxyNodes,
  auth,
  heartbeatMs = defaultEventStreamOptions.heartbeatMs,
}: ProxyRoutesDeps) {
  return createRouter()
    .openapi(fleetRoute, async (c) => c.json({ nodes: await proxyNodes.list(actorOf(c)) }, 200))
    .openapi(eventsRoute, (c) => {
      const session = sessionOf(c);
      // An endless answer only for a client that asked for one (EventSource always does).
      if (!(c.req.header('accept') ?? '').includes('text/event-stream')) {
        throw new KeelError('request.invalid', 'This is an event stream: send Accept: text/event-stream.');
      }
      c.header('x-accel-buffering', 'no');
      return streamSSE(c, async (stream) => {
        const queue: ProxyChange[] = [];
        let wake: (() => void) | undefined;
        let done = false;
        const signal = () => {
          wake?.();
          wake = undefined;
        };
        // What the session may see: as at the request, then as re-read at each heartbeat (a user
        // whose grants shrink stops hearing of those hosts within one heartbeat; docs/security.md).
        let actor = session.actor;
        const unsubscribe = proxyNodes.subscribe((change) => {
          const hosts = change.type === 'node' ? [change.hostId] : change.hostIds;
          if (!hosts.some((h) => canSeeHost(actor, h))) return;
          if (queue.length >= 256) {
            done = true; // too slow: the client reconnects and reloads
            stream.abort();
          } else queue.push(change);
          signal();
        });
        let beat = false;
        const heartbeat = setInterval(() => {
          beat = true;
          signal();
        }, heartbeatMs);
        stream.onAbort(() => {
          done = true;
          signal();
        });
        try {
          await stream.writeSSE({ event: 'ready', data: '{}', retry: 3000 });
          while (!done) {
            const next = queue.shift();
            if (
              next &&
              (next.type === 'node' ? [next.hostId] : next.hostIds).some((h) => canSeeHost(actor, h))
            ) {
              const data =
                next.type === 'node'
                  ? { hostId: next.hostId, instance: next.instance }
                  : { rolloutId: next.rolloutId };
              await stream.writeSSE({ event: next.type, data: JSON.stringify(data) });
            } else if (next) {
              continue; // queued before the access it was checked with shrank
            } else if (beat) {
              beat = false;
              const now = await auth.currentActor(session.sessionId);
              if (!now || !hasPermission(now, 'host.view')) {
                const reason = now ? 'access.revoked' : 'session.ended';
                await stream.writeSSE({ event: 'closed', data: JSON.stringify({ reason }) });
                break;
              }
              actor = now;
              await stream.write(': heartbeat\n\n');
            } else {
              await new Promise<void>((resolve) => (wake = resolve));
            }
            if (stream.aborted || stream.closed) break;
          }
        } finally {
          unsubscribe();
          clearInterval(heartbeat);
        }
      });
    })
    .openapi(rolloutsRoute, async (c) =>
      c.json({ rollouts: await proxyNodes.rollouts(actorOf(c), c.req.valid('query').limit) }, 200),
    )
    .openapi(startRolloutRoute, async (c) =>
      c.json({ rollout: await proxyNodes.startRollout(actorOf(c), c.req.valid('json')) }, 201),
    )
    .openapi(rolloutRoute, async (c) =>
      c.json({ rollout: await proxyNodes.rollout(actorOf(c), c.req.valid('param').rolloutId) }, 200),
    )
    .openapi(rolloutActionRoute('resume', 'Resume a halted rollout (operator)'), async (c) =>
      c.json({ rollout: await proxyNodes.resumeRollout(actorOf(c), c.req.valid('param').rolloutId) }, 200),
    )
    .openapi(rolloutActionRoute('cancel', 'Cancel a rollout (operator)'), async (c) =>
      c.json({ rollout: await proxyNodes.cancelRollout(actorOf(c), c.req.valid('param').rolloutId) }, 200),
    );
}
