// How a capability declares what travels on the agent link: requests (controller -> agent, typed
// params and result, a default deadline, the agent version that first served it) and stream kinds
// (agent -> controller records, their codec and durability). Definitions live in
// `shared/src/messages/<family>.ts` and are collected in `shared/src/catalogue.ts`.
import type { z } from 'zod';

/**
 * The agent version before announcements (protocol 1): what it served is the baseline an agent
 * that announces nothing is assumed to serve — the definitions marked `since: BASELINE_AGENT_VERSION`.
 */
export const BASELINE_AGENT_VERSION = '0.1.0';
/**
 * The `since` of a definition that names none: the next release. So a request added without
 * thinking about versions is never assumed to be served by an agent that announces nothing.
 */
export const NEXT_AGENT_VERSION = '0.2.0';

let lazySchemasBuilt = 0;
/** How many `lazySchema`s this process has built so far (tests: what loading a module builds). */
export function builtLazySchemaCount(): number {
  return lazySchemasBuilt;
}

/**
 * A schema built the first time it is used, then the same object every time: what a message family
 * exports, so that loading the protocol package builds no schema (an idle agent needs the frame and
 * handshake schemas only; every request, stream and channel schema built at start cost ~3,000 zod
 * objects, ~1.5-2 MB of heap: docs/benchmarks.md, agent-idle). It has the schema's own type and
 * forwards every property to it (parse, shape, extend, `_zod` …), so callers and zod itself use it
 * as the schema. It is a stand-in object, not the schema: compare schemas by what they accept,
 * never by identity.
 *
 * @example
 * export const hostNameSchema = lazySchema(() => z.string().max(253));
 */
export function lazySchema<T extends object>(build: () => T): T {
  let schema: T | undefined;
  const real = (): T => {
    if (schema === undefined) {
      schema = build();
      lazySchemasBuilt++;
    }
    return schema;
  };
  return new Proxy({} as T, {
    get: (_, key) => {
      const s = real();
      const value: unknown = Reflect.get(s, key, s);
      return value;
    },
    set: (_, key, value) => Reflect.set(real(), key, value),
    has: (_, key) => Reflect.has(real(), key),
    ownKeys: () => Reflect.ownKeys(real()),
    // Reported configurable: the stand-in itself holds no property (a Proxy invariant).
    getOwnPropertyDescriptor: (_, key) => {
      const d = Reflect.getOwnPropertyDescriptor(real(), key);
      return d && { ...d, configurable: true };
    },
    defineProperty: (_, key, d) => Reflect.defineProperty(real(), key, d),
    deleteProperty: (_, key) => Reflect.deleteProperty(real(), key),
    getPrototypeOf: () => Reflect.getPrototypeOf(real()),
  });
}

/** One agent request: its name, params and result schemas, default deadline, first agent version. */
export interface RequestDefinition<
  N extends string = string,
  P extends z.ZodType = z.ZodType,
  R extends z.ZodType = z.ZodType,
> {
  readonly name: N;
  readonly params: P;
  readonly result: R;
  /** Deadline when the caller gives none, ms. */
  readonly timeoutMs: number;
  /** The first agent version that serves it (named in `agent.unsupported` errors; default: the next release). */
  readonly since: string;
}

/**
 * Defines an agent request.
 *
 * @example
 * export const pingRequest = defineRequest('ping', {
 *   params: z.strictObject({}),
 *   result: z.strictObject({ agentTime: z.number() }),
 *   timeoutMs: 10_000,
 *   since: '0.2.0', // the first agent version that serves it
 * });
 */
export function defineRequest<N extends string, P extends z.ZodType, R extends z.ZodType>(
  name: N,
  def: { params: P; result: R; timeoutMs: number; since?: string },
): RequestDefinition<N, P, R> {
  return Object.freeze({ name, since: NEXT_AGENT_VERSION, ...def });
}

/**
 * How a stream's records are encoded: `json` records are UTF-8 JSON objects (host events), `bytes`
 * records are opaque (log lines). Either way the batch format is the one of `records.ts`.
 */
export type StreamCodec = 'json' | 'bytes';

/**
 * A stream's durability class. `durable`: fsync'd in the agent's spool, acked by the controller
 * only after a database commit, replayed after reconnect (events, logs, metrics).
 */
export type StreamDurability = 'durable';

/** One stream kind. */
export interface StreamDefinition<N extends string = string> {
  readonly name: N;
  readonly codec: StreamCodec;
  readonly durability: StreamDurability;
  /** The first agent version that sends it. */
  readonly since: string;
}

/** Defines a stream kind, e.g. `defineStream('events', { codec: 'json', durability: 'durable' })`. */
export function defineStream<N extends string>(
  name: N,
  def: { codec: StreamCodec; durability: StreamDurability; since?: string },
): StreamDefinition<N> {
  return Object.freeze({ name, since: NEXT_AGENT_VERSION, ...def });
}
