// Request-level guards for the API: client address, request log, session, CSRF and role checks.
import { timingSafeEqual } from 'node:crypto';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import type { Logger } from 'pino';
import { KeelError } from '@keel/shared';
import type { UserRole } from '../repositories/users.ts';
import type { AuthService, AuthenticatedSession } from '../services/auth.ts';
import type { AppEnv } from './env.ts';

export const SESSION_COOKIE = 'keel_session';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Works out the client's address: the socket peer, or with `trustProxy` the address the nearest
 * proxy appended to X-Forwarded-For (the right-most entry; earlier ones are client-supplied).
 */
export function clientAddress(opts: { trustProxy: boolean }): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    let ip: string | null = null;
    if (opts.trustProxy) {
      const forwarded = c.req.header('x-forwarded-for');
      ip = forwarded?.split(',').pop()?.trim() || null;
    }
    if (!ip) {
      try {
        ip = getConnInfo(c).remote.address ?? null;
      } catch {
        // Not running on @hono/node-server (e.g. app.request() in tests).
        ip = null;
      }
    }
    c.set('clientIp', ip);
    await next();
  });
}

/**
 * One log line per request: method, path (no query), status, time, user and API token; never
 * headers or bodies. (Reads made with a token are visible here; the audit trail has its sign-ins
 * and mutating requests.)
 */
export function requestLog(log: Logger): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = performance.now();
    await next();
    const ms = Math.round((performance.now() - started) * 10) / 10;
    const session = c.get('session') as AuthenticatedSession | undefined;
    const entry = {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms,
      ip: c.get('clientIp'),
      userId: session?.user.id,
      tokenId: session?.token?.id,
    };
    if (c.res.status >= 500) log.error(entry, 'request failed');
    // API calls are worth a line each; console assets and health probes only when debugging.
    else if (c.req.path.startsWith('/api/')) log.info(entry, 'request');
    else log.debug(entry, 'request');
  });
}

/** True when this request reached us over https, or the controller's public URL is https. */
export function isSecureRequest(c: Context, publicUrl: string, trustProxy: boolean): boolean {
  if (publicUrl.startsWith('https:')) return true;
  if (new URL(c.req.url).protocol === 'https:') return true;
  return trustProxy && c.req.header('x-forwarded-proto') === 'https';
}

export interface CookieOptions {
  publicUrl: string;
  trustProxy: boolean;
}

/** Sets the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure over https. */
export function setSessionCookie(c: Context, secret: string, expiresAt: Date, opts: CookieOptions): void {
  setCookie(c, SESSION_COOKIE, secret, {
    httpOnly: true,
    sameSite: 'Strict',
    path: '/',
    secure: isSecureRequest(c, opts.publicUrl, opts.trustProxy),
    maxAge: Math.max(0, Math.floor((expiresAt.getTime() - Date.now()) / 1000)),
  });
}

export function clearSessionCookie(c: Context, opts: CookieOptions): void {
  deleteCookie(c, SESSION_COOKIE, {
    path: '/',
    httpOnly: true,
    sameSite: 'Strict',
    secure: isSecureRequest(c, opts.publicUrl, opts.trustProxy),
  });
}

/**
 * Requires a live session (401 `auth.required`); re-sends the cookie when the expiry slid. An
 * `Authorization: Bearer` API token is accepted instead of the cookie (API routes only: the console
 * pages are static and never look at it).
 */
export function requireSession(auth: AuthService, cookie: CookieOptions): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    const authorization = c.req.header('authorization');
    if (authorization !== undefined) {
      const [scheme, value] = authorization.split(/\s+/, 2);
      const bearer =
        scheme?.toLowerCase() === 'bearer' && value
          ? await auth.authenticateBearer(value, c.get('clientIp'), {
              userAgent: c.req.header('user-agent') ?? null,
            })
          : null;
      if (!bearer) throw new KeelError('auth.required', 'The API token is unknown, expired or revoked.');
      c.set('session', bearer);
      if (!MUTATING.has(c.req.method)) return next();
      // Every mutating request made with a token is audited with its outcome, allowed or not.
      let status = 500;
      try {
        await next();
        status = c.res.status;
      } catch (err) {
        if (err instanceof KeelError) status = err.status;
        throw err;
      } finally {
        await auth.recordTokenRequest(
          bearer,
          { method: c.req.method, path: c.req.path, status },
          c.get('clientIp'),
        );
      }
      return;
    }
    const secret = getCookie(c, SESSION_COOKIE);
    const session = await auth.authenticate(secret);
    if (!session || !secret) throw new KeelError('auth.required');
    c.set('session', session);
    if (session.renewed) setSessionCookie(c, secret, session.expiresAt, cookie);
    await next();
  });
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Rejects an API request whose Origin header names another site (403 `auth.csrf`), whatever the
 * method: mutations, and also reads a page elsewhere could start (the `/events` stream, a
 * WebSocket upgrade). Same-origin means the controller's public URL or the origin the request was
 * addressed to. Clients that are not browsers send no Origin and are not affected.
 */
export function sameOrigin(publicUrl: string): MiddlewareHandler<AppEnv> {
  const publicOrigin = new URL(publicUrl).origin;
  return createMiddleware<AppEnv>(async (c, next) => {
    const origin = c.req.header('origin');
    if (origin !== undefined && origin !== publicOrigin && origin !== new URL(c.req.url).origin) {
      throw new KeelError('auth.csrf', 'Cross-origin requests are not allowed.');
    }
    await next();
  });
}

/** CSP for API answers: JSON is never a document to run or embed. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/**
 * CSP header for console pages, on top of the strict policy the page's own <meta> carries (scripts
 * only from the origin or by hash, no inline script): what a <meta> policy cannot say.
 */
export const CONSOLE_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'";

/**
 * Sets a Content-Security-Policy header on answers that have none (the API docs page sets its own),
 * and a Permissions-Policy turning off device features the console never uses.
 */
export function contentSecurityPolicy(): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    await next();
    if (!c.res.headers.has('content-security-policy')) {
      const api = c.req.path === '/api' || c.req.path.startsWith('/api/');
      c.res.headers.set('content-security-policy', api ? API_CSP : CONSOLE_CSP);
    }
    c.res.headers.set('permissions-policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()');
  });
}

/** Requires `x-csrf-token` to equal the session's CSRF token on mutating requests. */
export function requireCsrfToken(): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    // A bearer token is never sent by a browser on its own: there is no cross-site request to forge.
    if (MUTATING.has(c.req.method) && c.get('session').via !== 'token') {
      const header = c.req.header('x-csrf-token');
      if (!header || !sameText(header, c.get('session').csrfToken)) throw new KeelError('auth.csrf');
    }
    await next();
  });
}

const rank: Record<UserRole, number> = { viewer: 0, operator: 1, admin: 2, owner: 3 };

/**
 * Requires the signed-in user's role to be at least `min` (403 `auth.forbidden`).
 * @example createRoute({ ..., middleware: [requireRole('admin')] as const })
 */
export function requireRole(min: UserRole): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async (c, next) => {
    const session = c.get('session') as AuthenticatedSession | undefined;
    if (!session) throw new KeelError('auth.required');
    if (rank[session.user.role] < rank[min]) throw new KeelError('auth.forbidden');
    await next();
  });
}
