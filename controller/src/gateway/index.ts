// The agent gateway: accepts agent WebSockets at /agent/v1 on the controller's HTTP server and
// composes its parts — admission (bounds on handshakes in progress), handshake, enrollment,
// sessions (one live sealed session per host), the frame router (sealed frames by `type`),
// requests, stream ingest and presence (group commits of online/offline/facts, published on the bus).
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  closeCodes,
  describeSchemaError,
  eventsStream,
  FrameRouter,
  KeelError,
  Liveness,
  requestDefinition,
  type HostCapabilities,
  type RequestDefinition,
  type SigningIdentity,
} from '@keel/shared';
import type { AgentGateway, AgentRequestMap, AgentRequestMethod, HostView } from './types.ts';
import type { GatewayHost, GatewayStore, SessionInfo } from './store.ts';
import { RequestBroker } from './requests.ts';
import { BatchLoader } from './batch-loader.ts';
import { Admission } from './admission.ts';
import { runHandshake } from './handshake.ts';
import { startEnrollment } from './enrollment.ts';
import { PresenceWriter } from './presence.ts';
import { EarlyBudget, SessionTable, type AgentSession } from './session.ts';
import { safeClose } from './socket.ts';
import { dropParts, checkParamsSize, onResponseHeader, onResultPart, sendRequest } from './parts.ts';
import { chunkSink, StreamSinks, type StoredRecords } from './sinks.ts';

export { AgentSession } from './session.ts';

export interface GatewayOptions {
  identity: SigningIdentity;
  store: GatewayStore;
  log: Logger;
  /** Largest WebSocket message accepted, bytes (ws `maxPayload`). */
  maxFrameBytes: number;
  /** Bytes an agent may have unacknowledged per stream. */
  windowBytes?: number;
  /** Heartbeat period; a peer silent for two periods is dropped. */
  heartbeatMs?: number;
  handshakeTimeoutMs?: number;
  /** Handshakes in progress at once (upgraded, not yet authenticated); beyond it: HTTP 503. */
  maxPendingHandshakes?: number;
  /** The same per client address; the bound a single address can hold of the above. */
  maxPendingHandshakesPerAddress?: number;
  /** Take the client address from X-Forwarded-For (the controller is behind a proxy). */
  trustProxy?: boolean;
  /** Called after a host was enrolled (its row is to be read and published). */
  onHostChanged?: (hostId: string) => void;
  /** Called with the hosts whose presence or facts a group commit just stored. */
  onHostViews?: (hosts: HostView[]) => void;
  /** Called with the records a stream sink just stored (published on the bus for live views). */
  onStreamStored?: (stored: StoredRecords) => void;
}

/** The path agents dial. */
export const AGENT_PATH = '/agent/v1';

/** Unacknowledged stream data the gateway plans for across all sessions. */
const INGEST_BUDGET_BYTES = 512 * 1024 * 1024;
/** Smallest window offered: one batch of 256 KiB in flight, so every host still makes progress. */
const MIN_WINDOW_BYTES = 256 * 1024;
/** Bytes buffered before welcome across all connections (each also has its own bound). */
const MAX_EARLY_BYTES_TOTAL = 64 * 1024 * 1024;
/** How long session starts gather before their cursors are read in one query. */
const SESSION_INFO_LINGER_MS = 5;

/** The running gateway: attach it to an HTTP server, use it through the AgentGateway contract. */
export class Gateway implements AgentGateway {
  readonly wss: WebSocketServer;
  /**
   * Sealed frames from agents, by `type`. A frame family plugs in with one `register` call; a
   * frame with no handler closes the session with `unexpected`.
   */
  readonly router = new FrameRouter<AgentSession>();
  #opts: Required<Omit<GatewayOptions, 'onHostChanged' | 'onHostViews' | 'onStreamStored'>> &
    Pick<GatewayOptions, 'onHostChanged' | 'onHostViews' | 'onStreamStored'>;
  /**
   * The sink of each stream kind: `events` in chunks, published as stored; a kind without a sink
   * of its own is stored in chunks too. A new kind registers here with one line.
   */
  readonly sinks: StreamSinks;
  #revoked = new Set<string>();
  /**
   * Enrolled agent keys -> hosts, so a handshake needs no database read: every active host is
   * loaded at start (loadKeys), enrollments on this controller are added, and a key that is not
   * here (enrolled through another controller) is looked up in the store and kept. Revocations on
   * this controller apply at once (#revoked); one made by another controller is caught when the
   * session starts (sessionInfoOf reads it from the store).
   */
  #hostByKey = new Map<string, GatewayHost>();
  #hostLoader: BatchLoader<string, GatewayHost>;
  #broker: RequestBroker;
  #admission: Admission;
  #presence: PresenceWriter;
  #sessions: SessionTable;
  #heartbeat: NodeJS.Timeout;
  #liveness = new WeakMap<WebSocket, Liveness>();
  /** When the oldest unanswered heartbeat ping went out, per socket. */
  #pingSentAt = new WeakMap<WebSocket, number>();
  /** The last heartbeat's round trip (ping out, pong in), per socket, in ms. */
  #heartbeatRtt = new WeakMap<WebSocket, number>();
  #closing = false;
  #earlyBudget = new EarlyBudget(MAX_EARLY_BYTES_TOTAL);
  /** Handshakes completed since start (for the connect benchmark and /metrics). */
  handshakes = 0;

  constructor(opts: GatewayOptions) {
    this.#opts = {
      windowBytes: 8 * 1024 * 1024,
      heartbeatMs: 5_000,
      handshakeTimeoutMs: 10_000,
      maxPendingHandshakes: 4096,
      maxPendingHandshakesPerAddress: 512,
      trustProxy: false,
      ...opts,
    };
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: true,
    });
    this.#admission = new Admission(
      {
        maxPending: this.#opts.maxPendingHandshakes,
        maxPendingPerAddress: this.#opts.maxPendingHandshakesPerAddress,
        trustProxy: this.#opts.trustProxy,
      },
      opts.log,
    );
    this.#broker = new RequestBroker((hostId, frame) => {
      const live = this.#sessions.get(hostId);
      if (!live || !live.ready || live.ended || live.channel.closed) return null;
      // A request that waited for its host is checked against what the host's agent serves now.
      const def = requestDefinition(frame.method);
      if (def) assertServes(live.capabilities, def);
      sendRequest(live, frame);
      return live;
    });
    this.#hostLoader = new BatchLoader((keys) => this.#opts.store.findHostsByKeys(keys));
    this.#presence = new PresenceWriter({
      store: opts.store,
      log: opts.log,
      onHostViews: opts.onHostViews
        ? (views) => opts.onHostViews?.(views.map((v) => ({ ...v, capabilities: this.capabilitiesOf(v.id) })))
        : undefined,
    });
    this.sinks = new StreamSinks(chunkSink({ store: opts.store })).register(
      eventsStream.name,
      chunkSink({ store: opts.store, publish: (stored) => this.#opts.onStreamStored?.(stored) }),
    );
    this.#sessions = new SessionTable({
      store: opts.store,
      sinks: this.sinks,
      // Every session start reads its host's cursors: a short linger batches a reconnect storm.
      sessionLoader: new BatchLoader<string, SessionInfo>((ids) => this.#opts.store.sessionInfoOf(ids), {
        lingerMs: SESSION_INFO_LINGER_MS,
      }),
      broker: this.#broker,
      presence: this.#presence,
      router: this.router,
      log: opts.log,
      maxFrameBytes: opts.maxFrameBytes,
      revoked: this.#revoked,
      earlyBudget: this.#earlyBudget,
      closing: () => this.#closing,
      // Shared by the whole fleet, not only who is connected now: after a restart the first
      // hosts back must not take the budget the rest will need.
      windowFor: () =>
        streamWindow(this.#opts.windowBytes, Math.max(this.#sessions.size + 1, this.#hostByKey.size)),
    });
    this.router
      .register('res', (frame, _body, s) => onResponseHeader(s, frame, this.#broker))
      .register('part', (frame, body, s) => onResultPart(s, frame, body, this.#broker))
      .register('stream.data', (frame, body, s) => s.ingest!.push(frame, body))
      .register('facts', (frame, _body, s) => this.#presence.queue(s.hostId!, { facts: frame.facts }));
    this.#sessions.onEnded((s) => dropParts(s));
    this.#heartbeat = setInterval(() => this.#beat(), this.#opts.heartbeatMs);
    this.#heartbeat.unref();
  }

  /** Loads the key index (every active host); call once before attaching. Returns its size. */
  async loadKeys(): Promise<number> {
    const keys = await this.#opts.store.activeHostKeys();
    for (const [key, host] of keys) this.#hostByKey.set(key, host);
    return keys.size;
  }

  /** Routes upgrade requests for /agent/v1 on `server` to the gateway. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== AGENT_PATH) return; // other upgrade handlers (console live data) may claim it
      if (this.#closing) {
        socket.destroy();
        return;
      }
      const admitted = this.#admission.admit(req, socket);
      if (!admitted) return;
      this.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, admitted.peer, admitted.settle));
    });
  }

  /** Handshakes in progress (for tests and /metrics). */
  get pendingHandshakes(): number {
    return this.#admission.pending;
  }

  /** Bytes agents sent before their welcome that are buffered now, in all (for tests and /metrics). */
  get bytesBeforeWelcome(): number {
    return this.#earlyBudget.used;
  }

  /** Number of live authenticated sessions. */
  get onlineCount(): number {
    return this.#sessions.size;
  }

  isOnline(hostId: string): boolean {
    return this.#sessions.get(hostId)?.ready === true;
  }

  /** The host's last heartbeat round trip in ms (ping to pong), from its ready session; undefined when none. */
  heartbeatRttMs(hostId: string): number | undefined {
    const s = this.sessionOf(hostId);
    return s ? this.#heartbeatRtt.get(s.ws) : undefined;
  }

  /** What the host's agent serves, from its ready session on this controller; null when none. */
  capabilitiesOf(hostId: string): HostCapabilities | null {
    const s = this.#sessions.get(hostId);
    return s?.ready && s.capabilities ? s.capabilities : null;
  }

  /** The host's ready session, if it has one on this controller (to send frames on it). */
  sessionOf(hostId: string): AgentSession | undefined {
    const s = this.#sessions.get(hostId);
    return s?.ready ? s : undefined;
  }

  /** Calls `listener` with every session that ends (closed, replaced, revoked, shutdown). */
  onSessionEnded(listener: (s: AgentSession) => void): () => void {
    return this.#sessions.onEnded(listener);
  }

  request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    params: AgentRequestMap[M]['params'],
    opts: { timeoutMs?: number } = {},
  ): Promise<AgentRequestMap[M]['result']> {
    const def = requestDefinition(method);
    if (!def) {
      return Promise.reject(new KeelError('request.unknown_method', `No agent request is named ${method}.`));
    }
    // Size first: validating a value far over the limit would hold the event loop for seconds.
    try {
      checkParamsSize(method, params);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const checked = def.params.safeParse(params);
    if (!checked.success) {
      return Promise.reject(
        new KeelError('request.invalid', `Bad params for ${method}: ${describeSchemaError(checked.error)}`),
      );
    }
    if (this.#revoked.has(hostId)) return Promise.reject(new KeelError('host.revoked'));
    // Refused without a round trip when the connected agent did not announce it. (A host that is
    // offline now is checked when its session starts, before the request is sent.)
    try {
      assertServes(this.capabilitiesOf(hostId), def);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.#broker
      .request(hostId, method, checked.data, opts.timeoutMs ?? def.timeoutMs)
      .then((result) => {
        // An agent is untrusted: its answer is validated here, before anything stores or shows it.
        const valid = def.result.safeParse(result);
        if (valid.success) return valid.data as AgentRequestMap[M]['result'];
        const why = describeSchemaError(valid.error);
        this.#opts.log.warn({ host: hostId, method, why }, 'agent answered with a malformed result');
        throw new KeelError(
          'agent.bad_result',
          `The agent's answer to ${method} is malformed (${why}); nothing was stored.`,
        );
      });
  }

  disconnect(hostId: string, reason: 'revoked'): boolean {
    // Remembered so a session that is still starting (its host looked up before the revoke
    // committed) is refused too.
    this.#revoked.add(hostId);
    this.#broker.failHost(hostId, new KeelError('host.revoked'));
    const live = this.#sessions.get(hostId);
    if (!live) return false;
    live.channel.send({
      type: 'error',
      error: { code: 'handshake.revoked', message: 'This host was revoked.' },
    });
    // The session ends now: nothing more is dispatched or stored, whatever the peer still sends.
    this.#sessions.end(live);
    safeClose(live.ws, closeCodes.revoked, reason);
    setTimeout(() => live.ws.terminate(), 500).unref();
    return true;
  }

  /** Stops accepting agents and closes every session with "going away". */
  async close(): Promise<void> {
    this.#closing = true;
    this.#presence.closing = true;
    clearInterval(this.#heartbeat);
    this.#broker.close();
    const sessions = [...this.#sessions.values()];
    for (const ws of this.wss.clients) safeClose(ws, closeCodes.goingAway, 'controller shutting down');
    await Promise.all(sessions.map((s) => s.ingest?.drain()));
    for (const s of sessions) this.#sessions.end(s);
    await this.flushPresence();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  /** Stores every ready session's host as online again (another replica had taken this one for gone). */
  reassertPresence(): void {
    for (const s of this.#sessions.values()) {
      if (s.ready && s.hostId) this.#presence.queue(s.hostId, { online: true });
    }
  }

  /** Resolves when every presence change queued so far is stored. */
  async flushPresence(): Promise<void> {
    await this.#presence.flush();
  }

  #beat(): void {
    for (const ws of this.wss.clients) {
      if (this.#liveness.get(ws)?.tick()) {
        ws.terminate();
        continue;
      }
      // A ping still unanswered keeps its time: the round trip counts from the first one.
      if (!this.#pingSentAt.has(ws)) this.#pingSentAt.set(ws, performance.now());
      ws.ping();
    }
  }

  #accept(ws: WebSocket, peer: string, settle: () => void): void {
    // One logger for all sessions, with the peer and host as fields: a child logger per
    // connection costs more than the rest of the session's bookkeeping.
    const log = this.#opts.log;
    const liveness = new Liveness(this.#opts.heartbeatMs);
    this.#liveness.set(ws, liveness);
    ws.on('pong', () => {
      liveness.heard();
      const sent = this.#pingSentAt.get(ws);
      if (sent === undefined) return;
      this.#pingSentAt.delete(ws);
      this.#heartbeatRtt.set(ws, performance.now() - sent);
    });
    ws.on('ping', () => liveness.heard());
    ws.on('message', () => liveness.heard());
    ws.on('error', (err) => log.debug({ peer, err: err.message }, 'agent socket error'));
    runHandshake(ws, peer, settle, {
      identity: this.#opts.identity,
      log,
      timeoutMs: this.#opts.handshakeTimeoutMs,
      maxFrameBytes: this.#opts.maxFrameBytes,
      indexedHost: (key) => this.#hostByKey.get(key),
      lookUpHost: (key) => this.#lookUpKey(key),
      isRevoked: (hostId) => this.#revoked.has(hostId),
      onAuthenticated: () => this.handshakes++,
      startSession: (conn) => this.#sessions.accept(conn),
      startEnrollment: (conn) =>
        startEnrollment(conn, {
          store: this.#opts.store,
          log,
          onEnrolled: (agentKey, hostId) => {
            this.#hostByKey.set(agentKey, { id: hostId, revoked: false });
            this.#opts.onHostChanged?.(hostId);
          },
        }),
    });
  }

  /** A key missing from the index, looked up in the store (enrolled through another controller?). */
  async #lookUpKey(agentKey: string): Promise<GatewayHost | null> {
    const host = (await this.#hostLoader.load(agentKey)) ?? null;
    if (host && !host.revoked) this.#hostByKey.set(agentKey, host);
    return host;
  }
}

/** Throws `agent.unsupported`, naming the agent version needed, when `caps` lacks the request. */
function assertServes(caps: HostCapabilities | null, def: RequestDefinition): void {
  if (!caps || caps.requests.includes(def.name)) return;
  const agent = caps.agentVersion
    ? `keel-agent ${caps.agentVersion}`
    : 'an agent that announces nothing (0.1.0 or older)';
  throw new KeelError(
    'agent.unsupported',
    `This host runs ${agent}, which does not serve ${def.name}; it needs keel-agent ${def.since} or newer.`,
  );
}

/**
 * The stream window offered to a new session: the configured window while the fleet (enrolled
 * hosts, or live sessions if more) is small, shrinking as it grows so that, with one busy stream
 * per host, all hosts' unacknowledged data stays near the ingest budget (a slow database then
 * costs bounded memory however many stream).
 */
export function streamWindow(configured: number, sessions: number): number {
  const share = Math.floor(INGEST_BUDGET_BYTES / Math.max(1, sessions));
  return Math.max(MIN_WINDOW_BYTES, Math.min(configured, share));
}
