// The agent capability contract: each capability (facts, diagnostics, later supervisor, metrics,
// terminal, configs, files) is one folder that declares the requests it serves, the streams it
// sends and the channel kinds it opens, with optional start/stop. `main.ts` composes the list;
// the link announces the union to the controller. A capability loads heavy modules (e.g.
// systeminformation) with a dynamic import on first use, so an agent pays only for what it uses.
import type { Logger } from 'pino';
import type { RequestName, RequestParams, RequestResult, SessionFrame } from '@keel/shared';
import type { ChannelHandler } from './channels/hub.ts';
import type { RequestContext, RequestHandler } from './link/requests.ts';
import type { Spool } from './link/spool.ts';

/** What a started capability may use. */
export interface CapabilityContext {
  log: Logger;
  /** Appends an event to the host event stream (`{ kind, ...data }`). */
  emit(kind: string, data?: Record<string, unknown>): void;
  /** Sends a sealed frame on the current session; dropped while not connected. */
  send(frame: SessionFrame): void;
  /** Calls `listener` after every welcome (each new session with the controller). */
  onSession(listener: () => void): void;
  /** The spool of a stream the capability declared in `streams` (the link sends what is appended). */
  stream(name: string): Spool;
}

/** Typed handlers for catalogue requests: params and result types come from the catalogue. */
export type CapabilityRequests = {
  [N in RequestName]?: (
    params: RequestParams<N>,
    ctx: RequestContext,
  ) => RequestResult<N> | Promise<RequestResult<N>>;
};

/**
 * One agent capability.
 *
 * @example
 * export function factsCapability(): AgentCapability {
 *   return { name: 'facts', requests: { 'facts.refresh': async () => ({ facts: await collect() }) } };
 * }
 */
export interface AgentCapability {
  name: string;
  requests?: CapabilityRequests;
  /** Stream names it appends to (each needs a spool; see main.ts). */
  streams?: string[];
  /** Channel kinds it opens. */
  channels?: Readonly<Record<string, ChannelHandler>>;
  start?(ctx: CapabilityContext): void | Promise<void>;
  stop?(): void | Promise<void>;
}

/** The union of a list of capabilities, as the link and the channel hub take it. */
export interface ComposedCapabilities {
  handlers: Record<string, RequestHandler>;
  streams: string[];
  channels: Record<string, ChannelHandler>;
}

/** Merges capabilities; a request, stream or channel kind claimed twice is a programming error. */
export function composeCapabilities(list: readonly AgentCapability[]): ComposedCapabilities {
  const out: ComposedCapabilities = { handlers: {}, streams: [], channels: {} };
  const owner = new Map<string, string>();
  const claim = (what: string, cap: AgentCapability) => {
    const taken = owner.get(what);
    if (taken) throw new Error(`${what} is declared by both ${taken} and ${cap.name}`);
    owner.set(what, cap.name);
  };
  for (const cap of list) {
    for (const [name, handler] of Object.entries(cap.requests ?? {})) {
      claim(`request ${name}`, cap);
      out.handlers[name] = handler as RequestHandler;
    }
    for (const name of cap.streams ?? []) {
      claim(`stream ${name}`, cap);
      out.streams.push(name);
    }
    for (const [kind, handler] of Object.entries(cap.channels ?? {})) {
      claim(`channel ${kind}`, cap);
      out.channels[kind] = handler;
    }
  }
  return out;
}

/** Starts capabilities in order; one that fails to start is logged and the rest still start. */
export async function startCapabilities(
  list: readonly AgentCapability[],
  ctx: CapabilityContext,
): Promise<void> {
  for (const cap of list) {
    try {
      await cap.start?.(ctx);
    } catch (err) {
      ctx.log.error({ err, capability: cap.name }, 'capability failed to start');
    }
  }
}

/** Stops capabilities in reverse order. */
export async function stopCapabilities(list: readonly AgentCapability[], log: Logger): Promise<void> {
  for (const cap of [...list].reverse()) {
    try {
      await cap.stop?.();
    } catch (err) {
      log.error({ err, capability: cap.name }, 'capability failed to stop');
    }
  }
}
