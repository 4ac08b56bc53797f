// The controller's logger: pino JSON lines on stdout (journald-friendly), level from the config,
// with secrets censored wherever they appear in a logged object (top level or up to two levels deep).
import pino from 'pino';
import type { Logger, DestinationStream } from 'pino';
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
      // ISO time reads better in journald and survives log shippers that drop numeric epochs.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
