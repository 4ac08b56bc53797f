// /api/v1/sessions: your signed-in sessions (where, since when, last seen) and ending one.
// Admins see and end other users' sessions under /users/{id}/sessions.
import { createRoute, z } from '@hono/zod-openapi';
import type { AuthService } from '../services/auth.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf } from './env.ts';
import { permit } from './permit.ts';

export const sessionViewSchema = z
  .object({
    id: z.string().openapi({ description: 'The session handle (a hash; not the cookie).' }),
    createdAt: z.iso.datetime(),
    lastSeenAt: z.iso.datetime(),
    expiresAt: z.iso.datetime(),
    ip: z.string().nullable(),
    userAgent: z.string().nullable(),
    current: z.boolean(),
  })
  .openapi('SessionView');

export const sessionIdParam = z
  .string()
  .regex(/^[0-9a-f]{64}$/)
  .openapi({ param: { name: 'sessionId', in: 'path' } });

const listRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: permit.signedIn(),
  tags: ['sessions'],
  security: cookieSecurity,
  summary: 'Your sessions',
  responses: {
    200: {
      description: 'OK.',
      content: { 'application/json': { schema: z.object({ sessions: z.array(sessionViewSchema) }) } },
    },
    ...authErrors,
  },
});

const revokeRoute = createRoute({
  method: 'delete',
  path: '/{sessionId}',
  middleware: permit.signedIn(),
  tags: ['sessions'],
  security: cookieSecurity,
  summary: 'End one of your sessions',
  request: { params: z.object({ sessionId: sessionIdParam }) },
  responses: {
    204: { description: 'Ended.' },
    ...authErrors,
    404: errorResponse('No such session (`session.not_found`).'),
  },
});

/** Session routes (behind the session and CSRF middleware). */
export function sessionRoutes({ auth }: { auth: AuthService }) {
  return createRouter()
    .openapi(listRoute, async (c) => {
      const s = sessionOf(c);
      return c.json({ sessions: await auth.listSessions(s.user.id, s.sessionId) }, 200);
    })
    .openapi(revokeRoute, async (c) => {
      const s = sessionOf(c);
      await auth.revokeSession(
        { id: s.user.id, ip: c.get('clientIp') },
        s.user.id,
        c.req.valid('param').sessionId,
      );
      return c.body(null, 204);
    });
}
