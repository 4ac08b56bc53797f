// /api/v1/users: accounts (list, create, change role/scope, delete, reset password) and their
// grants on host groups. Everything here needs `users.manage`; only owners touch owners.
import { createRoute, z } from '@hono/zod-openapi';
import type { AuthService } from '../services/auth.ts';
import type { TwoFactorService } from '../services/two-factor.ts';
import type { UsersService } from '../services/users.ts';
import { sessionIdParam, sessionViewSchema } from './sessions.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, roleSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

export const userViewSchema = z
  .object({
    id: z.uuid(),
    username: z.string(),
    role: roleSchema,
    scoped: z.boolean().openapi({ description: 'True: reaches hosts only through grants.' }),
    twoFactor: z.boolean(),
    createdAt: z.iso.datetime(),
    lastLoginAt: z.iso.datetime().nullable(),
  })
  .openapi('UserAccount');

export const grantSchema = z
  .object({
    id: z.uuid(),
    userId: z.uuid(),
    groupId: z.uuid(),
    role: roleSchema,
    createdAt: z.iso.datetime(),
  })
  .openapi('Grant');

const uuidParam = (name: string) =>
  z.uuid().openapi({ param: { name, in: 'path' }, example: '0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33' });
const idParams = z.object({ id: uuidParam('id') });
const grantParams = z.object({ id: uuidParam('id'), grantId: uuidParam('grantId') });
const notFound = errorResponse('No such user (`user.not_found`).');
const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});
const common = {
  tags: ['users'],
  security: cookieSecurity,
  middleware: permit('users.manage'),
};

const listRoute = createRoute({
  ...common,
  method: 'get',
  path: '/',
  summary: 'Every user (admin)',
  responses: { 200: json(z.object({ users: z.array(userViewSchema) })), ...authErrors },
});

const createUserRoute = createRoute({
  ...common,
  method: 'post',
  path: '/',
  summary: 'Create a user (admin)',
  description:
    'Without `password`, one is generated and returned once in `password`. Passwords follow the policy (12+ characters, not a common password).',
  request: body(
    z
      .object({
        username: z.string().min(1).max(64),
        password: z.string().min(1).max(1024).optional(),
        role: roleSchema,
        scoped: z.boolean().optional(),
      })
      .strict(),
  ),
  responses: {
    201: json(z.object({ user: userViewSchema, password: z.string().nullable() }), 'Created.'),
    400: errorResponse('Malformed body, bad username, or a weak password (`user.weak_password`).'),
    ...authErrors,
    409: errorResponse('The username is taken (`user.exists`).'),
  },
});

const updateRoute = createRoute({
  ...common,
  method: 'patch',
  path: '/{id}',
  summary: "Change a user's role or scope (admin)",
  request: {
    params: idParams,
    ...body(z.object({ role: roleSchema.optional(), scoped: z.boolean().optional() }).strict()),
  },
  responses: {
    200: json(z.object({ user: userViewSchema })),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: notFound,
    409: errorResponse('The last owner cannot be demoted (`user.last_owner`).'),
  },
});

const deleteRoute = createRoute({
  ...common,
  method: 'delete',
  path: '/{id}',
  summary: 'Delete a user (admin)',
  request: { params: idParams },
  responses: {
    204: { description: 'Deleted; their sessions, API tokens and grants are gone.' },
    ...authErrors,
    404: notFound,
    409: errorResponse('The last owner cannot be removed (`user.last_owner`).'),
  },
});

const resetPasswordRoute = createRoute({
  ...common,
  method: 'post',
  path: '/{id}/reset-password',
  summary: "Reset a user's password (admin)",
  description: 'Generates a new password, returned once; every session of the user ends.',
  request: { params: idParams },
  responses: { 200: json(z.object({ password: z.string() })), ...authErrors, 404: notFound },
});

const grantsRoute = createRoute({
  ...common,
  method: 'get',
  path: '/{id}/grants',
  summary: "A user's grants on host groups (admin)",
  request: { params: idParams },
  responses: { 200: json(z.object({ grants: z.array(grantSchema) })), ...authErrors, 404: notFound },
});

const grantRoute = createRoute({
  ...common,
  method: 'post',
  path: '/{id}/grants',
  summary: 'Grant a role on a host group (admin)',
  description:
    "The role's host permissions apply to every host in the group (explicit members and tagged hosts).",
  request: { params: idParams, ...body(z.object({ groupId: z.uuid(), role: roleSchema }).strict()) },
  responses: {
    201: json(z.object({ grant: grantSchema }), 'Granted.'),
    400: errorResponse('Owner cannot be granted on a group (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such user or group (`user.not_found`, `group.not_found`).'),
  },
});

const revokeGrantRoute = createRoute({
  ...common,
  method: 'delete',
  path: '/{id}/grants/{grantId}',
  summary: 'Remove a grant (admin)',
  request: { params: grantParams },
  responses: {
    204: { description: 'Removed.' },
    ...authErrors,
    404: errorResponse('No such user or grant (`grant.not_found`).'),
  },
});

const userSessionsRoute = createRoute({
  ...common,
  method: 'get',
  path: '/{id}/sessions',
  summary: "A user's sessions (admin)",
  request: { params: idParams },
  responses: { 200: json(z.object({ sessions: z.array(sessionViewSchema) })), ...authErrors, 404: notFound },
});

const revokeUserSessionRoute = createRoute({
  ...common,
  method: 'delete',
  path: '/{id}/sessions/{sessionId}',
  summary: "End a user's session (admin)",
  request: { params: z.object({ id: uuidParam('id'), sessionId: sessionIdParam }) },
  responses: {
    204: { description: 'Ended.' },
    ...authErrors,
    404: errorResponse('No such session (`session.not_found`).'),
  },
});

const resetTwoFactorRoute = createRoute({
  ...common,
  method: 'post',
  path: '/{id}/reset-two-factor',
  summary: "Turn a user's two-factor sign-in off (admin; lost phone and codes)",
  description: 'Their sessions end; if their role must use 2FA they enroll again after signing in.',
  request: { params: idParams },
  responses: { 204: { description: 'Reset.' }, ...authErrors, 404: notFound },
});

function grantView(g: { id: string; userId: string; groupId: string; role: string; createdAt: Date }) {
  return { ...g, role: g.role as z.infer<typeof roleSchema>, createdAt: g.createdAt.toISOString() };
}

/** User management routes (behind the session and CSRF middleware). */
export function userRoutes({
  users,
  auth,
  twoFactor,
}: {
  users: UsersService;
  auth: AuthService;
  twoFactor: TwoFactorService;
}) {
  const manager = (c: Parameters<typeof sessionOf>[0]) => ({
    id: sessionOf(c).user.id,
    role: sessionOf(c).user.role,
    ip: c.get('clientIp'),
  });
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ users: await users.list() }, 200))
    .openapi(createUserRoute, async (c) => c.json(await users.createBy(manager(c), c.req.valid('json')), 201))
    .openapi(updateRoute, async (c) =>
      c.json({ user: await users.update(manager(c), c.req.valid('param').id, c.req.valid('json')) }, 200),
    )
    .openapi(deleteRoute, async (c) => {
      await users.remove(manager(c), c.req.valid('param').id);
      return c.body(null, 204);
    })
    .openapi(resetPasswordRoute, async (c) => {
      const { password } = await users.resetPassword(manager(c), c.req.valid('param').id);
      return c.json({ password }, 200);
    })
    .openapi(grantsRoute, async (c) =>
      c.json({ grants: (await users.grants(c.req.valid('param').id)).map(grantView) }, 200),
    )
    .openapi(grantRoute, async (c) => {
      const grant = await users.grant(manager(c), c.req.valid('param').id, c.req.valid('json'));
      return c.json({ grant: grantView(grant) }, 201);
    })
    .openapi(revokeGrantRoute, async (c) => {
      const { id, grantId } = c.req.valid('param');
      await users.revokeGrant(manager(c), id, grantId);
      return c.body(null, 204);
    })
    .openapi(userSessionsRoute, async (c) => {
      const { id } = c.req.valid('param');
      await users.get(id);
      return c.json({ sessions: await auth.listSessions(id, sessionOf(c).sessionId) }, 200);
    })
    .openapi(revokeUserSessionRoute, async (c) => {
      const { id, sessionId } = c.req.valid('param');
      await users.checkManageable(manager(c), id);
      await auth.revokeSession(manager(c), id, sessionId);
      return c.body(null, 204);
    })
    .openapi(resetTwoFactorRoute, async (c) => {
      const { id } = c.req.valid('param');
      await users.checkManageable(manager(c), id);
      await twoFactor.reset(manager(c), id);
      return c.body(null, 204);
    });
}
