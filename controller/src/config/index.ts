// Controller configuration: defaults, then an optional JSON file, then environment variables
// (each layer overrides the one before). Every key is validated; a bad value fails start-up with
// an error that names the key and where it came from. Documented in docs/operations.md.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

/** Log levels pino accepts, most to least verbose, plus `silent`. */
export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/** The controller's validated configuration. */
export interface Config {
  /** TCP port the HTTP server (API, console, agent WebSocket) listens on. */
  port: number;
  /** Address the HTTP server binds to. */
  host: string;
  /** Absolute path of the directory for controller state (embedded database, keys). */
  dataDir: string;
  /** PostgreSQL connection URL; undefined means the embedded PGlite database in `<dataDir>/db`. */
  databaseUrl: string | undefined;
  /** The URL agents and browsers use to reach this controller (no trailing slash). */
  publicUrl: string;
  logLevel: LogLevel;
  /** Largest WebSocket frame accepted from an agent or browser, in bytes. */
  maxFrameBytes: number;
  /** Default lifetime of a new join token, in seconds. */
  joinTokenTtlSeconds: number;
  /** How long a live-channel WebSocket ticket may wait to be used, in seconds. */
  channelTicketTtlSeconds: number;
  /** Agent heartbeat period; an agent silent for a whole period after a ping is dropped. */
  heartbeatMs: number;
  /** Agent handshakes in progress (upgraded, not yet authenticated) at once; more get 503. */
  maxPendingHandshakes: number;
  /** The same per client address (the forwarded one when trustProxy is set). */
  maxPendingHandshakesPerAddress: number;
  /** Trust X-Forwarded-For / X-Forwarded-Proto from a reverse proxy in front of the controller. */
  trustProxy: boolean;
  /**
   * MQTT broker shared by controller replicas (`mqtt://`, `mqtts://`, `ws://`, `wss://`); undefined
   * means the in-process bus. May hold a password: never logged (see bus/mqtt.ts redactUrl).
   */
  mqttUrl: string | undefined;
  /** Topic prefix of this deployment's bus on the broker (`keel`, `keel/prod`): see docs/architecture.md. */
  mqttTopicPrefix: string;
  /**
   * With a broker: seconds between checks of the agent sessions this replica holds against the
   * revocations in the database (catches a revocation message lost on the broker).
   */
  revocationCheckSeconds: number;
  /** The JSON config file that was read, if any (absolute path). */
  configFile: string | undefined;
}

/** Thrown when the configuration cannot be read or a value is invalid; the message names the key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();

/** One configuration key: its env var, its name in the JSON file, its schema and default. */
interface KeyDef {
  env: string;
  /** Other env vars read when `env` is unset (names the docs promised before `env` existed). */
  aliases?: string[];
  file: keyof FileShape;
  /** The JSON type the file must use (env values are always strings and get coerced). */
  type: 'number' | 'string' | 'boolean';
  schema: z.ZodType;
  /** The value may hold a password: never echo it in an error. */
  secret?: boolean;
}

/** The JSON config file's shape: every key optional, same meaning as the env var. */
interface FileShape {
  port?: number;
  host?: string;
  dataDir?: string;
  databaseUrl?: string;
  publicUrl?: string;
  logLevel?: LogLevel;
  maxFrameBytes?: number;
  joinTokenTtlSeconds?: number;
  channelTicketTtlSeconds?: number;
  trustProxy?: boolean;
  heartbeatMs?: number;
  maxPendingHandshakes?: number;
  maxPendingHandshakesPerAddress?: number;
  mqttUrl?: string;
  mqttTopicPrefix?: string;
  revocationCheckSeconds?: number;
}

const keys: Record<keyof FileShape, KeyDef> = {
  port: { env: 'KEEL_PORT', file: 'port', type: 'number', schema: port },
  host: { env: 'KEEL_HOST', file: 'host', type: 'string', schema: z.string().min(1) },
  dataDir: { env: 'KEEL_DATA_DIR', file: 'dataDir', type: 'string', schema: z.string().min(1) },
  databaseUrl: {
    env: 'DATABASE_URL',
    file: 'databaseUrl',
    type: 'string',
    secret: true,
    schema: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      .pipe(z.url()),
  },
  publicUrl: {
    env: 'KEEL_PUBLIC_URL',
    file: 'publicUrl',
    type: 'string',
    schema: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  },
  logLevel: { env: 'KEEL_LOG_LEVEL', file: 'logLevel', type: 'string', schema: z.enum(logLevels) },
  maxFrameBytes: {
    env: 'KEEL_MAX_FRAME_BYTES',
    file: 'maxFrameBytes',
    type: 'number',
    // Below 64 KiB a single stream batch would not fit; above 1 GiB `ws` cannot buffer it.
    schema: positiveInt.min(65536).max(1 << 30),
  },
  joinTokenTtlSeconds: {
    env: 'KEEL_JOIN_TOKEN_TTL',
    file: 'joinTokenTtlSeconds',
    type: 'number',
    schema: positiveInt,
  },
  channelTicketTtlSeconds: {
    env: 'KEEL_CHANNEL_TICKET_TTL_SECONDS',
    file: 'channelTicketTtlSeconds',
    type: 'number',
    // A ticket is a bearer secret in a URL: it must stay short-lived.
    schema: positiveInt.max(300),
  },
  heartbeatMs: {
    env: 'KEEL_HEARTBEAT_MS',
    file: 'heartbeatMs',
    type: 'number',
    schema: positiveInt.min(100).max(300_000),
  },
  maxPendingHandshakes: {
    env: 'KEEL_MAX_PENDING_HANDSHAKES',
    file: 'maxPendingHandshakes',
    type: 'number',
    schema: positiveInt.max(1_000_000),
  },
  maxPendingHandshakesPerAddress: {
    env: 'KEEL_MAX_PENDING_HANDSHAKES_PER_ADDRESS',
    file: 'maxPendingHandshakesPerAddress',
    type: 'number',
    schema: positiveInt.max(1_000_000),
  },
  trustProxy: {
    env: 'KEEL_TRUST_PROXY',
    file: 'trustProxy',
    type: 'boolean',
    schema: z.union([z.boolean(), z.stringbool()]),
  },
  mqttUrl: {
    env: 'KEEL_MQTT_URL',
    // DESIGN.md and early notes name it MQTT_URL (as DATABASE_URL): read too.
    aliases: ['MQTT_URL'],
    file: 'mqttUrl',
    type: 'string',
    secret: true,
    schema: z
      .string()
      .regex(/^(mqtts?|wss?):\/\//, 'must be an mqtt://, mqtts://, ws:// or wss:// URL')
      .pipe(z.url()),
  },
  mqttTopicPrefix: {
    env: 'KEEL_MQTT_TOPIC_PREFIX',
    file: 'mqttTopicPrefix',
    type: 'string',
    // Topic levels without wildcards, without a leading or trailing slash: `keel`, `keel/prod`.
    schema: z
      .string()
      .regex(
        /^[^/#+]+(\/[^/#+]+)*$/,
        'must be topic levels separated by "/", without "+", "#" or empty levels',
      )
      .refine((v) => !v.includes('\0'), 'must not hold a NUL character')
      .max(200),
  },
  revocationCheckSeconds: {
    env: 'KEEL_REVOCATION_CHECK_SECONDS',
    file: 'revocationCheckSeconds',
    type: 'number',
    schema: positiveInt.max(3600),
  },
};

const defaults = {
  port: 8080,
  host: '0.0.0.0',
  dataDir: './data',
  logLevel: 'info' as LogLevel,
  maxFrameBytes: 4 * 1024 * 1024,
  joinTokenTtlSeconds: 3600,
  channelTicketTtlSeconds: 30,
  trustProxy: false,
  heartbeatMs: 5000,
  maxPendingHandshakes: 4096,
  maxPendingHandshakesPerAddress: 512,
  mqttTopicPrefix: 'keel',
  revocationCheckSeconds: 30,
};

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read config file ${file} (KEEL_CONFIG): ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`Config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`Config file ${file} must hold a JSON object`);
  }
  const record = parsed as Record<string, unknown>;
  const unknownKeys = Object.keys(record).filter((k) => k !== '$schema' && !Object.hasOwn(keys, k));
  if (unknownKeys.length > 0) {
    throw new ConfigError(
      `Config file ${file} has unknown key(s): ${unknownKeys.join(', ')} (known: ${Object.keys(keys).join(', ')})`,
    );
  }
  return record;
}

/** A zod issue in words: z.coerce turns "eighty" into NaN, which zod reports as "received NaN". */
function plainIssue(issue: { code?: string; expected?: string; message: string }): string {
  if (issue.code === 'invalid_type' && issue.expected === 'int') return 'must be a whole number';
  if (issue.code === 'invalid_type' && issue.expected === 'number') return 'must be a number';
  return issue.message;
}

/**
 * Reads the configuration from `env` and an optional JSON file (`file`, else `env.KEEL_CONFIG`).
 * Environment variables win over the file, the file over the defaults. Empty env values count as
 * unset. Throws ConfigError naming the offending key.
 *
 * @example loadConfig({ KEEL_PORT: '9000', DATABASE_URL: 'postgres://keel@db/keel' })
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, file?: string): Config {
  const configPath = file ?? (env.KEEL_CONFIG || undefined);
  const fromFile = configPath ? readConfigFile(configPath) : {};
  const values: Record<string, unknown> = {};

  for (const [name, def] of Object.entries(keys)) {
    const envName = [def.env, ...(def.aliases ?? [])].find((n) => env[n] !== undefined && env[n] !== '');
    const envValue = envName === undefined ? undefined : env[envName];
    let raw: unknown;
    let source: string;
    const shown = (value: unknown) => (def.secret ? 'value hidden' : `got ${JSON.stringify(value)}`);
    if (envValue !== undefined && envValue !== '') {
      raw = envValue;
      source = `${envName} (environment variable)`;
    } else if (fromFile[def.file] !== undefined) {
      raw = fromFile[def.file];
      source = `key "${def.file}" in ${configPath} (env ${def.env})`;
      // Coercion would turn `true` or `""` into numbers; insist on the right JSON type in a file.
      if (typeof raw !== def.type) {
        throw new ConfigError(`Invalid ${source}: expected a ${def.type} (${shown(raw)})`);
      }
    } else {
      continue;
    }
    const result = def.schema.safeParse(raw);
    if (!result.success) {
      const reason = result.error.issues.map(plainIssue).join('; ');
      throw new ConfigError(`Invalid ${source}: ${reason} (${shown(raw)})`);
    }
    values[name] = result.data;
  }

  const portValue = (values.port as number | undefined) ?? defaults.port;
  const publicUrl = (values.publicUrl as string | undefined) ?? `http://localhost:${portValue}`;
  return {
    port: portValue,
    host: (values.host as string | undefined) ?? defaults.host,
    dataDir: path.resolve((values.dataDir as string | undefined) ?? defaults.dataDir),
    databaseUrl: values.databaseUrl as string | undefined,
    publicUrl: publicUrl.replace(/\/+$/, ''),
    logLevel: (values.logLevel as LogLevel | undefined) ?? defaults.logLevel,
    maxFrameBytes: (values.maxFrameBytes as number | undefined) ?? defaults.maxFrameBytes,
    joinTokenTtlSeconds: (values.joinTokenTtlSeconds as number | undefined) ?? defaults.joinTokenTtlSeconds,
    channelTicketTtlSeconds:
      (values.channelTicketTtlSeconds as number | undefined) ?? defaults.channelTicketTtlSeconds,
    trustProxy: (values.trustProxy as boolean | undefined) ?? defaults.trustProxy,
    heartbeatMs: (values.heartbeatMs as number | undefined) ?? defaults.heartbeatMs,
    maxPendingHandshakes:
      (values.maxPendingHandshakes as number | undefined) ?? defaults.maxPendingHandshakes,
    maxPendingHandshakesPerAddress:
      (values.maxPendingHandshakesPerAddress as number | undefined) ??
      defaults.maxPendingHandshakesPerAddress,
    mqttUrl: values.mqttUrl as string | undefined,
    mqttTopicPrefix: (values.mqttTopicPrefix as string | undefined) ?? defaults.mqttTopicPrefix,
    revocationCheckSeconds:
      (values.revocationCheckSeconds as number | undefined) ?? defaults.revocationCheckSeconds,
    configFile: configPath ? path.resolve(configPath) : undefined,
  };
}
