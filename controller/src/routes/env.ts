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

/** The zod issue fields describeIssues reads. */
interface Issue {
  path: readonly PropertyKey[];
  message: string;
  code?: string;
  expected?: string;
  received?: string;
}

/**
 * Says what a query or path value must be in words a caller can act on: z.coerce turns "abc" into
 * NaN and zod then reports "expected number, received NaN", which names neither the rule nor the
 * value that broke it.
 */
function plainMessage(issue: Issue): string {
  if (issue.code === 'invalid_type' && issue.expected === 'int') return 'must be a whole number';
  if (issue.code === 'invalid_type' && issue.expected === 'number') return 'must be a number';
  return issue.message;
}

/**
 * Turns zod issues into one readable sentence: `body.username: Too small: expected ...`. With the
 * raw `input` (query or path parameters), a rejected value is quoted: `query.after: must be a
 * number (got "abc")`.
 */
export function describeIssues(issues: readonly Issue[], where: string, input?: Record<string, unknown>) {
  return issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.map(String).join('.');
      const raw = i.path.length === 1 && input ? input[String(i.path[0])] : undefined;
      const got = typeof raw === 'string' && raw.length <= 40 ? ` (got ${JSON.stringify(raw)})` : '';
      return `${where}${path ? `.${path}` : ''}: ${plainMessage(i)}${got}`;
    })
    .join('; ');
}

/** A router whose validation failures become 400 `request.invalid` with a human message. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        const where = result.target === 'json' ? 'body' : result.target;
        // Query and path values are short text the caller typed; bodies are not quoted back.
        const input =
          result.target === 'query' ? c.req.query() : result.target === 'param' ? c.req.param() : undefined;
        throw new KeelError('request.invalid', describeIssues(result.error.issues, where, input));
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
