// /api/v1/checks: service checks (HTTP(S), TCP, DNS) run by chosen hosts. Listing and history need
// monitoring.view (a check shows when the caller sees one of its hosts); creating, changing and
// deleting need monitoring.manage and are audited. See docs/alerts.md.
import { createRoute, z } from '@hono/zod-openapi';
import { checkKinds } from '@keel/shared';
import type { ChecksService } from '../services/checks.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const resultSchema = z.object({
  hostId: z.uuid(),
  at: z.string(),
  ok: z.boolean(),
  latencyMs: z.number().nullable(),
  status: z.number().nullable(),
  certExpiresAt: z.string().nullable(),
  error: z.string().nullable(),
});

export const checkViewSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    kind: z.enum(checkKinds),
    target: z.record(z.string(), z.unknown()),
    hostIds: z.array(z.uuid()),
    intervalSeconds: z.number(),
    timeoutMs: z.number(),
    enabled: z.boolean(),
    createdAt: z.string(),
    updatedAt: z.string(),
    status: z.enum(['up', 'down', 'unknown']),
    last: z.array(resultSchema),
    uptime: z.object({
      day: z.number().nullable(),
      week: z.number().nullable(),
      month: z.number().nullable(),
    }),
    latency: z
      .array(z.number().nullable())
      .openapi({ description: 'Average latency, last 24 h in 48 buckets.' }),
  })
  .openapi('Check');

const checkBody = z
  .object({
    name: z.string().min(1).max(100),
    kind: z.enum(checkKinds),
    target: z.record(z.string(), z.unknown()).openapi({
      description:
        'http: {url, method?, expectStatus?, bodyContains?, insecure?}; tcp: {host, port}; dns: {name, recordType?, server?, expect?}',
    }),
    hostIds: z.array(z.uuid()).min(1).max(100),
    intervalSeconds: z.number().int().min(5).max(86_400).optional(),
    timeoutMs: z.number().int().min(100).max(60_000).optional(),
    enabled: z.boolean().optional(),
  })
  .openapi('CheckBody');

const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});
const notFound = errorResponse('No such check (`check.not_found`).');
const view = { tags: ['checks'], security: cookieSecurity, middleware: permit('monitoring.view') };
const manage = {
  tags: ['checks'],
  security: cookieSecurity,
  middleware: permit('monitoring.manage'),
};

const listRoute = createRoute({
  ...view,
  method: 'get',
  path: '/',
  summary: 'Every check with its last results, uptime and latency',
  responses: { 200: json(z.object({ checks: z.array(checkViewSchema) })), ...authErrors },
});
const getRoute = createRoute({
  ...view,
  method: 'get',
  path: '/{id}',
  summary: 'One check',
  request: { params: idParamSchema },
  responses: { 200: json(z.object({ check: checkViewSchema })), ...authErrors, 404: notFound },
});
const historyRoute = createRoute({
  ...view,
  method: 'get',
  path: '/{id}/results',
  summary: "A check's results, newest first (default: the last 24 h)",
  request: {
    params: idParamSchema,
    query: z.object({
      from: z.coerce.number().int().min(0).optional(),
      to: z.coerce.number().int().min(0).optional(),
      limit: z.coerce.number().int().min(1).max(5_000).optional(),
    }),
  },
  responses: { 200: json(z.object({ results: z.array(resultSchema) })), ...authErrors, 404: notFound },
});
const createCheckRoute = createRoute({
  ...manage,
  method: 'post',
  path: '/',
  summary: 'Create a check (pushed to its hosts at once)',
  request: body(checkBody),
  responses: {
    201: json(z.object({ check: checkViewSchema }), 'Created.'),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('A listed host does not exist (`host.not_found`).'),
  },
});
const updateCheckRoute = createRoute({
  ...manage,
  method: 'patch',
  path: '/{id}',
  summary: 'Change a check',
  request: { params: idParamSchema, ...body(checkBody.partial()) },
  responses: {
    200: json(z.object({ check: checkViewSchema })),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: notFound,
  },
});
const deleteCheckRoute = createRoute({
  ...manage,
  method: 'delete',
  path: '/{id}',
  summary: 'Delete a check and its results',
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...authErrors, 404: notFound },
});

/** Check routes (behind the session and CSRF middleware). */
export function checkRoutes({ checks }: { checks: ChecksService }) {
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ checks: await checks.list(sessionOf(c).actor) }, 200))
    .openapi(getRoute, async (c) =>
      c.json({ check: await checks.get(sessionOf(c).actor, c.req.valid('param').id) }, 200),
    )
    .openapi(historyRoute, async (c) =>
      c.json(
        { results: await checks.history(sessionOf(c).actor, c.req.valid('param').id, c.req.valid('query')) },
        200,
      ),
    )
    .openapi(createCheckRoute, async (c) =>
      c.json({ check: await checks.create(sessionOf(c).actor, c.req.valid('json'), c.get('clientIp')) }, 201),
    )
    .openapi(updateCheckRoute, async (c) =>
      c.json(
        {
          check: await checks.update(
            sessionOf(c).actor,
            c.req.valid('param').id,
            c.req.valid('json'),
            c.get('clientIp'),
          ),
        },
        200,
      ),
    )
    .openapi(deleteCheckRoute, async (c) => {
      await checks.remove(sessionOf(c).actor, c.req.valid('param').id, c.get('clientIp'));
      return c.body(null, 204);
    });
}
