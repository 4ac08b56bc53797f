// How failures leave the API: every error is `{ error: { code, message } }` with the catalogue's
// status. Unknown errors are logged and become a bare 500 `internal`, so no detail leaks out.
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import { errorCatalogue, KeelError, type ErrorCode } from '@keel/shared';

/** Sends one API error body. */
export function sendError(c: Context, code: ErrorCode, message?: string): Response {
  const status = errorCatalogue[code].status as ContentfulStatusCode;
  return c.json({ error: { code, message: message ?? errorCatalogue[code].message } }, status);
}

/** Maps KeelError, Hono's HTTPException and anything else to the API error shape. */
export function errorHandler(log: Logger): ErrorHandler {
  return (err, c) => {
    if (err instanceof KeelError) {
      // Throttling errors say when to come back (RFC 9110 Retry-After, in seconds).
      const retryAfter = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;
      if (typeof retryAfter === 'number') c.header('retry-after', String(Math.max(1, Math.ceil(retryAfter))));
      return sendError(c, err.code, err.message);
    }
    if (err instanceof HTTPException) {
      // Hono raises these for malformed JSON bodies, body limits and the like.
      const status = err.status;
      if (status === 404) return sendError(c, 'not_found');
      if (status === 413) return sendError(c, 'request.too_large');
      if (status === 415) return sendError(c, 'request.unsupported_media_type');
      if (status >= 400 && status < 500) return sendError(c, 'request.invalid', err.message || undefined);
    }
    log.error({ err, method: c.req.method, path: c.req.path }, 'unhandled error');
    return sendError(c, 'internal');
  };
}

/** 404 for any path nothing answered. */
export const notFound: NotFoundHandler = (c) =>
  sendError(c, 'not_found', `No route for ${c.req.method} ${c.req.path}.`);
