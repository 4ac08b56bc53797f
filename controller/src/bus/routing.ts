// Agent requests between controller replicas: a request for a host whose session is on another
// replica (hosts.session_replica, read per request) is sent to that replica over the MQTT bus, which
// asks its agent and answers, instead of waiting for the host to connect here. The caller sees what a local request gives:
// the agent's result, or a KeelError with the same codes (request.deadline_exceeded when no answer
// comes in time, whichever side timed out).
//
// A request acts on an agent, so the broker (any client with its credentials) must not be able to
// forge one: requests and answers are sealed under a key derived from the master key the replicas
// share (KEEL_MASTER_KEY, already required of replicas on one database), which also keeps their
// params off the broker.
// A request carries its time and id: one older than REQUEST_MAX_AGE_MS, or seen before, is dropped.
//
// Revocations go the same way, sealed, to every replica (revocationTopic): the one holding the
// host's session closes it as a local revocation does (closeCodes.revoked), and every replica
// refuses the agent's handshakes from then on, before the session start reads it from the database.
//
// isOnline keeps meaning "a session on this controller" (traffic scrapes pick the replica that acts
// for a host by it, and the scheduler prefers a replica holding a target host); services that check
// before a one-shot request or a job's channel ask isReachable instead (here, or through the
// replica holding the session). Live channels (terminal bytes, log tails, job runs) are routed by
// bus/channels.ts.
import { randomUUID } from 'node:crypto';
import { KeelError, isErrorCode, requestDefinition } from '@keel/shared';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AgentGateway, AgentRequestMap, AgentRequestMethod } from '../gateway/types.ts';
import type { Host } from '../repositories/hosts.ts';
import { createSecretBox, SEALED_PREFIX, type SecretBox } from '../secrets.ts';
import type { MqttReplicaBus } from './mqtt.ts';
import { replyTopic, requestTopic, revocationTopic } from './topics.ts';

/**
 * Why a host whose session a replica gone from the bus holds cannot be reached from here (a routed
 * channel, request or job host on it fails at once with this, instead of waiting for an answer).
 */
export const HOLDER_GONE =
  "the controller replica holding this host's session stopped or lost the message bus: the host is offline here until its agent connects to a replica again (it does so by itself) or that replica is back on the bus";
/** Why a host online on another replica is not reached (this one has no broker now). */
export const ON_UNREACHABLE_REPLICA =
  'the host is online on another controller replica, which this one cannot reach now (it has lost the message bus)';

function upperFirst(text: string): string {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

/** A routed request older than this (clock skew included) is refused as a possible replay. */
export const REQUEST_MAX_AGE_MS = 60_000;
/** Revocations kept while the broker is away (beyond, the database refuses the agents' next sessions). */
const MAX_UNSENT_REVOCATIONS = 10_000;
/** Time for the answer to travel back, beyond the request's own deadline. */
const TRANSIT_MARGIN_MS = 2_000;
const SEAL_REQUEST = 'keel.bus.request';
const SEAL_REPLY = 'keel.bus.reply';
const SEAL_REVOCATION = 'keel.bus.revocation';

const requestSchema = z.object({
  id: z.string().min(1).max(100),
  at: z.number(),
  from: z.string().min(1).max(100),
  hostId: z.string().min(1).max(200),
  method: z.string().min(1).max(200),
  params: z.unknown(),
  timeoutMs: z.number().int().positive().max(3_600_000),
});
const replySchema = z.union([
  z.object({ id: z.string(), ok: z.literal(true), result: z.unknown() }),
  z.object({
    id: z.string(),
    ok: z.literal(false),
    error: z.object({ code: z.string(), message: z.string().max(10_000) }),
  }),
]);
const revocationSchema = z.object({
  id: z.string().min(1).max(100),
  at: z.number(),
  from: z.string().min(1).max(100),
  hostId: z.string().min(1).max(200),
  reason: z.literal('revoked'),
});
const envelope = z.object({ v: z.literal(1), sealed: z.string().max(64 * 1024 * 1024) });

export interface RequestRoutingOptions {
  bus: MqttReplicaBus;
  /** This replica's own gateway (the agents whose sessions are here). */
  gateway: AgentGateway;
  /** This replica's lease id: what hosts.session_replica names. */
  replicaId: string;
  hosts: { get(id: string): Promise<Host | null> };
  /**
   * The master key's box: messages are sealed under a key derived from it for this purpose
   * (REQUEST_KEY_PURPOSE), never under the master key itself, which seals the secrets at rest.
   */
  secrets: Pick<SecretBox, 'deriveKey'>;
  log: Logger;
  /**
   * True while the replica with this lease id is gone from the bus (bus/channels.ts, its will):
   * requests for its hosts fail at once with HOLDER_GONE instead of waiting out their deadline.
   */
  holderGone?: (leaseId: string) => boolean;
}

/** What the routed requests', replies' and revocations' key is derived for (secrets.deriveKey). */
export const REQUEST_KEY_PURPOSE = 'keel.bus.requests';

/** What routing counted since start. */
export interface RoutingStats {
  /** Requests this replica sent to another. */
  routed: number;
  /** Requests other replicas sent here that reached the gateway. */
  served: number;
  /** Messages dropped: unsealed or forged, malformed, too old or replayed. */
  refused: number;
  /** Revocations this replica sent to the others. */
  revocationsSent: number;
  /** Revocations from other replicas that closed a session held here. */
  revocationsApplied: number;
}

/**
 * The gateway the services and routes use on a replica with an MQTT bus: this replica's agents
 * as before, and the hosts another replica holds through that replica.
 * @example const agents = routeRequests({ bus, gateway, replicaId: lease.id, hosts, secrets, log })
 */
export function routeRequests(
  opts: RequestRoutingOptions,
): AgentGateway & { stats(): RoutingStats; close(): void } {
  const { bus, gateway, replicaId, log } = opts;
  // Its own key: the broker sees every routed message, and under the master key they would share
  // AES-GCM's random-nonce budget (and any nonce collision's damage) with the secrets at rest.
  const secrets = createSecretBox(opts.secrets.deriveKey(REQUEST_KEY_PURPOSE));
  const stats: RoutingStats = {
    routed: 0,
    served: 0,
    refused: 0,
    revocationsSent: 0,
    revocationsApplied: 0,
  };
  const pending = new Map<string, { resolve(v: unknown): void; reject(e: Error): void }>();
  const seen = new Map<string, number>();
  const refuse = refusals(log, stats, 'routed agent request message dropped');

  /** Opens a sealed envelope; null (counted) when it is not one of ours. */
  const open = (body: Buffer, context: string): unknown => {
    try {
      const outer = envelope.safeParse(JSON.parse(body.toString('utf8')));
      // open() passes legacy plaintext through (secrets at rest from before sealing): not here.
      if (outer.success && outer.data.sealed.startsWith(SEALED_PREFIX)) {
        return JSON.parse(secrets.open(outer.data.sealed, context));
      }
      refuse('malformed');
    } catch {
      // Not JSON, or not sealed under this master key: forged, or replicas with different keys.
      refuse('not sealed under this master key (replicas must share KEEL_MASTER_KEY)');
    }
    return null;
  };
  const seal = (value: unknown, context: string) =>
    JSON.stringify({ v: 1, sealed: secrets.seal(JSON.stringify(value), context) });

  /** False (counted) for a message older than REQUEST_MAX_AGE_MS or seen before. */
  const fresh = (id: string, sentAt: number): boolean => {
    const now = Date.now();
    if (Math.abs(now - sentAt) > REQUEST_MAX_AGE_MS) {
      refuse('too old', { age: now - sentAt });
      return false;
    }
    if (seen.has(id)) {
      refuse('replayed');
      return false;
    }
    seen.set(id, now);
    for (const [seenId, at] of seen) {
      if (now - at <= REQUEST_MAX_AGE_MS * 2) break; // insertion order: the rest are newer
      seen.delete(seenId);
    }
    return true;
  };

  // Answers for the requests this replica routed.
  const stopReplies = bus.listen(replyTopic(bus.prefix, replicaId), (body) => {
    const parsed = replySchema.safeParse(open(body, SEAL_REPLY));
    if (!parsed.success) return;
    const waiting = pending.get(parsed.data.id);
    if (!waiting) return; // timed out meanwhile
    pending.delete(parsed.data.id);
    if (parsed.data.ok) waiting.resolve(parsed.data.result);
    else {
      const { code, message } = parsed.data.error;
      waiting.reject(new KeelError(isErrorCode(code) ? code : 'request.failed', message));
    }
  });

  // Requests other replicas route here, for the agents whose sessions are here.
  const stopRequests = bus.listen(requestTopic(bus.prefix, replicaId), (body) => {
    const parsed = requestSchema.safeParse(open(body, SEAL_REQUEST));
    if (!parsed.success) return;
    const req = parsed.data;
    if (!fresh(req.id, req.at)) return;
    stats.served++;
    const answer = (reply: unknown) => {
      if (!bus.client.connected) return;
      bus.client.publish(replyTopic(bus.prefix, req.from), seal(reply, SEAL_REPLY), { qos: 1 });
    };
    gateway
      .request(req.hostId, req.method as AgentRequestMethod, req.params as never, {
        timeoutMs: req.timeoutMs,
      })
      .then(
        (result) => answer({ id: req.id, ok: true, result }),
        (err: unknown) => {
          const error =
            err instanceof KeelError
              ? err.toJSON()
              : { code: 'request.failed', message: 'The agent could not carry out the request.' };
          answer({ id: req.id, ok: false, error });
        },
      );
  });

  // Revocations made through another replica: the session held here closes as a local one does.
  const stopRevocations = bus.listen(revocationTopic(bus.prefix), (body) => {
    const parsed = revocationSchema.safeParse(open(body, SEAL_REVOCATION));
    if (!parsed.success) return;
    const revocation = parsed.data;
    if (revocation.from === replicaId || !fresh(revocation.id, revocation.at)) return;
    if (gateway.disconnect(revocation.hostId, revocation.reason)) {
      stats.revocationsApplied++;
      log.info(
        { host: revocation.hostId, by: revocation.from },
        'session closed: host revoked on another replica',
      );
    }
  });

  // Revocations made while the broker was away go out when it is back (a few, kept by host).
  const unsentRevocations = new Set<string>();
  function announceRevocation(hostId: string): void {
    if (!bus.client.connected) {
      if (unsentRevocations.size < MAX_UNSENT_REVOCATIONS) unsentRevocations.add(hostId);
      log.warn({ host: hostId }, 'revocation kept until the broker is back: the other replicas hear it then');
      return;
    }
    const revocation = { id: randomUUID(), at: Date.now(), from: replicaId, hostId, reason: 'revoked' };
    bus.client.publish(revocationTopic(bus.prefix), seal(revocation, SEAL_REVOCATION), { qos: 1 });
    stats.revocationsSent++;
  }
  const sendUnsentRevocations = () => {
    const waiting = [...unsentRevocations];
    unsentRevocations.clear();
    for (const hostId of waiting) announceRevocation(hostId);
  };
  bus.client.on('connect', sendUnsentRevocations);

  async function routed(
    hostId: string,
    method: string,
    params: unknown,
    timeoutMs: number,
  ): Promise<unknown> {
    const host = await opts.hosts.get(hostId);
    const holder = host?.online ? host.sessionReplica : null;
    if (!holder || holder === replicaId || !bus.client.connected) return null;
    if (opts.holderGone?.(holder)) throw new KeelError('host.offline', upperFirst(HOLDER_GONE));
    const id = randomUUID();
    stats.routed++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new KeelError('request.deadline_exceeded'));
      }, timeoutMs + TRANSIT_MARGIN_MS);
      timer.unref();
      pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve({ value: v })),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      const request = { id, at: Date.now(), from: replicaId, hostId, method, params, timeoutMs };
      bus.client.publish(requestTopic(bus.prefix, holder), seal(request, SEAL_REQUEST), { qos: 1 });
    });
  }

  return {
    async request<M extends AgentRequestMethod>(
      hostId: string,
      method: M,
      params: AgentRequestMap[M]['params'],
      reqOpts: { timeoutMs?: number } = {},
    ): Promise<AgentRequestMap[M]['result']> {
      const def = requestDefinition(method);
      if (gateway.isOnline(hostId) || !def) return gateway.request(hostId, method, params, reqOpts);
      const answered = (await routed(hostId, method, params, reqOpts.timeoutMs ?? def.timeoutMs)) as {
        value: unknown;
      } | null;
      // Not held by another replica (or no broker now): the local gateway waits for it, as before.
      if (!answered) return gateway.request(hostId, method, params, reqOpts);
      // The other replica's gateway validated the agent's answer; it is checked here again, since
      // it crossed the broker.
      const valid = def.result.safeParse(answered.value);
      if (!valid.success) throw new KeelError('agent.bad_result');
      return valid.data as AgentRequestMap[M]['result'];
    },
    // Both keep their contract, "on this controller": traffic scrapes decide with isOnline which
    // replica acts for a host, the scheduler which replica claims a slot first.
    // A revocation closes the session wherever it is: here at once, elsewhere through the bus
    // (sent in any case: the holder named in the database may be changing, and every replica
    // refuses the agent's handshakes from then on). Without a broker now, the holder closes the
    // session when the agent next connects (its session start reads the revocation).
    disconnect(hostId, reason) {
      const hadSession = gateway.disconnect(hostId, reason);
      announceRevocation(hostId);
      return hadSession;
    },
    isOnline: (hostId) => gateway.isOnline(hostId),
    // For one-shot requests (process actions, proxy pushes, intervals): here, or held by another
    // replica while the broker is up, so the request is routed instead of refused as host.offline.
    async isReachable(hostId) {
      if (gateway.isOnline(hostId)) return true;
      if (!bus.client.connected) return false;
      const host = await opts.hosts.get(hostId);
      const holder = host?.online ? host.sessionReplica : null;
      return !!(holder && holder !== replicaId && !opts.holderGone?.(holder));
    },
    // Why a host online in the database is not reachable from here, for the refusal's message.
    async unreachableReason(hostId) {
      if (gateway.isOnline(hostId)) return null;
      const host = await opts.hosts.get(hostId);
      const holder = host?.online ? host.sessionReplica : null;
      if (!holder || holder === replicaId) return null;
      if (!bus.client.connected) return ON_UNREACHABLE_REPLICA;
      return opts.holderGone?.(holder) ? HOLDER_GONE : null;
    },
    capabilitiesOf: (hostId) => gateway.capabilitiesOf?.(hostId) ?? null,
    stats: () => ({ ...stats }),
    close() {
      stopReplies();
      stopRequests();
      stopRevocations();
      bus.client.off('connect', sendUnsentRevocations);
      for (const [, p] of pending) p.reject(new KeelError('request.disconnected'));
      pending.clear();
    },
  };
}

/**
 * A routed message dropped: counted in `stats.refused` at once, warned about at most once a minute
 * (the broker is untrusted input, and a flood of bad messages must not flood the log). Shared by
 * routed requests and routed channels.
 * @example const refuse = refusals(log, stats, 'routed channel message dropped'); refuse('malformed');
 */
export function refusals(log: Logger, stats: { refused: number }, message: string) {
  let lastLog = 0;
  return (why: string, extra: Record<string, unknown> = {}): void => {
    stats.refused++;
    const now = Date.now();
    if (now - lastLog > 60_000) {
      lastLog = now;
      log.warn({ why, refused: stats.refused, ...extra }, message);
    }
  };
}
