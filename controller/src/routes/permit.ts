// The route-level permission declaration: every API route names the permission it needs
// (`permit('host.view')`), or says it is open to anyone (`permit.public()`) or to any signed-in
// user (`permit.signedIn()`). A test walks every route of the app and fails on one that declares
// none, so a new route cannot ship without deciding who may call it.
import type { MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { KeelError } from '@keel/shared';
import { requireAccess, type Permission } from '../services/access.ts';
import type { AppEnv } from './env.ts';

/** What a route declared: a permission, `public` or `signed-in`. */
export type RouteAccess = Permission | 'public' | 'signed-in';

const declared = new WeakMap<object, RouteAccess>();

/** The declaration a handler carries, if it is a `permit` middleware. */
export function declaredAccess(handler: unknown): RouteAccess | undefined {
  return typeof handler === 'function' ? declared.get(handler) : undefined;
}

/** A session that finished sign-in (second factor given, or enrolled where it is required). */
function requireSignedIn(session: AppEnv['Variables']['session'] | undefined): void {
  if (!session) throw new KeelError('auth.required');
  if ((session.stage ?? 'ok') !== 'ok') throw new KeelError('auth.two_factor_required');
}

function mark(handler: MiddlewareHandler<AppEnv>, access: RouteAccess): MiddlewareHandler<AppEnv> {
  declared.set(handler, access);
  return handler;
}

/**
 * Requires the signed-in user to hold `permission` (403 `auth.forbidden`, 401 without a session).
 * @example createRoute({ ..., middleware: [permit('host.manage')] as const })
 */
export function permit(permission: Permission): MiddlewareHandler<AppEnv> {
  return mark(
    createMiddleware<AppEnv>(async (c, next) => {
      const session = c.get('session') as AppEnv['Variables']['session'] | undefined;
      requireSignedIn(session);
      requireAccess(session?.actor, permission);
      await next();
    }),
    permission,
  );
}

/** Declares a route open to anyone (sign-in, health, API docs). */
permit.public = (): MiddlewareHandler<AppEnv> =>
  mark(
    createMiddleware<AppEnv>(async (_c, next) => next()),
    'public',
  );

/**
 * Declares a route open to any signed-in user, whatever their role (their own session and account).
 * Not to API tokens: a token cannot change its user's password, 2FA, sessions or tokens.
 */
permit.signedIn = (): MiddlewareHandler<AppEnv> =>
  mark(
    createMiddleware<AppEnv>(async (c, next) => {
      const session = c.get('session') as AppEnv['Variables']['session'] | undefined;
      requireSignedIn(session);
      if (session?.via === 'token') throw new KeelError('auth.forbidden', 'Not with an API token: sign in.');
      await next();
    }),
    'signed-in',
  );

/**
 * Declares a route open to a session at any stage of sign-in: one that still owes its second
 * factor or must enroll one (finishing sign-in, enrolling, signing out). Not to API tokens.
 */
permit.signingIn = (): MiddlewareHandler<AppEnv> =>
  mark(
    createMiddleware<AppEnv>(async (c, next) => {
      const session = c.get('session') as AppEnv['Variables']['session'] | undefined;
      if (!session) throw new KeelError('auth.required');
      if (session.via === 'token') throw new KeelError('auth.forbidden', 'Not with an API token: sign in.');
      await next();
    }),
    'signed-in',
  );
