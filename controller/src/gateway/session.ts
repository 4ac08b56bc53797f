// Sessions: one authenticated connect-mode connection per host, from its handshake until it ends.
// A session starts by resolving a key conflict (a live older session that still answers means a
// cloned machine: the newcomer is refused) or replacing the older session, reads the host's stream
// cursors, sends `welcome`, and from then on hands every sealed frame to the frame router.
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import {
  baselineCapabilities,
  closeCodes,
  SealedChannel,
  type FrameRouter,
  type HostCapabilities,
  type SessionFrame,
} from '@keel/shared';
import type { Authenticated, Conversation } from './handshake.ts';
import type { GatewayHost, GatewayStore, SessionInfo } from './store.ts';
import type { BatchLoader } from './batch-loader.ts';
import type { RequestBroker } from './requests.ts';
import type { PresenceWriter } from './presence.ts';
import type { StreamSinks } from './sinks.ts';
import { StreamIngest } from './ingest.ts';
import { answersPing, safeClose } from './socket.ts';

/** How long a live session gets to answer before a newcomer with its key replaces it. */
const CONFLICT_PROBE_MS = 2_000;
/** How long a protocol-2 agent has to announce its capabilities after the handshake. */
const ANNOUNCE_TIMEOUT_MS = 10_000;
/** Frames an agent may send before its welcome; more is a protocol violation. */
const MAX_EARLY_FRAMES = 64;
/**
 * Bytes one connection may send before its welcome (an honest agent sends only its announcement
 * then: it needs the welcome's cursors and window before any stream data).
 */
export const MAX_EARLY_BYTES = 256 * 1024;

/** Bytes buffered before welcome across all connections, against a bound. */
export class EarlyBudget {
  used = 0;
  constructor(readonly max: number) {}
}

/** One authenticated agent connection, from the handshake until it closes. */
export class AgentSession {
  readonly ws: WebSocket;
  readonly channel: SealedChannel;
  /** The peer's address, for log lines. */
  readonly peer: string;
  /** Stream window offered in this session's welcome. */
  readonly windowBytes: number;
  /** Set once the key is matched to an enrolled host. */
  hostId: string | null = null;
  ingest: StreamIngest | null = null;
  /**
   * What the agent serves: its announcement (protocol 2, the first sealed frame), or the baseline
   * for an agent that speaks only protocol 1 and announces nothing.
   */
  capabilities: HostCapabilities | null;
  /** Welcome sent: frames are dispatched, requests may be sent. */
  ready = false;
  ended = false;
  /** Frames that arrived before the session was ready (bounded in count and bytes). */
  #early: [SessionFrame, Buffer][] = [];
  #earlyBytes = 0;
  #budget: EarlyBudget;
  #dispatch: (s: AgentSession, frame: SessionFrame, body: Buffer) => void;
  #announced: (ok: boolean) => void = () => {};

  constructor(
    conn: Authenticated,
    opts: {
      windowBytes: number;
      log: Logger;
      budget: EarlyBudget;
      dispatch: (s: AgentSession, frame: SessionFrame, body: Buffer) => void;
    },
  ) {
    this.#budget = opts.budget;
    this.ws = conn.ws;
    this.peer = conn.peer;
    this.windowBytes = opts.windowBytes;
    this.#dispatch = opts.dispatch;
    this.capabilities = conn.sealed.version >= 2 ? null : baselineCapabilities();
    this.channel = new SealedChannel(conn.ws, conn.sealed, {
      onFrame: (f, body) => {
        if (this.ended) return;
        // Protocol 2: the announcement comes first and once; nothing else is taken before it.
        if (f.type === 'capabilities' || this.capabilities === null) {
          if (f.type !== 'capabilities' || this.capabilities !== null)
            return this.channel.fail(closeCodes.unexpected, `frame ${f.type} where capabilities belong`);
          const { type: _type, ...announced } = f;
          this.capabilities = { ...announced, announced: true };
          return this.#announced(true);
        }
        if (this.ready) return this.#dispatch(this, f, body);
        if (this.#early.length >= MAX_EARLY_FRAMES) return this.#dropEarly('too many frames before welcome');
        const bytes = body.length + JSON.stringify(f).length;
        if (this.#earlyBytes + bytes > MAX_EARLY_BYTES || this.#budget.used + bytes > this.#budget.max)
          return this.#dropEarly('too much data before welcome');
        this.#earlyBytes += bytes;
        this.#budget.used += bytes;
        this.#early.push([f, body]);
      },
      onProtocolError: (code, reason) =>
        opts.log.warn(
          { peer: this.peer, host: this.hostId, code, reason },
          'agent sent a bad frame; closing',
        ),
    });
  }

  /** Resolves true once the agent announced its capabilities (at once for protocol 1), false at `ms`. */
  announcement(ms: number): Promise<boolean> {
    if (this.capabilities) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      timer.unref();
      this.#announced = (ok) => {
        clearTimeout(timer);
        resolve(ok);
      };
    });
  }

  /** Sends one sealed frame (dropped once the session ended). */
  send(frame: SessionFrame, body?: Uint8Array): void {
    if (!this.ended) this.channel.send(frame, body);
  }

  /** Bytes buffered before welcome (for tests and metrics). */
  get earlyBytes(): number {
    return this.#earlyBytes;
  }

  /** Marks the session ready and dispatches what arrived before its welcome. */
  open(): void {
    this.ready = true;
    const early = this.#early.splice(0);
    this.#releaseEarly();
    for (const [frame, body] of early) this.#dispatch(this, frame, body);
  }

  #releaseEarly(): void {
    this.#early = [];
    this.#budget.used -= this.#earlyBytes;
    this.#earlyBytes = 0;
  }

  /** Closes a connection that sent too much before its welcome, and drops what it sent at once. */
  #dropEarly(reason: string): void {
    this.#releaseEarly();
    this.channel.fail(closeCodes.unexpected, reason);
  }

  /** Marks the session ended: nothing more is dispatched or stored. Returns false if it already was. */
  end(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.ready = false;
    this.#releaseEarly();
    this.#announced(false); // a start still waiting for the announcement gives up now
    this.channel.markClosed();
    this.ingest?.stop();
    return true;
  }
}

export interface SessionTableDeps {
  store: GatewayStore;
  sessionLoader: BatchLoader<string, SessionInfo>;
  broker: RequestBroker;
  presence: PresenceWriter;
  /** Where each stream kind's batches are stored. */
  sinks: StreamSinks;
  router: FrameRouter<AgentSession>;
  log: Logger;
  maxFrameBytes: number;
  /** Revoked on this controller (the set is shared with the gateway). */
  revoked: Set<string>;
  /** True once the gateway is shutting down. */
  closing(): boolean;
  /** The window to offer a new session. */
  windowFor(): number;
  /** Bytes buffered before welcome, across all sessions. */
  earlyBudget: EarlyBudget;
}

/** The live sessions, one per host. */
export class SessionTable {
  #deps: SessionTableDeps;
  #live = new Map<string, AgentSession>();
  #conflictWarnedAt = new Map<string, number>();
  #endListeners = new Set<(s: AgentSession) => void>();

  constructor(deps: SessionTableDeps) {
    this.#deps = deps;
  }

  get size(): number {
    return this.#live.size;
  }

  /** The host's live session (ready or starting), if any. */
  get(hostId: string): AgentSession | undefined {
    return this.#live.get(hostId);
  }

  values(): IterableIterator<AgentSession> {
    return this.#live.values();
  }

  /** Calls `listener` with every session that ends after it was ready or started. */
  onEnded(listener: (s: AgentSession) => void): () => void {
    this.#endListeners.add(listener);
    return () => this.#endListeners.delete(listener);
  }

  /** Takes over an authenticated connect-mode connection. */
  accept(conn: Authenticated): Conversation {
    const log = this.#deps.log;
    const s = new AgentSession(conn, {
      windowBytes: this.#deps.windowFor(),
      log,
      budget: this.#deps.earlyBudget,
      dispatch: (session, frame, body) => this.#dispatch(session, frame, body),
    });
    void this.#start(s, conn.host).catch((err: unknown) => {
      log.error({ peer: s.peer, host: s.hostId, err }, 'session start failed');
      safeClose(s.ws, closeCodes.internal, 'internal error');
    });
    return {
      receive: (bytes) => s.channel.receive(bytes),
      closed: (code) => {
        if (s.hostId) log.info({ peer: s.peer, host: s.hostId, code }, 'agent disconnected');
        this.end(s);
      },
    };
  }

  #dispatch(s: AgentSession, frame: SessionFrame, body: Buffer): void {
    if (!this.#deps.router.dispatch(frame, body, s)) {
      s.channel.fail(closeCodes.unexpected, `frame ${frame.type} is not allowed from an agent`);
    }
  }

  async #start(s: AgentSession, host: GatewayHost | null): Promise<void> {
    const deps = this.#deps;
    // The host was looked up for this very handshake (hello); revocations since then are in `revoked`.
    if (s.ended) return;
    if (!host || host.revoked || deps.revoked.has(host.id)) {
      // Sealed, so the agent can trust it and stop (a bare close code proves nothing).
      this.#refuse(
        s,
        host ? closeCodes.revoked : closeCodes.unknownAgent,
        host ? 'handshake.revoked' : 'handshake.unknown_agent',
      );
      return;
    }
    if (!(await s.announcement(ANNOUNCE_TIMEOUT_MS))) {
      s.channel.fail(closeCodes.unexpected, 'no capabilities announcement');
      this.end(s);
      return;
    }
    if (s.ended) return;
    // Identity comes only from the handshake key: nothing in a frame can name another host.
    const hostId = host.id;
    s.hostId = hostId;
    const log = deps.log;
    s.ingest = new StreamIngest({
      hostId,
      store: { appendStream: (id, stream, batch) => deps.sinks.append(id, stream, batch) },
      ack: (stream, seq) => s.channel.send({ type: 'stream.ack', stream, seq }),
      fail: (code, reason) => s.channel.fail(code, reason),
      log,
      windowBytes: s.windowBytes,
      maxFrameBytes: deps.maxFrameBytes,
    });
    const previous = this.#live.get(hostId);
    if (previous && (await answersPing(previous.ws, CONFLICT_PROBE_MS))) {
      // The existing session is alive, so this is another machine with the same key (a cloned
      // image), not a reconnect: keep the working session and refuse the newcomer.
      this.#warnConflict(hostId, s.peer);
      safeClose(s.ws, closeCodes.conflict, 'another machine is connected with this agent key');
      // Refused: what it sent meanwhile is dropped now, not when its socket finally closes.
      this.end(s);
      return;
    }
    if (s.ended) return;
    const current = this.#live.get(hostId);
    this.#live.set(hostId, s);
    if (current) {
      log.info({ peer: s.peer, host: hostId }, 'a newer session replaces the previous one');
      safeClose(current.ws, closeCodes.replaced, 'replaced by a newer session');
      this.end(current);
    }
    const info = await deps.sessionLoader.load(hostId);
    if (s.ended || deps.closing() || this.#live.get(hostId) !== s) return;
    // Revoked since the key was cached (possibly by another controller): refuse now.
    if (info?.revoked) deps.revoked.add(hostId);
    const cursors = info?.cursors ?? {};
    if (deps.revoked.has(hostId)) {
      this.#refuse(s, closeCodes.revoked, 'handshake.revoked');
      return;
    }
    s.channel.send({
      type: 'welcome',
      hostId,
      cursors,
      maxFrameBytes: deps.maxFrameBytes,
      windowBytes: s.windowBytes,
    });
    s.open();
    log.info({ peer: s.peer, host: hostId, session: s.channel.session.id }, 'agent online');
    const agentVersion = s.capabilities?.agentVersion;
    deps.presence.queue(hostId, { online: true, ...(agentVersion && { agentVersion }) });
    deps.broker.hostOnline(hostId);
  }

  /** Refuses a session with a sealed error (which the agent can verify), closes it, drops its buffer. */
  #refuse(s: AgentSession, code: number, errorCode: 'handshake.revoked' | 'handshake.unknown_agent'): void {
    s.channel.send({
      type: 'error',
      error: {
        code: errorCode,
        message:
          errorCode === 'handshake.revoked' ? 'This host was revoked.' : 'This agent key is not enrolled.',
      },
    });
    safeClose(s.ws, code, errorCode === 'handshake.revoked' ? 'revoked' : 'unknown agent');
    this.end(s);
  }

  /**
   * Logs and audits a key conflict at most once a minute per host (a clone retries every half
   * minute): the trail shows admins which host was cloned and from where.
   */
  #warnConflict(hostId: string, peer: string | undefined): void {
    const last = this.#conflictWarnedAt.get(hostId) ?? 0;
    if (Date.now() - last < 60_000) return;
    this.#conflictWarnedAt.set(hostId, Date.now());
    this.#deps.log.warn(
      { host: hostId, peer },
      'a second machine presents this host key while the host is connected (cloned disk image?); refused it',
    );
    this.#deps.store
      .recordKeyConflict(hostId, peer ?? null)
      .catch((err: unknown) => this.#deps.log.error({ err, host: hostId }, 'auditing a key conflict failed'));
  }

  /** Ends a session once, whichever comes first: its close, a replacement, a revoke, shutdown. */
  end(s: AgentSession): void {
    if (!s.end()) return;
    const hostId = s.hostId;
    if (!hostId) return;
    if (this.#live.get(hostId) === s) this.#live.delete(hostId);
    this.#deps.broker.hostOffline(hostId, s);
    for (const listener of this.#endListeners) {
      try {
        listener(s);
      } catch (err) {
        this.#deps.log.error({ err, host: hostId }, 'a session-end listener failed');
      }
    }
    // A newer session of the same host may already be live: then it stays online.
    if (!this.#live.has(hostId)) this.#deps.presence.queue(hostId, { online: false });
  }
}
