// /api/v1/tokens: the signed-in user's API tokens (create: the secret is in this answer only;
// list; revoke). User managers may list and revoke anyone's. Not reachable with an API token.
import { createRoute, z } from '@hono/zod-openapi';
import { KeelError } from '@keel/shared';
import { permissions } from '../services/access.ts';
import { MAX_TOKEN_DAYS, type TokensService } from '../services/tokens.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

export const apiTokenSchema = z
  .object({
    id: z.uuid(),
    userId: z.uuid(),
    name: z.string(),
    permissions: z.array(z.enum(permissions)),
    groupIds: z
      .array(z.uuid())
      .nullable()
      .openapi({ description: 'Host groups it is limited to; null: all of its user’s hosts.' }),
    createdAt: z.iso.datetime(),
    expiresAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().nullable(),
    lastUsedAt: z.iso.datetime().nullable(),
    lastUsedIp: z.string().nullable(),
  })
  .openapi('ApiToken');

const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const common = { tags: ['api tokens'], security: cookieSecurity, middleware: permit.signedIn() };

const listRoute = createRoute({
  ...common,
  method: 'get',
  path: '/',
  summary: 'API tokens (yours, or `userId`’s for user managers)',
  request: { query: z.object({ userId: z.uuid().optional() }) },
  responses: { 200: json(z.object({ tokens: z.array(apiTokenSchema) })), ...authErrors },
});

const listAllRoute = createRoute({
  tags: ['api tokens'],
  security: cookieSecurity,
  middleware: permit('users.manage'),
  method: 'get',
  path: '/all',
  summary: 'Every user’s API tokens with their owner (user managers)',
  description:
    'Name, owner, permissions, groups, created, expires, revoked and last use: never a secret (only its hash is stored). Newest first, at most 1000. Revoke any with `DELETE /tokens/{id}`. Not with an API token.',
  responses: {
    200: json(z.object({ tokens: z.array(apiTokenSchema.extend({ ownerName: z.string() })) })),
    ...authErrors,
  },
});

const createTokenRoute = createRoute({
  ...common,
  method: 'post',
  path: '/',
  summary: 'Create an API token',
  description:
    'Send it as `Authorization: Bearer <secret>` on the API (no CSRF header needed). The secret is in this answer only. A token holds at most the listed permissions, limited to `groupIds` when given, and never more than its user holds when it is used.',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              name: z.string().trim().min(1).max(100),
              permissions: z.array(z.enum(permissions)).min(1).max(permissions.length),
              groupIds: z.array(z.uuid()).max(100).optional(),
              ttlDays: z
                .number()
                .int()
                .min(1)
                .max(MAX_TOKEN_DAYS)
                .optional()
                .openapi({ description: 'Default 90.' }),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    201: json(
      z.object({ token: apiTokenSchema, secret: z.string().openapi({ example: 'kat_…' }) }),
      'Created.',
    ),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such group (`group.not_found`).'),
  },
});

const revokeRoute = createRoute({
  ...common,
  method: 'delete',
  path: '/{id}',
  summary: 'Revoke an API token',
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ token: apiTokenSchema })),
    ...authErrors,
    404: errorResponse('No such token (`api_token.not_found`).'),
  },
});

/** API token routes (behind the session and CSRF middleware). */
export function tokenRoutes({ tokens }: { tokens: TokensService }) {
  const by = (c: Parameters<typeof sessionOf>[0]) => ({ actor: sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(listRoute, async (c) =>
      c.json({ tokens: await tokens.list(by(c), c.req.valid('query').userId) }, 200),
    )
    .openapi(listAllRoute, async (c) => {
      // Like every token route: a bearer token cannot reach it, even one holding users.manage.
      if (sessionOf(c).via === 'token')
        throw new KeelError('auth.forbidden', 'Not with an API token: sign in.');
      return c.json({ tokens: await tokens.listAll(by(c)) }, 200);
    })
    .openapi(createTokenRoute, async (c) => {
      c.header('cache-control', 'no-store');
      return c.json(await tokens.create(by(c), c.req.valid('json')), 201);
    })
    .openapi(revokeRoute, async (c) =>
      c.json({ token: await tokens.revoke(by(c), c.req.valid('param').id) }, 200),
    );
}
