// /api/v1/agent-rollouts: staged upgrades of the fleet's agents (issue 11). The overview (agent
// bundles this controller holds, versions in the fleet, recent rollouts), starting a rollout, one
// rollout with per-host progress, and pause / resume / cancel. All need `fleet.upgrade`.
import { createRoute, z } from '@hono/zod-openapi';
import { AGENT_VERSION_PATTERN } from '@keel/shared';
import type { AgentUpgradesService } from '../services/agent-upgrades.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const hostProgressSchema = z.object({
  hostId: z.uuid(),
  name: z.string(),
  position: z.number().int(),
  state: z.enum(['pending', 'upgrading', 'ok', 'failed', 'rolled-back', 'cancelled']),
  fromVersion: z.string().nullable(),
  reason: z.string().nullable(),
  startedAt: z.iso.datetime().nullable(),
  finishedAt: z.iso.datetime().nullable(),
});

const rolloutSchema = z
  .object({
    id: z.uuid(),
    version: z.string(),
    sha256: z.string(),
    state: z.enum(['running', 'paused', 'halted', 'cancelled', 'done']),
    canary: z.number().int(),
    batchSize: z.number().int(),
    confirmSeconds: z.number().int(),
    maxStarts: z.number().int(),
    reason: z.string().nullable().openapi({ description: 'Why it halted or was cancelled.' }),
    createdBy: z.string(),
    createdAt: z.iso.datetime(),
    finishedAt: z.iso.datetime().nullable(),
    counts: z.record(z.string(), z.number().int()),
    hosts: z.array(hostProgressSchema),
  })
  .openapi('AgentRollout');

const overviewRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('fleet.upgrade')] as const,
  tags: ['agent rollouts'],
  summary: 'Agent versions and rollouts (admin)',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'Bundles held (oldest first), versions in the fleet, the 20 newest rollouts.',
      content: {
        'application/json': {
          schema: z.object({
            bundles: z.array(z.object({ version: z.string(), sha256: z.string(), size: z.number().int() })),
            fleet: z.array(
              z.object({ version: z.string(), hosts: z.number().int(), online: z.number().int() }),
            ),
            rollouts: z.array(rolloutSchema),
          }),
        },
      },
    },
    ...authErrors,
  },
});

const startBodySchema = z
  .object({
    version: z.string().regex(AGENT_VERSION_PATTERN).openapi({ example: '0.2.1' }),
    hostIds: z.array(z.uuid()).min(1).max(10_000).optional().openapi({
      description:
        'Hosts in order; the first `canary` go first. Default: every host not on `version`, by name.',
    }),
    canary: z.number().int().min(1).max(100).optional().openapi({ description: 'Default 1.' }),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .optional()
      .openapi({ description: 'Hosts upgraded at once after the canaries. Default: a quarter of them.' }),
    confirmSeconds: z.number().int().min(10).max(3600).optional().openapi({
      description:
        'How long a new agent has to reach the controller before its host switches back (default 60). Time while the controller itself does not answer does not count.',
    }),
    maxStarts: z.number().int().min(1).max(20).optional().openapi({
      description:
        'How many times a new agent may start (the first included) without reaching the controller before its host switches back (default 3).',
    }),
  })
  .strict()
  .openapi('StartAgentRollout');

const startRoute = createRoute({
  method: 'post',
  path: '/',
  middleware: [permit('fleet.upgrade')] as const,
  tags: ['agent rollouts'],
  summary: 'Start an agent rollout (admin)',
  description:
    'Canary hosts first, then batches; each host downloads the bundle from this controller, checks its SHA-256, switches and restarts, and switches itself back if the new agent does not come online. The rollout halts on the first failure.',
  security: cookieSecurity,
  request: { body: { content: { 'application/json': { schema: startBodySchema } }, required: true } },
  responses: {
    201: {
      description: 'Started.',
      content: { 'application/json': { schema: z.object({ rollout: rolloutSchema }) } },
    },
    400: errorResponse('Malformed body, or no host to upgrade (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such bundle or host (`upgrade.bundle_not_found`, `host.not_found`).'),
    409: errorResponse('Another rollout is running or paused (`upgrade.rollout_active`).'),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/{id}',
  middleware: [permit('fleet.upgrade')] as const,
  tags: ['agent rollouts'],
  summary: 'One agent rollout with per-host progress (admin)',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: {
      description: 'The rollout.',
      content: { 'application/json': { schema: z.object({ rollout: rolloutSchema }) } },
    },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such rollout (`upgrade.rollout_not_found`).'),
  },
});

const actionRoute = createRoute({
  method: 'post',
  path: '/{id}/{action}',
  middleware: [permit('fleet.upgrade')] as const,
  tags: ['agent rollouts'],
  summary: 'Pause, resume or cancel an agent rollout (admin)',
  description:
    'pause: no new batch starts (hosts upgrading finish). resume: a paused rollout goes on. cancel: hosts not started yet are left alone.',
  security: cookieSecurity,
  request: {
    params: idParamSchema.extend({
      action: z.enum(['pause', 'resume', 'cancel']).openapi({ param: { name: 'action', in: 'path' } }),
    }),
  },
  responses: {
    200: {
      description: 'The rollout.',
      content: { 'application/json': { schema: z.object({ rollout: rolloutSchema }) } },
    },
    400: errorResponse('Malformed id or action (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such rollout (`upgrade.rollout_not_found`).'),
    409: errorResponse('Not allowed in its state (`upgrade.rollout_state`).'),
  },
});

/** Agent rollout routes (behind the session and CSRF middleware). */
export function agentRolloutRoutes({ agentUpgrades }: { agentUpgrades: AgentUpgradesService }) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(overviewRoute, async (c) => c.json(await agentUpgrades.overview(actor(c)), 200))
    .openapi(startRoute, async (c) =>
      c.json({ rollout: await agentUpgrades.create(actor(c), c.req.valid('json')) }, 201),
    )
    .openapi(getRoute, async (c) =>
      c.json({ rollout: await agentUpgrades.get(actor(c), c.req.valid('param').id) }, 200),
    )
    .openapi(actionRoute, async (c) => {
      const { id, action } = c.req.valid('param');
      return c.json({ rollout: await agentUpgrades.act(actor(c), id, action) }, 200);
    });
}
