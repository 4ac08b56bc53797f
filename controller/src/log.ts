// The controller's logger: pino JSON lines on stdout (journald-friendly), level from the config,
// in the format every Keel process shares (shared/src/log-format.ts), with secrets censored
// wherever they appear in a logged object (top level or up to two levels deep), and errors
// serialized without the values a database error carries (its query parameters, its detail).
import pino from 'pino';
import type { Logger, DestinationStream } from 'pino';
import { logFormat } from '@keel/shared';
import type { LogLevel } from './config/index.ts';

export type { Logger } from 'pino';

/** Field names whose values are never written to the log. */
export const secretFields = [
  'password',
  'passwordHash',
  'token',
  'tokenSecret',
  'secret',
  'secretHash',
  'cookie',
  'authorization',
  'csrfToken',
  'databaseUrl',
  'privateKey',
] as const;

/** pino redact paths: each secret field at the top level and one or two objects deep. */
export const redactPaths: string[] = secretFields
  .flatMap((f) => [f, `*.${f}`, `*.*.${f}`])
  .concat([
    // Header bags as hono/node expose them, including `set-cookie` and `x-csrf-token`.
    '*.headers["set-cookie"]',
    '*.headers["x-csrf-token"]',
    '*.*.headers["set-cookie"]',
    '*.*.headers["x-csrf-token"]',
  ]);

/** Fields of an error (or its causes) that hold the values of a failed query. */
const queryValueFields = new Set(['params', 'parameters', 'args', 'detail', 'queryOptions', 'values']);

/** Every query value an error and its causes carry, as text, longest first. */
function queryValues(err: unknown): string[] {
  const found = new Set<string>();
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    for (const field of ['params', 'parameters']) {
      const list = (e as Record<string, unknown>)[field];
      if (!Array.isArray(list)) continue;
      found.add(String(list)); // drizzle's message says `params: ${params}`
      for (const v of list) {
        const text =
          v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v);
        // Shorter values (ids' fragments, small numbers, booleans) would only garble the text.
        if (text.length >= 4) found.add(text);
      }
    }
    e = (e as { cause?: unknown }).cause;
  }
  return [...found].filter((v) => v.length >= 4).sort((a, b) => b.length - a.length);
}

function scrub(value: unknown, values: string[], depth: number): unknown {
  if (typeof value === 'string') {
    let text = value;
    for (const v of values) text = text.split(v).join('[redacted]');
    return text;
  }
  if (depth > 5 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, values, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] = queryValueFields.has(key) ? '[redacted]' : scrub(v, values, depth + 1);
  }
  return out;
}

/**
 * pino's error serializer, minus the values of a failed query. A database error (drizzle's, and
 * the PGlite or postgres.js error it wraps) carries every parameter of the statement, in fields and
 * in its message (and PostgreSQL quotes a bad value in its own message): a failing insert would log
 * the password hash or secret it carried, past the field-name redaction. The SQL text
 * (placeholders only) and the SQLSTATE code stay.
 */
export function serializeError(err: unknown): unknown {
  const serialized = err instanceof Error ? pino.stdSerializers.err(err) : err;
  return scrub(serialized, queryValues(err), 0);
}

/**
 * Creates the controller logger. `destination` defaults to stdout; tests pass a stream.
 *
 * @example const log = createLogger({ logLevel: config.logLevel }); log.info({ host }, 'host online')
 */
export function createLogger(
  options: { logLevel: LogLevel; name?: string },
  // Synchronous: every line is whole and in order with whatever else writes to stdout (the
  // first-start banner, the local agent's forwarded output). An asynchronous destination saved
  // little in a reconnect storm and let those writes land inside a log line.
  destination: DestinationStream = pino.destination({ dest: 1, sync: true }),
): Logger {
  return pino(
    {
      name: options.name ?? 'keel-controller',
      level: options.logLevel,
      redact: { paths: redactPaths, censor: '[redacted]' },
      serializers: { err: serializeError, error: serializeError },
      ...logFormat,
    },
    destination,
  );
}
