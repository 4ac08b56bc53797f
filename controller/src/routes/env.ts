// What every route module shares: the request context's typed variables, the router factory
// (with zod validation failures turned into `request.invalid`), and the common API schemas.
import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { KeelError } from '@keel/shared';
import type { AuthenticatedSession } from '../services/auth.ts';

/** Variables middleware puts on the context. */
export interface AppEnv {
  Variables: {
    /** The signed-in session (set by the session middleware on authenticated routes). */
    session: AuthenticatedSession;
    /** The client's address, as far as this controller can tell. */
    clientIp: string | null;
  };
}

/** Turns zod issues into one readable sentence: `body.username: Too small: expected ...`. */
export function describeIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  where: string,
) {
  return issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.map(String).join('.');
      return `${where}${path ? `.${path}` : ''}: ${i.message}`;
    })
    .join('; ');
}

/** A router whose validation failures become 400 `request.invalid` with a human message. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const where = result.target === 'json' ? 'body' : result.target;
        throw new KeelError('request.invalid', describeIssues(result.error.issues, where));
      }
    },
  });
}

/** The signed-in session; only valid behind the session middleware. */
export function sessionOf(c: Context<AppEnv>): AuthenticatedSession {
  return c.get('session');
}

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'auth.required' }),
      message: z.string().openapi({ example: 'Sign in first.' }),
    }),
  })
  .openapi('Error');

/** An error response entry for `createRoute({ responses })`. */
export function errorResponse(description: string) {
  return { description, content: { 'application/json': { schema: errorBodySchema } } } as const;
}

/** Responses every authenticated route may give. */
export const authErrors = {
  401: errorResponse('Not signed in (`auth.required`).'),
  403: errorResponse(
    'Wrong CSRF token or origin (`auth.csrf`), or the role does not allow it (`auth.forbidden`).',
  ),
} as const;

export const roleSchema = z.enum(['owner', 'admin', 'operator', 'viewer']).openapi('Role');

export const userSchema = z.object({ id: z.uuid(), username: z.string(), role: roleSchema }).openapi('User');

export const idParamSchema = z.object({
  id: z
    .uuid()
    .openapi({ param: { name: 'id', in: 'path' }, example: '0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33' }),
});

/** Security requirement for routes behind the session cookie. */
export const cookieSecurity = [{ cookieAuth: [] }];
