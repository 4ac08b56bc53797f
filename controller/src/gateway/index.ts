// The agent gateway: accepts agent WebSockets at /agent/v1 on the controller's HTTP server, runs
// the handshake, keeps one live sealed session per host, brokers requests, ingests streams with
// cumulative acks, and publishes online/offline/facts changes on the bus.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  closeCodes,
  closeReason,
  controllerPreAuthFrames,
  ControllerHandshake,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  HandshakeFailure,
  KeelError,
  SealedChannel,
  toB64u,
  type SessionFrame,
  type SigningIdentity,
} from '@keel/shared';
import type { AgentGateway, AgentRequestMap, AgentRequestMethod, HostView } from './types.ts';
import type { GatewayHost, GatewayStore, PresenceChange, SessionInfo } from './store.ts';
import { RequestBroker } from './requests.ts';
import { StreamIngest } from './ingest.ts';
import { BatchLoader } from './batch-loader.ts';

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
}

/** The path agents dial. */
export const AGENT_PATH = '/agent/v1';

/** One authenticated agent connection, from the handshake until it closes. */
interface AgentSession {
  ws: WebSocket;
  channel: SealedChannel;
  /** Set once the key is matched to an enrolled host. */
  hostId: string | null;
  ingest: StreamIngest | null;
  /** Welcome sent: frames are dispatched, requests may be sent. */
  ready: boolean;
  ended: boolean;
  /** Frames that arrived before the session was ready (bounded). */
  early: [SessionFrame, Buffer][];
  /** The peer's address, for log lines. */
  peer: string | undefined;
  /** Stream window offered in this session's welcome. */
  windowBytes: number;
}

/** How long a live session gets to answer before a newcomer with its key replaces it. */
const CONFLICT_PROBE_MS = 2_000;
/** Unacknowledged stream data the gateway plans for across all sessions. */
const INGEST_BUDGET_BYTES = 512 * 1024 * 1024;
/** Smallest window offered: one batch of 256 KiB in flight, so every host still makes progress. */
const MIN_WINDOW_BYTES = 256 * 1024;
/** How long presence changes gather before a group commit; online state shows this much later. */
const PRESENCE_LINGER_MS = 20;
/** How long session starts gather before their cursors are read in one query. */
const SESSION_INFO_LINGER_MS = 5;
/** Frames an agent may send before its welcome; more is a protocol violation. */
const MAX_EARLY_FRAMES = 64;
/** Largest handshake message; the socket's limit is raised to maxFrameBytes only after auth. */
const PRE_AUTH_MAX_PAYLOAD = 4096;

/** The running gateway: attach it to an HTTP server, use it through the AgentGateway contract. */
export class Gateway implements AgentGateway {
  readonly wss: WebSocketServer;
  #opts: Required<Omit<GatewayOptions, 'onHostChanged' | 'onHostViews'>> &
    Pick<GatewayOptions, 'onHostChanged' | 'onHostViews'>;
  #live = new Map<string, AgentSession>();
  #revoked = new Set<string>();
  /** Presence and facts waiting for the next group commit; the latest change per host wins. */
  #pendingPresence = new Map<string, PresenceChange>();
  #flushing: Promise<void> | null = null;
  /**
   * Enrolled agent keys -> hosts, so a handshake needs no database read: every active host is
   * loaded at start (loadKeys), enrollments on this controller are added, and a key that is not
   * here (enrolled through another controller) is looked up in the store and kept. Revocations on
   * this controller apply at once (#revoked); one made by another controller is caught when the
   * session starts (sessionInfoOf reads it from the store).
   */
  #hostByKey = new Map<string, GatewayHost>();
  #hostLoader: BatchLoader<string, GatewayHost>;
  #sessionLoader: BatchLoader<string, SessionInfo>;
  #broker: RequestBroker;
  #heartbeat: NodeJS.Timeout;
  #alive = new WeakMap<WebSocket, boolean>();
  #closing = false;
  /** Handshakes in progress, in all and per client address. */
  #pending = 0;
  #pendingByPeer = new Map<string, number>();
  #refusedSince = 0;
  #refusedWarnAt = 0;
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
    this.#broker = new RequestBroker((hostId, frame) => {
      const live = this.#live.get(hostId);
      if (!live || !live.ready || live.ended || live.channel.closed) return null;
      live.channel.send(frame);
      return live;
    });
    this.#hostLoader = new BatchLoader((keys) => this.#opts.store.findHostsByKeys(keys));
    // Every session start reads its host's cursors: a short linger batches a reconnect storm.
    this.#sessionLoader = new BatchLoader((ids) => this.#opts.store.sessionInfoOf(ids), {
      lingerMs: SESSION_INFO_LINGER_MS,
    });
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
      // Unauthenticated peers get a bounded share: a flood of half-done handshakes (or of
      // enroll-mode hellos, which the controller signs) cannot take every socket and the CPU.
      const peer = clientAddress(req, this.#opts.trustProxy);
      const fromPeer = this.#pendingByPeer.get(peer) ?? 0;
      if (
        this.#pending >= this.#opts.maxPendingHandshakes ||
        fromPeer >= this.#opts.maxPendingHandshakesPerAddress
      ) {
        this.#refuse(socket, peer);
        return;
      }
      this.#pending++;
      this.#pendingByPeer.set(peer, fromPeer + 1);
      let counted = true;
      const settle = () => {
        if (!counted) return;
        counted = false;
        this.#pending--;
        const left = (this.#pendingByPeer.get(peer) ?? 1) - 1;
        if (left > 0) this.#pendingByPeer.set(peer, left);
        else this.#pendingByPeer.delete(peer);
      };
      socket.once('close', settle);
      this.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, peer, settle));
    });
  }

  /** Answers an upgrade over the pending-handshake bounds with 503 (agents retry with backoff). */
  #refuse(socket: Duplex, peer: string): void {
    this.#refusedSince++;
    const now = Date.now();
    if (now - this.#refusedWarnAt >= 10_000) {
      this.#opts.log.warn(
        { peer, refused: this.#refusedSince, pending: this.#pending },
        'too many agent handshakes in progress; refusing new ones for now',
      );
      this.#refusedWarnAt = now;
      this.#refusedSince = 0;
    }
    // The HTTP server allows half-open sockets: destroy once the answer is out (or soon after),
    // so a peer that never closes its side cannot keep refused sockets around.
    socket.once('finish', () => socket.destroy());
    setTimeout(() => socket.destroy(), 1_000).unref();
    socket.end(
      'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n',
    );
  }

  /** Handshakes in progress (for tests and /metrics). */
  get pendingHandshakes(): number {
    return this.#pending;
  }

  /** Number of live authenticated sessions. */
  get onlineCount(): number {
    return this.#live.size;
  }

  isOnline(hostId: string): boolean {
    return this.#live.get(hostId)?.ready === true;
  }

  request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    params: AgentRequestMap[M]['params'],
    opts: { timeoutMs?: number } = {},
  ): Promise<AgentRequestMap[M]['result']> {
    if (this.#revoked.has(hostId)) return Promise.reject(new KeelError('host.revoked'));
    return this.#broker.request(hostId, method, params, opts.timeoutMs ?? 10_000) as Promise<
      AgentRequestMap[M]['result']
    >;
  }

  disconnect(hostId: string, reason: 'revoked'): boolean {
    // Remembered so a session that is still starting (its host looked up before the revoke
    // committed) is refused too.
    this.#revoked.add(hostId);
    this.#broker.failHost(hostId, new KeelError('host.revoked'));
    const live = this.#live.get(hostId);
    if (!live) return false;
    live.channel.send({
      type: 'error',
      error: { code: 'handshake.revoked', message: 'This host was revoked.' },
    });
    // The session ends now: nothing more is dispatched or stored, whatever the peer still sends.
    void this.#ended(live);
    safeClose(live.ws, closeCodes.revoked, reason);
    setTimeout(() => live.ws.terminate(), 500).unref();
    return true;
  }

  /** Stops accepting agents and closes every session with "going away". */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    this.#broker.close();
    const sessions = [...this.#live.values()];
    for (const ws of this.wss.clients) safeClose(ws, closeCodes.goingAway, 'controller shutting down');
    await Promise.all(sessions.map((s) => s.ingest?.drain()));
    await Promise.all(sessions.map((s) => this.#ended(s)));
    await this.flushPresence();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  #beat(): void {
    for (const ws of this.wss.clients) {
      if (this.#alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      this.#alive.set(ws, false);
      ws.ping();
    }
  }

  #accept(ws: WebSocket, peer: string, settle: () => void): void {
    // One logger for all sessions, with the peer and host as fields: a child logger per
    // connection costs more than the rest of the session's bookkeeping.
    const log = this.#opts.log;
    setMaxPayload(ws, PRE_AUTH_MAX_PAYLOAD);
    this.#alive.set(ws, true);
    ws.on('pong', () => this.#alive.set(ws, true));
    ws.on('error', (err) => log.debug({ peer, err: err.message }, 'agent socket error'));
    const handshake = new ControllerHandshake({ identity: this.#opts.identity });
    let session: AgentSession | null = null;
    let enrolling: SealedChannel | null = null;
    let knownHost: GatewayHost | null = null;
    let state: 'hello' | 'checking' | 'auth' | 'session' | 'enroll' = 'hello';
    // Runs until a connect-mode session starts or an enroll frame arrives.
    const timer = setTimeout(() => {
      reject(closeCodes.handshakeTimeout, 'handshake.failed', 'handshake timed out');
    }, this.#opts.handshakeTimeoutMs);
    timer.unref();

    const reject = (code: number, errorCode: string, message: string) => {
      clearTimeout(timer);
      log.info({ peer, code, errorCode, reason: message }, 'agent rejected');
      if (ws.readyState === ws.OPEN) {
        if (state !== 'session' && state !== 'enroll') {
          ws.send(encodeHandshakeFrame({ type: 'error', code: errorCode, message: message.slice(0, 500) }));
        }
        safeClose(ws, code, message);
      }
    };

    const handshakeError = (err: unknown) => {
      if (err instanceof HandshakeFailure) {
        reject(
          err.code === 'handshake.version' ? closeCodes.version : closeCodes.handshakeFailed,
          err.code,
          err.message,
        );
      } else {
        log.error({ peer, err }, 'handshake error');
        reject(closeCodes.internal, 'internal', 'internal error');
      }
    };

    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.#alive.set(ws, true);
      const bytes = toBuffer(data);
      if (state === 'session') return session?.channel.receive(bytes);
      if (state === 'enroll') return enrolling?.receive(bytes);
      if (!isBinary) return reject(closeCodes.malformed, 'frame.malformed', 'handshake frames are binary');
      if (state === 'checking') {
        return reject(closeCodes.unexpected, 'frame.unexpected', 'frame before hello was answered');
      }
      const decoded = decodeHandshakeFrame(controllerPreAuthFrames, bytes);
      if (!decoded.ok) return reject(closeCodes.malformed, 'frame.malformed', decoded.reason);
      const frame = decoded.value;
      try {
        if (state === 'hello') {
          if (frame.type !== 'hello') {
            return reject(closeCodes.unexpected, 'frame.unexpected', `expected hello, got ${frame.type}`);
          }
          state = 'checking';
          const answer = (host: GatewayHost | null) => {
            knownHost = host;
            if (ws.readyState !== ws.OPEN) return;
            if (frame.mode === 'connect' && !host) {
              return reject(closeCodes.unknownAgent, 'handshake.unknown_agent', 'agent key is not enrolled');
            }
            if (host && (host.revoked || this.#revoked.has(host.id))) {
              return reject(closeCodes.revoked, 'handshake.revoked', 'agent has been revoked');
            }
            try {
              ws.send(encodeHandshakeFrame(handshake.onHello(frame)));
              state = 'auth';
            } catch (err) {
              handshakeError(err);
            }
          };
          // Enrolling agents have no host yet; known keys are answered at once, others looked up.
          const indexed = frame.mode === 'connect' ? this.#hostByKey.get(frame.agentKey) : undefined;
          if (frame.mode === 'enroll' || indexed) return answer(indexed ?? null);
          void this.#lookUpKey(frame.agentKey).then(answer, (err: unknown) => {
            log.error({ peer, err }, 'hello check failed');
            reject(closeCodes.internal, 'internal', 'internal error');
          });
          return;
        }
        if (frame.type !== 'auth') {
          return reject(closeCodes.unexpected, 'frame.unexpected', `expected auth, got ${frame.type}`);
        }
        const sealed = handshake.onAuth(frame);
        this.handshakes++;
        setMaxPayload(ws, this.#opts.maxFrameBytes);
        const agentKey = toB64u(sealed.peerKey);
        // A connect-mode agent proved an enrolled key: no longer a pending handshake. An enrolling
        // one only proved a key it may have just made up, so it keeps its place until it closes.
        if (handshake.mode !== 'enroll') settle();
        if (handshake.mode === 'enroll') {
          // The handshake timer keeps running until the enroll frame arrives.
          state = 'enroll';
          enrolling = new SealedChannel(ws, sealed, {
            onFrame: (f) => {
              clearTimeout(timer);
              void this.#onEnrollFrame(ws, enrolling!, agentKey, f, peer);
            },
            onProtocolError: (code, reason) =>
              log.info({ peer, code, reason }, 'enrolling agent sent a bad frame'),
          });
          return;
        }
        clearTimeout(timer);
        state = 'session';
        const s: AgentSession = {
          ws,
          hostId: null,
          ingest: null,
          ready: false,
          ended: false,
          early: [],
          peer,
          // Shared by the whole fleet, not only who is connected now: after a restart the first
          // hosts back must not take the budget the rest will need.
          windowBytes: streamWindow(
            this.#opts.windowBytes,
            Math.max(this.#live.size + 1, this.#hostByKey.size),
          ),
          channel: new SealedChannel(ws, sealed, {
            onFrame: (f, body) => {
              if (s.ended) return;
              if (s.ready) return this.#onSessionFrame(s, f, body);
              if (s.early.length >= MAX_EARLY_FRAMES)
                return s.channel.fail(closeCodes.unexpected, 'too many frames before welcome');
              s.early.push([f, body]);
            },
            onProtocolError: (code, reason) =>
              log.warn({ peer, host: s.hostId, code, reason }, 'agent sent a bad frame; closing'),
          }),
        };
        session = s;
        void this.#startSession(s, knownHost).catch((err: unknown) => {
          log.error({ peer, host: s.hostId, err }, 'session start failed');
          safeClose(ws, closeCodes.internal, 'internal error');
        });
      } catch (err) {
        handshakeError(err);
      }
    });

    ws.on('close', (code) => {
      clearTimeout(timer);
      enrolling?.markClosed();
      if (session) {
        if (session.hostId) log.info({ peer, host: session.hostId, code }, 'agent disconnected');
        void this.#ended(session);
      }
    });
  }

  /** A key missing from the index, looked up in the store (enrolled through another controller?). */
  async #lookUpKey(agentKey: string): Promise<GatewayHost | null> {
    const host = (await this.#hostLoader.load(agentKey)) ?? null;
    if (host && !host.revoked) this.#hostByKey.set(agentKey, host);
    return host;
  }

  async #onEnrollFrame(
    ws: WebSocket,
    channel: SealedChannel,
    agentKey: string,
    frame: SessionFrame,
    peer: string | undefined,
  ) {
    const log = this.#opts.log;
    if (frame.type !== 'enroll')
      return channel.fail(closeCodes.unexpected, `expected enroll, got ${frame.type}`);
    try {
      const host = await this.#opts.store.enroll({
        publicKey: agentKey,
        name: frame.name?.trim() || frame.facts.hostname,
        facts: frame.facts,
        tokenSecret: frame.token,
      });
      this.#hostByKey.set(agentKey, { id: host.id, revoked: false });
      log.info({ peer, host: host.id }, 'agent enrolled');
      channel.send({ type: 'enrolled', hostId: host.id });
      this.#opts.onHostChanged?.(host.id);
      safeClose(ws, 1000, 'enrolled');
    } catch (err) {
      const error = err instanceof KeelError ? err : new KeelError('internal');
      if (!(err instanceof KeelError)) log.error({ peer, err }, 'enroll failed');
      channel.send({ type: 'error', error: error.toJSON() });
      safeClose(ws, closeCodes.unknownAgent, error.code);
    }
  }

  async #startSession(s: AgentSession, host: GatewayHost | null): Promise<void> {
    // The host was looked up for this very handshake (hello); revocations since then are in #revoked.
    if (s.ended) return;
    if (!host || host.revoked || this.#revoked.has(host.id)) {
      safeClose(
        s.ws,
        host ? closeCodes.revoked : closeCodes.unknownAgent,
        host ? 'revoked' : 'unknown agent',
      );
      return;
    }
    // Identity comes only from the handshake key: nothing in a frame can name another host.
    const hostId = host.id;
    s.hostId = hostId;
    const log = this.#opts.log;
    s.ingest = new StreamIngest({
      hostId,
      store: this.#opts.store,
      ack: (stream, seq) => s.channel.send({ type: 'stream.ack', stream, seq }),
      fail: (code, reason) => s.channel.fail(code, reason),
      log,
      windowBytes: s.windowBytes,
      maxFrameBytes: this.#opts.maxFrameBytes,
    });
    const previous = this.#live.get(hostId);
    if (previous && (await answersPing(previous.ws, CONFLICT_PROBE_MS))) {
      // The existing session is alive, so this is another machine with the same key (a cloned
      // image), not a reconnect: keep the working session and refuse the newcomer.
      this.#warnConflict(hostId, s.peer);
      safeClose(s.ws, closeCodes.conflict, 'another machine is connected with this agent key');
      return;
    }
    if (s.ended) return;
    const current = this.#live.get(hostId);
    this.#live.set(hostId, s);
    if (current) {
      log.info({ peer: s.peer, host: hostId }, 'a newer session replaces the previous one');
      safeClose(current.ws, closeCodes.replaced, 'replaced by a newer session');
      await this.#ended(current);
    }
    const info = await this.#sessionLoader.load(hostId);
    if (s.ended || this.#closing || this.#live.get(hostId) !== s) return;
    // Revoked since the key was cached (possibly by another controller): refuse now.
    if (info?.revoked) this.#revoked.add(hostId);
    const cursors = info?.cursors ?? {};
    if (this.#revoked.has(hostId)) {
      s.channel.fail(closeCodes.revoked, 'revoked');
      return;
    }
    s.channel.send({
      type: 'welcome',
      hostId,
      cursors,
      maxFrameBytes: this.#opts.maxFrameBytes,
      windowBytes: s.windowBytes,
    });
    s.ready = true;
    log.info({ peer: s.peer, host: hostId, session: s.channel.session.id }, 'agent online');
    this.#queuePresence(hostId, { online: true });
    for (const [frame, body] of s.early.splice(0)) this.#onSessionFrame(s, frame, body);
    this.#broker.hostOnline(hostId);
  }

  #onSessionFrame(s: AgentSession, frame: SessionFrame, body: Buffer): void {
    const hostId = s.hostId!;
    switch (frame.type) {
      case 'res':
        this.#broker.onResponse(hostId, frame);
        return;
      case 'stream.data':
        s.ingest!.push(frame, body);
        return;
      case 'facts':
        this.#queuePresence(hostId, { facts: frame.facts });
        return;
      default:
        s.channel.fail(closeCodes.unexpected, `frame ${frame.type} is not allowed from an agent`);
    }
  }

  #conflictWarnedAt = new Map<string, number>();

  /**
   * Logs and audits a key conflict at most once a minute per host (a clone retries every half
   * minute): the trail shows admins which host was cloned and from where.
   */
  #warnConflict(hostId: string, peer: string | undefined): void {
    const last = this.#conflictWarnedAt.get(hostId) ?? 0;
    if (Date.now() - last < 60_000) return;
    this.#conflictWarnedAt.set(hostId, Date.now());
    this.#opts.log.warn(
      { host: hostId, peer },
      'a second machine presents this host key while the host is connected (cloned disk image?); refused it',
    );
    this.#opts.store
      .recordKeyConflict(hostId, peer ?? null)
      .catch((err: unknown) => this.#opts.log.error({ err, host: hostId }, 'auditing a key conflict failed'));
  }

  /** Ends a session once, whichever comes first: its close, a replacement, a revoke, shutdown. */
  async #ended(s: AgentSession): Promise<void> {
    if (s.ended) return;
    s.ended = true;
    s.ready = false;
    s.early = [];
    s.channel.markClosed();
    s.ingest?.stop();
    const hostId = s.hostId;
    if (!hostId) return;
    if (this.#live.get(hostId) === s) this.#live.delete(hostId);
    this.#broker.hostOffline(hostId, s);
    // A newer session of the same host may already be live: then it stays online.
    if (!this.#live.has(hostId)) this.#queuePresence(hostId, { online: false });
  }

  /** Records a presence/facts change for the next group commit and starts one if idle. */
  #queuePresence(hostId: string, change: PresenceChange): void {
    const merged = { ...this.#pendingPresence.get(hostId), ...change };
    this.#pendingPresence.set(hostId, merged);
    // A short linger lets a burst of connects (a controller restart) share one commit.
    this.#flushing ??= new Promise((resolve) => setTimeout(resolve, PRESENCE_LINGER_MS)).then(() =>
      this.#flushLoop(),
    );
  }

  /** Writes pending presence in batches, one transaction at a time, until none is left. */
  async #flushLoop(): Promise<void> {
    try {
      while (this.#pendingPresence.size > 0) {
        const started = Date.now();
        const batch = this.#pendingPresence;
        this.#pendingPresence = new Map();
        let views: HostView[];
        try {
          views = await this.#opts.store.applyPresence(batch, new Date());
        } catch (err) {
          // Nothing is dropped: the batch goes back under any newer changes and is retried, host
          // by host if need be, so one bad row cannot hold the whole fleet's presence hostage.
          this.#opts.log.error({ err, hosts: batch.size }, 'storing host presence failed; retrying');
          views = await this.#applyOneByOne(batch);
        }
        this.#opts.onHostViews?.(views);
        // The next batch gathers for a linger too, so a storm of connects shares few commits.
        const wait = PRESENCE_LINGER_MS - (Date.now() - started);
        if (this.#pendingPresence.size > 0 && wait > 0 && !this.#closing) {
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  /** Stores a failed batch host by host; a host whose write still fails is retried later. */
  async #applyOneByOne(batch: Map<string, PresenceChange>): Promise<HostView[]> {
    const views: HostView[] = [];
    for (const [hostId, change] of batch) {
      try {
        views.push(...(await this.#opts.store.applyPresence(new Map([[hostId, change]]), new Date())));
      } catch (err) {
        this.#opts.log.error({ err, host: hostId }, 'storing this host presence failed; will retry');
        const newer = this.#pendingPresence.get(hostId);
        this.#pendingPresence.set(hostId, { ...change, ...newer });
        // Back off so a database outage does not spin.
        await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
      }
    }
    return views;
  }

  /** Resolves when every presence change queued so far is stored. */
  async flushPresence(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }
}

/**
 * The stream window offered to a new session: the configured window while the fleet (enrolled
 * hosts, or live sessions if more) is small, shrinking as it grows so that, with one busy stream per host, all hosts' unacknowledged data
 * stays near the ingest budget (a slow database then costs bounded memory however many stream).
 */
export function streamWindow(configured: number, sessions: number): number {
  const share = Math.floor(INGEST_BUDGET_BYTES / Math.max(1, sessions));
  return Math.max(MIN_WINDOW_BYTES, Math.min(configured, share));
}

/** Resolves true when the peer answers a ping within `ms` (its connection is alive). */
function answersPing(ws: WebSocket, ms: number): Promise<boolean> {
  if (ws.readyState !== ws.OPEN) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (alive: boolean) => {
      clearTimeout(timer);
      ws.off('pong', onPong);
      ws.off('close', onClose);
      resolve(alive);
    };
    const onPong = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    timer.unref();
    ws.on('pong', onPong);
    ws.on('close', onClose);
    ws.ping();
  });
}

/** The client's address: the last X-Forwarded-For hop when the proxy is trusted, else the socket's. */
function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const last = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded)?.split(',').pop()?.trim();
    if (last) return last.slice(0, 64);
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** Closes a socket with a reason that always fits; falls back to terminate. */
function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, closeReason(reason));
  } catch {
    ws.terminate();
  }
}

/**
 * Sets the largest message this socket accepts. `ws` has one limit per server, so a pre-auth
 * peer could otherwise make it buffer maxFrameBytes; this narrows it per connection until the
 * handshake is done (a test asserts a larger pre-auth message is refused with 1009).
 */
function setMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
