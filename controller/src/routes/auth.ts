// /api/v1/auth: sign in, the current session, sign out.
import { createRoute, z } from '@hono/zod-openapi';
import type { AuthService } from '../services/auth.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf, userSchema } from './env.ts';
import {
  clearSessionCookie,
  requireCsrfToken,
  requireSession,
  setSessionCookie,
  type CookieOptions,
} from './middleware.ts';
import { permit } from './permit.ts';

const loginBodySchema = z
  .object({
    username: z.string().min(1).max(64).openapi({ example: 'admin' }),
    password: z.string().min(1).max(1024).openapi({ format: 'password' }),
  })
  .openapi('LoginRequest');

const sessionBodySchema = z
  .object({
    user: userSchema,
    csrfToken: z.string().openapi({ description: 'Send as `x-csrf-token` on every mutating request.' }),
  })
  .openapi('Session');

const loginRoute = createRoute({
  method: 'post',
  path: '/login',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'Sign in',
  description:
    'Checks the password and sets the `keel_session` cookie (HttpOnly, SameSite=Strict). A username, existing or not, locks for 15 minutes after 5 failures (addresses the user signed in from before have their own budget); an address after 20; password checks running at once are bounded. Every refusal is 429 with Retry-After.',
  request: { body: { content: { 'application/json': { schema: loginBodySchema } }, required: true } },
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    400: errorResponse('Malformed body (`request.invalid`).'),
    401: errorResponse('Wrong username or password (`auth.invalid_credentials`).'),
    403: errorResponse('Cross-origin request (`auth.csrf`).'),
    429: {
      ...errorResponse(
        'Too many failures or attempts at once (`auth.locked`); try again after `Retry-After` seconds.',
      ),
      headers: z.object({
        'retry-after': z.string().openapi({ description: 'Seconds to wait.', example: '900' }),
      }),
    },
  },
});

const sessionRoute = createRoute({
  method: 'get',
  path: '/session',
  middleware: [permit.signedIn()] as const,
  tags: ['auth'],
  summary: 'The current session',
  security: cookieSecurity,
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    401: authErrors[401],
  },
});

const logoutRoute = createRoute({
  method: 'post',
  path: '/logout',
  middleware: [permit.signedIn()] as const,
  tags: ['auth'],
  summary: 'Sign out',
  security: cookieSecurity,
  responses: { 204: { description: 'Signed out; the cookie is cleared.' }, ...authErrors },
});

export interface AuthRoutesDeps {
  auth: AuthService;
  cookie: CookieOptions;
}

/** Sign-in routes. Login is open; the rest need a session (and logout the CSRF token). */
export function authRoutes({ auth, cookie }: AuthRoutesDeps) {
  const app = createRouter();
  app.use('/session', requireSession(auth, cookie));
  app.use('/logout', requireSession(auth, cookie), requireCsrfToken());
  return app
    .openapi(loginRoute, async (c) => {
      const { username, password } = c.req.valid('json');
      const result = await auth.login({
        username,
        password,
        ip: c.get('clientIp'),
        userAgent: c.req.header('user-agent') ?? null,
      });
      setSessionCookie(c, result.secret, result.expiresAt, cookie);
      c.header('cache-control', 'no-store');
      return c.json({ user: result.user, csrfToken: result.csrfToken }, 200);
    })
    .openapi(sessionRoute, (c) => {
      const session = sessionOf(c);
      c.header('cache-control', 'no-store');
      return c.json({ user: session.user, csrfToken: session.csrfToken }, 200);
    })
    .openapi(logoutRoute, async (c) => {
      const session = sessionOf(c);
      await auth.logout(session, c.get('clientIp'));
      clearSessionCookie(c, cookie);
      return c.body(null, 204);
    });
}
