// The agent gateway: accepts agent WebSockets at /agent/v1 on the controller's HTTP server, runs
// the handshake, keeps one live sealed session per host, brokers requests, ingests streams with
// cumulative acks, and publishes online/offline/facts changes on the bus.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  closeCodes,
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
import type { AgentGateway, AgentRequestMap, AgentRequestMethod } from './types.ts';
import type { GatewayStore } from './store.ts';
import { RequestBroker } from './requests.ts';
import { StreamIngest } from './ingest.ts';

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
  /** Called after a host's online state or facts changed. */
  onHostChanged?: (hostId: string) => void;
}

/** The path agents dial. */
export const AGENT_PATH = '/agent/v1';

interface LiveSession {
  hostId: string;
  ws: WebSocket;
  channel: SealedChannel;
  ingest: StreamIngest;
}

/** The running gateway: attach it to an HTTP server, use it through the AgentGateway contract. */
export class Gateway implements AgentGateway {
  readonly wss: WebSocketServer;
  #opts: Required<Omit<GatewayOptions, 'onHostChanged'>> & Pick<GatewayOptions, 'onHostChanged'>;
  #live = new Map<string, LiveSession>();
  #broker: RequestBroker;
  #heartbeat: NodeJS.Timeout;
  #alive = new WeakMap<WebSocket, boolean>();
  #closing = false;
  /** Handshakes completed since start (for the connect benchmark and /metrics). */
  handshakes = 0;

  constructor(opts: GatewayOptions) {
    this.#opts = {
      windowBytes: 8 * 1024 * 1024,
      heartbeatMs: 5_000,
      handshakeTimeoutMs: 10_000,
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
      if (!live || live.channel.closed) return false;
      live.channel.send(frame);
      return true;
    });
    this.#heartbeat = setInterval(() => this.#beat(), this.#opts.heartbeatMs);
    this.#heartbeat.unref();
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
      this.wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
    });
  }

  /** Number of live authenticated sessions. */
  get onlineCount(): number {
    return this.#live.size;
  }

  isOnline(hostId: string): boolean {
    return this.#live.has(hostId);
  }

  request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    params: AgentRequestMap[M]['params'],
    opts: { timeoutMs?: number } = {},
  ): Promise<AgentRequestMap[M]['result']> {
    return this.#broker.request(hostId, method, params, opts.timeoutMs ?? 10_000) as Promise<
      AgentRequestMap[M]['result']
    >;
  }

  disconnect(hostId: string, reason: 'revoked'): boolean {
    this.#broker.failHost(hostId, new KeelError('host.revoked'));
    const live = this.#live.get(hostId);
    if (!live) return false;
    live.channel.send({
      type: 'error',
      error: { code: 'handshake.revoked', message: 'This host was revoked.' },
    });
    live.ws.close(closeCodes.revoked, reason);
    // Do not wait for the peer's close frame: the session ends now.
    setTimeout(() => live.ws.terminate(), 500).unref();
    return true;
  }

  /** Stops accepting agents and closes every session with "going away". */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    this.#broker.close();
    for (const ws of this.wss.clients) ws.close(closeCodes.goingAway, 'controller shutting down');
    const sessions = [...this.#live.values()];
    await Promise.all(sessions.map((s) => s.ingest.drain()));
    await Promise.all(sessions.map((s) => this.#ended(s)));
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

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const log = this.#opts.log.child({ peer: req.socket.remoteAddress });
    this.#alive.set(ws, true);
    ws.on('pong', () => this.#alive.set(ws, true));
    ws.on('error', (err) => log.debug({ err: err.message }, 'agent socket error'));
    const handshake = new ControllerHandshake({ identity: this.#opts.identity });
    let live: LiveSession | null = null;
    let enrolling: SealedChannel | null = null;
    let state: 'hello' | 'checking' | 'auth' | 'session' = 'hello';
    const timer = setTimeout(() => {
      if (state !== 'session') reject(closeCodes.handshakeTimeout, 'handshake.failed', 'handshake timed out');
    }, this.#opts.handshakeTimeoutMs);
    timer.unref();

    const reject = (code: number, errorCode: string, message: string) => {
      clearTimeout(timer);
      log.info({ code, errorCode, reason: message }, 'agent rejected');
      if (ws.readyState === ws.OPEN) {
        ws.send(encodeHandshakeFrame({ type: 'error', code: errorCode, message }));
        ws.close(code, message.slice(0, 120));
      }
    };

    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.#alive.set(ws, true);
      const bytes = toBuffer(data);
      if (state === 'session') {
        (live?.channel ?? enrolling)?.receive(bytes);
        return;
      }
      if (!isBinary) return reject(closeCodes.malformed, 'frame.malformed', 'handshake frames are binary');
      if (state === 'checking')
        return reject(closeCodes.unexpected, 'frame.unexpected', 'frame before hello was answered');
      const decoded = decodeHandshakeFrame(controllerPreAuthFrames, bytes);
      if (!decoded.ok) return reject(closeCodes.malformed, 'frame.malformed', decoded.reason);
      const frame = decoded.value;
      try {
        if (state === 'hello') {
          if (frame.type !== 'hello')
            return reject(closeCodes.unexpected, 'frame.unexpected', `expected hello, got ${frame.type}`);
          state = 'checking';
          void this.#checkHello(frame.agentKey, frame.mode).then(
            (verdict) => {
              if (ws.readyState !== ws.OPEN) return;
              if (verdict === 'unknown')
                return reject(
                  closeCodes.unknownAgent,
                  'handshake.unknown_agent',
                  'agent key is not enrolled',
                );
              if (verdict === 'revoked')
                return reject(closeCodes.revoked, 'handshake.revoked', 'agent has been revoked');
              try {
                ws.send(encodeHandshakeFrame(handshake.onHello(frame)));
                state = 'auth';
              } catch (err) {
                handshakeError(err);
              }
            },
            (err: unknown) => {
              log.error({ err }, 'hello check failed');
              reject(closeCodes.internal, 'internal', 'internal error');
            },
          );
          return;
        }
        if (frame.type !== 'auth')
          return reject(closeCodes.unexpected, 'frame.unexpected', `expected auth, got ${frame.type}`);
        const session = handshake.onAuth(frame);
        clearTimeout(timer);
        state = 'session';
        this.handshakes++;
        const agentKey = toB64u(session.peerKey);
        if (handshake.mode === 'enroll') {
          enrolling = new SealedChannel(ws, session, {
            onFrame: (f) => void this.#onEnrollFrame(ws, enrolling!, agentKey, f, log),
            onProtocolError: (code, reason) => log.info({ code, reason }, 'enrolling agent sent a bad frame'),
          });
          return;
        }
        void this.#startSession(ws, session, agentKey, log).then(
          (s) => {
            live = s;
          },
          (err: unknown) => {
            log.error({ err }, 'session start failed');
            ws.close(closeCodes.internal, 'internal error');
          },
        );
      } catch (err) {
        handshakeError(err);
      }
    });

    const handshakeError = (err: unknown) => {
      if (err instanceof HandshakeFailure) {
        reject(
          err.code === 'handshake.version' ? closeCodes.version : closeCodes.handshakeFailed,
          err.code,
          err.message,
        );
      } else {
        log.error({ err }, 'handshake error');
        reject(closeCodes.internal, 'internal', 'internal error');
      }
    };

    ws.on('close', (code) => {
      clearTimeout(timer);
      if (live) {
        const ended = live;
        live = null;
        log.info({ host: ended.hostId, code }, 'agent disconnected');
        void this.#ended(ended);
      }
    });
  }

  async #checkHello(agentKey: string, mode: 'connect' | 'enroll'): Promise<'ok' | 'unknown' | 'revoked'> {
    if (mode === 'enroll') return 'ok';
    const host = await this.#opts.store.findHostByKey(agentKey);
    if (!host) return 'unknown';
    return host.revoked ? 'revoked' : 'ok';
  }

  async #onEnrollFrame(
    ws: WebSocket,
    channel: SealedChannel,
    agentKey: string,
    frame: SessionFrame,
    log: Logger,
  ) {
    if (frame.type !== 'enroll')
      return channel.fail(closeCodes.unexpected, `expected enroll, got ${frame.type}`);
    try {
      const host = await this.#opts.store.enroll({
        publicKey: agentKey,
        name: frame.name?.trim() || frame.facts.hostname,
        facts: frame.facts,
        tokenSecret: frame.token,
      });
      log.info({ host: host.id }, 'agent enrolled');
      channel.send({ type: 'enrolled', hostId: host.id });
      this.#opts.onHostChanged?.(host.id);
      ws.close(1000, 'enrolled');
    } catch (err) {
      const error = err instanceof KeelError ? err : new KeelError('internal');
      if (!(err instanceof KeelError)) log.error({ err }, 'enroll failed');
      channel.send({ type: 'error', error: error.toJSON() });
      ws.close(closeCodes.unknownAgent, error.code);
    }
  }

  async #startSession(
    ws: WebSocket,
    session: ConstructorParameters<typeof SealedChannel>[1],
    agentKey: string,
    log: Logger,
  ): Promise<LiveSession | null> {
    const host = await this.#opts.store.findHostByKey(agentKey);
    if (!host || host.revoked) {
      ws.close(host ? closeCodes.revoked : closeCodes.unknownAgent, host ? 'revoked' : 'unknown agent');
      return null;
    }
    const hostLog = log.child({ host: host.id, session: session.id });
    const previous = this.#live.get(host.id);
    if (previous) {
      hostLog.info('a newer session replaces the previous one');
      this.#live.delete(host.id);
      previous.ws.close(closeCodes.replaced, 'replaced by a newer session');
      await this.#ended(previous, false);
    }
    // Identity comes only from the handshake key: nothing in a frame can name another host.
    const hostId = host.id;
    let liveRef: LiveSession | null = null;
    const channel = new SealedChannel(ws, session, {
      onFrame: (frame, body) => this.#onSessionFrame(liveRef!, frame, body, hostLog),
      onProtocolError: (code, reason) => hostLog.warn({ code, reason }, 'agent sent a bad frame; closing'),
    });
    const ingest = new StreamIngest({
      hostId,
      store: this.#opts.store,
      ack: (stream, seq) => channel.send({ type: 'stream.ack', stream, seq }),
      fail: (code, reason) => channel.fail(code, reason),
      log: hostLog,
    });
    liveRef = { hostId, ws, channel, ingest };
    if (ws.readyState !== ws.OPEN) return null;
    this.#live.set(hostId, liveRef);
    const cursors = await this.#opts.store.cursors(hostId);
    await this.#opts.store.markOnline(hostId, new Date());
    if (ws.readyState !== ws.OPEN || this.#live.get(hostId) !== liveRef) return liveRef;
    channel.send({
      type: 'welcome',
      hostId,
      cursors,
      maxFrameBytes: this.#opts.maxFrameBytes,
      windowBytes: this.#opts.windowBytes,
    });
    hostLog.info('agent online');
    this.#opts.onHostChanged?.(hostId);
    this.#broker.hostOnline(hostId);
    return liveRef;
  }

  #onSessionFrame(live: LiveSession, frame: SessionFrame, body: Buffer, log: Logger): void {
    switch (frame.type) {
      case 'res':
        this.#broker.onResponse(live.hostId, frame);
        return;
      case 'stream.data':
        live.ingest.push(frame, body);
        return;
      case 'facts':
        void this.#opts.store.updateFacts(live.hostId, frame.facts).then(
          () => this.#opts.onHostChanged?.(live.hostId),
          (err: unknown) => log.error({ err }, 'storing facts failed'),
        );
        return;
      default:
        live.channel.fail(closeCodes.unexpected, `frame ${frame.type} is not allowed from an agent`);
    }
  }

  async #ended(live: LiveSession, markOffline = true): Promise<void> {
    if (this.#live.get(live.hostId) === live) this.#live.delete(live.hostId);
    live.channel.markClosed();
    this.#broker.hostOffline(live.hostId);
    live.ingest.stop();
    if (!markOffline || this.#live.has(live.hostId)) return;
    try {
      await this.#opts.store.markOffline(live.hostId, new Date());
      this.#opts.onHostChanged?.(live.hostId);
    } catch (err) {
      this.#opts.log.error({ err, host: live.hostId }, 'marking host offline failed');
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
