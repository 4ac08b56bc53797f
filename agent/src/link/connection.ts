// The agent's link to its controller: dials out, runs the handshake (pin checked before anything
// secret is sent), answers requests, pushes stream records from the spools under flow control,
// and reconnects with exponential backoff and jitter. Only a refusal the agent can verify ends
// the link for good (revoked, unknown key, no common version — sealed in the session, or signed
// by the pinned controller key before it); close codes and unsigned errors are retried.
import WebSocket from 'ws';
import type { Logger } from 'pino';
import {
  AgentHandshake,
  agentPreAuthFrames,
  closeCodes,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  FATAL_REFUSALS,
  fatalCloseCodes,
  FrameRouter,
  HandshakeFailure,
  KeelError,
  Liveness,
  requestDefinition,
  requestNames,
  SealedChannel,
  streamNames,
  schedulerFor,
  type OutgoingFrame,
  type AgentCapabilities,
  type HostFacts,
  type SessionFrame,
  type SigningIdentity,
  type WelcomeFrame,
} from '@keel/shared';
import type { Spool } from './spool.ts';
import { AGENT_VERSION } from '../version.ts';
import { answerRequest, type RequestHandler } from './requests.ts';
import { LinkParts } from './parts.ts';

export type { RequestContext, RequestHandler } from './requests.ts';

/** The controller's WebSocket URL for an `http(s)://` or `ws(s)://` controller address. */
export function agentSocketUrl(controllerUrl: string): string {
  const url = new URL(controllerUrl);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new KeelError('request.invalid', `controller URL must be http(s) or ws(s): ${controllerUrl}`);
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/agent/v1`;
  return url.toString();
}

/** Why a connection attempt or session ended. */
export class LinkClosed extends Error {
  constructor(
    readonly closeCode: number,
    readonly reason: string,
    readonly fatal: boolean,
  ) {
    super(reason);
    this.name = 'LinkClosed';
  }
}

/**
 * The agent's WebSocket masking key: all zeros, which `ws` sends without masking the payload.
 * Masking (RFC 6455 5.3) keeps a browser script from putting bytes of its choosing on the wire
 * to confuse proxies; the agent is no browser, and after the handshake every byte it sends is
 * ChaCha20-Poly1305 ciphertext (the handshake frames are keys, nonces and signatures). A random
 * key cost a 64 KiB copy and a byte-by-byte XOR in JavaScript per 64 KiB frame (~7 ns a byte
 * here; docs/benchmarks.md, channel) on everything the agent sends: logs, metrics, channels.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

export interface OpenSessionOptions {
  controllerUrl: string;
  identity: SigningIdentity;
  pin: string;
  mode: 'connect' | 'enroll';
  /** Protocol versions offered (default: all this build speaks; tests offer [1] to act as an old agent). */
  versions?: readonly number[];
  /**
   * Connect mode, protocol 2: the announcement sent as the first sealed frame (default: every
   * catalogue request and stream, no channels). null sends none (tests of a misbehaving agent).
   */
  capabilities?: AgentCapabilities | null;
  maxFrameBytes?: number;
  timeoutMs?: number;
  onFrame(frame: SessionFrame, body: Buffer): void;
  /** Called with the socket as soon as it exists (so a stop can close a connection in progress). */
  onSocket?(ws: WebSocket): void;
}

/**
 * Dials the controller and completes the handshake. Resolves with the socket and its sealed
 * channel; rejects with LinkClosed (fatal only for a refusal signed by the pinned controller key).
 */
export function openSession(opts: OpenSessionOptions): Promise<{ ws: WebSocket; channel: SealedChannel }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(agentSocketUrl(opts.controllerUrl), {
      maxPayload: opts.maxFrameBytes ?? 16 * 1024 * 1024,
      perMessageDeflate: false,
      handshakeTimeout: opts.timeoutMs ?? 10_000,
      generateMask: zeroMask,
    });
    opts.onSocket?.(ws);
    const handshake = new AgentHandshake({
      identity: opts.identity,
      pin: opts.pin,
      mode: opts.mode,
      versions: opts.versions,
    });
    let channel: SealedChannel | null = null;
    let settled = false;
    /** Why this side ends the attempt: reported once the socket closed (a clean close, not a reset). */
    let ending: LinkClosed | null = null;
    /** A pre-auth refusal, reported with the close code that follows it. */
    let refusal: { text: string; fatal: boolean } | null = null;
    const fail = (err: LinkClosed) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    };
    const endWith = (err: LinkClosed, code: number, reason: string) => {
      ending ??= err;
      try {
        ws.close(code, reason);
      } catch {
        ws.terminate();
      }
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    };
    const timer = setTimeout(() => {
      fail(new LinkClosed(closeCodes.handshakeTimeout, 'handshake timed out', false));
      ws.terminate();
    }, opts.timeoutMs ?? 10_000);
    ws.on('open', () => ws.send(encodeHandshakeFrame(handshake.hello)));
    ws.on('error', (err) => fail(new LinkClosed(1006, err.message, false)));
    ws.on('close', (code, reason) => {
      channel?.markClosed();
      if (ending) return fail(ending);
      // A close code proves nothing (anyone on the path can send one): the attempt ends as a
      // network error unless a refusal was verified; the code reported is the one received.
      fail(
        new LinkClosed(
          code,
          refusal?.text ?? (reason.toString() || `closed with ${code}`),
          refusal?.fatal ?? false,
        ),
      );
    });
    ws.on('message', (data: Buffer) => {
      if (channel) return channel.receive(data);
      const decoded = decodeHandshakeFrame(agentPreAuthFrames, data);
      if (!decoded.ok) {
        return endWith(
          new LinkClosed(closeCodes.malformed, decoded.reason, false),
          closeCodes.malformed,
          'bad handshake frame',
        );
      }
      const frame = decoded.value;
      if (frame.type === 'error') {
        // Fatal only when signed by the pinned controller key over this hello (protocol 2).
        const verified = handshake.verifyRefusal(frame);
        refusal = {
          text: `${frame.code}: ${frame.message}${verified ? '' : ' (unauthenticated: retrying)'}`,
          fatal: verified && FATAL_REFUSALS.has(frame.code),
        };
        // The controller closes next; if it does not, the handshake timer ends the attempt.
        return;
      }
      try {
        const { auth, session } = handshake.onControllerHello(frame);
        ws.send(encodeHandshakeFrame(auth));
        channel = new SealedChannel(ws, session, { onFrame: opts.onFrame });
        // Protocol 2: the announcement is the first sealed frame; the controller waits for it.
        if (opts.mode === 'connect' && session.version >= 2 && opts.capabilities !== null) {
          channel.send({ type: 'capabilities', ...(opts.capabilities ?? defaultAnnouncement()) });
        }
        settled = true;
        clearTimeout(timer);
        resolve({ ws, channel });
      } catch (err) {
        const failure =
          err instanceof HandshakeFailure ? err : new HandshakeFailure('handshake.failed', String(err));
        const code =
          failure.code === 'handshake.pin_mismatch' ? closeCodes.pinMismatch : closeCodes.handshakeFailed;
        // Not fatal either: a wrong key (pin mismatch) is what a man in the middle presents too.
        endWith(new LinkClosed(code, `${failure.code}: ${failure.message}`, false), code, failure.code);
      }
    });
  });
}

/** What an agent link announces when told nothing else: the whole catalogue, no channels. */
function defaultAnnouncement(): AgentCapabilities {
  return {
    agentVersion: AGENT_VERSION,
    requests: [...requestNames],
    streams: [...streamNames],
    channels: [],
  };
}

/** How long this side waits for the peer's close before dropping the connection. */
const CLOSE_GRACE_MS = 2_000;

/** Pause before retrying after the controller refused a second machine with this key. */
const CONFLICT_RETRY_MS = 30_000;

/**
 * Redeems a join token: an enroll-mode session (the pin is checked before the token is sent),
 * one `enroll` frame, and the host id from `enrolled`. Rejects with the controller's error
 * (`enroll.token_used: …`, sealed) or with LinkClosed (a network error: no sealed answer came).
 */
export function redeemJoinToken(opts: {
  controllerUrl: string;
  identity: SigningIdentity;
  pin: string;
  token: string;
  name: string;
  facts: HostFacts;
}): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    /** The controller's answer (sealed, so trusted); settled once the socket has closed cleanly. */
    let outcome: { hostId: string } | { error: Error } | null = null;
    let socket: WebSocket | null = null;
    const onFrame = (frame: SessionFrame) => {
      if (outcome) return;
      if (frame.type === 'enrolled') outcome = { hostId: frame.hostId };
      else if (frame.type === 'error')
        outcome = { error: new Error(`${frame.error.code}: ${frame.error.message}`) };
      else outcome = { error: new Error(`unexpected ${frame.type} from controller`) };
      // The controller closes now; should it not, close from this side after a grace period.
      const ws = socket;
      if (ws) setTimeout(() => ws.close(1000, 'done'), CLOSE_GRACE_MS).unref();
    };
    openSession({
      controllerUrl: opts.controllerUrl,
      identity: opts.identity,
      pin: opts.pin,
      mode: 'enroll',
      onFrame,
    }).then(({ ws, channel }) => {
      socket = ws;
      channel.send({ type: 'enroll', token: opts.token, name: opts.name, facts: opts.facts });
      ws.on('close', (code, reason) => {
        if (outcome && 'hostId' in outcome) resolve(outcome.hostId);
        else if (outcome) reject(outcome.error);
        // Closed without a (sealed) answer: a network error, whatever the code says.
        else reject(new LinkClosed(code, reason.toString() || `closed with ${code}`, false));
      });
    }, reject);
  });
}

/** Events the link reports to the host event stream. */
export type LinkEvent =
  | { kind: 'link.lost'; reason: string; code: number }
  | { kind: 'link.regained'; downtimeMs: number; attempts: number };

export interface AgentLinkOptions {
  controllerUrl: string;
  identity: SigningIdentity;
  pin: string;
  log: Logger;
  /** One spool per stream name, e.g. `events`. */
  streams: ReadonlyMap<string, Spool>;
  /**
   * Request handlers by catalogue name (composed from the capabilities; see capabilities.ts).
   * `ping` is served by the link itself unless given.
   */
  handlers: Readonly<Record<string, RequestHandler>>;
  onLinkEvent?(event: LinkEvent): void;
  heartbeatMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  /** Largest batch body read from a spool into one frame. */
  batchBytes?: number;
  /** Version announced to the controller (default: this build's). */
  agentVersion?: string;
  /** Protocol versions offered (default: all this build speaks). */
  versions?: readonly number[];
}

interface StreamSender {
  stream: string;
  spool: Spool;
  sentUpTo: number;
  inflight: { lastSeq: number; bytes: number }[];
  inflightBytes: number;
  pump: () => void;
  unsubscribe: () => void;
}

/** The long-running link: `run()` resolves only on a fatal close or after `stop()`. */
export class AgentLink {
  #opts: AgentLinkOptions;
  #stopping = false;
  #ws: WebSocket | null = null;
  #wake: (() => void) | null = null;
  #channel: SealedChannel | null = null;
  #seenRequests = new Set<string>();
  #senders = new Map<string, StreamSender>();
  /** Called once the current connection got its welcome (set by run() for each connection). */
  #welcomed: () => void = () => {};
  /** A sealed refusal received in the current session (fatal once the session closes). */
  #refusal: { code: string; message: string } | null = null;
  /**
   * Sealed frames from the controller, by `type`, with the session's channel. A frame family
   * plugs in with one `register` call; a frame with no handler closes the session with `unexpected`.
   */
  readonly router = new FrameRouter<SealedChannel>();
  /** Live channel kinds this agent opens, announced with its requests and streams. */
  readonly channelKinds = new Set<string>();
  /** Live state for status and tests. */
  connected = false;
  hostId: string | null = null;

  constructor(opts: AgentLinkOptions) {
    this.#opts = opts;
    this.#handlers = { ping: () => ({ agentTime: Date.now() }), ...opts.handlers };
    this.router
      .register('welcome', (frame, _body, channel) => {
        this.#onWelcome(channel, frame);
        this.#welcomed();
      })
      .register('req', (frame, _body, channel) =>
        this.#parts.onRequest(channel, frame, (f) => void this.#onRequest(channel, f)),
      )
      .register('part', (frame, body, channel) =>
        this.#parts.onPart(channel, frame, body, (f) => void this.#onRequest(channel, f)),
      )
      .register('stream.ack', (frame) => this.#onAck(frame.stream, frame.seq))
      .register('error', (frame) => {
        this.#opts.log.error({ code: frame.error.code }, frame.error.message);
        // Sealed: the controller's own word. A refusal of this agent ends the link for good.
        if (FATAL_REFUSALS.has(frame.error.code)) this.#refusal = frame.error;
      });
  }

  #endListeners = new Set<(channel: SealedChannel) => void>([(channel) => this.#parts.end(channel)]);
  /** Large request params and results (protocol 3). */
  #parts = new LinkParts();
  #readyListeners = new Set<(channel: SealedChannel) => void>();
  /** The handlers served: the link's own `ping` and the capabilities'. */
  #handlers: Readonly<Record<string, RequestHandler>>;

  /** Calls `listener` with the channel of every session that ends (closed, lost, stopped). */
  onSessionEnded(listener: (channel: SealedChannel) => void): () => void {
    this.#endListeners.add(listener);
    return () => this.#endListeners.delete(listener);
  }

  /** The current session's channel, when connected (to send frames on it). */
  get channel(): SealedChannel | null {
    return this.connected ? this.#channel : null;
  }

  /** Connects and stays connected; resolves with the fatal LinkClosed, or null after stop(). */
  async run(): Promise<LinkClosed | null> {
    const { baseMs, maxMs } = this.#opts.backoff ?? { baseMs: 500, maxMs: 5_000 };
    let attempt = 0;
    let lostAt: number | null = null;
    let conflict = false;
    while (!this.#stopping) {
      let welcomed = false;
      try {
        const ended = await this.#connectOnce(() => {
          welcomed = true;
          if (lostAt !== null) {
            this.#opts.onLinkEvent?.({
              kind: 'link.regained',
              downtimeMs: Date.now() - lostAt,
              attempts: attempt,
            });
            lostAt = null;
          }
          attempt = 0;
        });
        if (ended.fatal) return ended;
        if (ended.closeCode === closeCodes.conflict) {
          conflict = true;
          this.#opts.log.error(
            'another machine is connected with this agent key (a cloned disk image?); retrying in 30 s',
          );
        }
        if (welcomed && !this.#stopping) {
          lostAt = Date.now();
          this.#opts.log.warn({ code: ended.closeCode, reason: ended.reason }, 'link lost');
          this.#opts.onLinkEvent?.({ kind: 'link.lost', reason: ended.reason, code: ended.closeCode });
        }
      } catch (err) {
        const closed = err instanceof LinkClosed ? err : new LinkClosed(1006, String(err), false);
        if (closed.fatal) {
          this.#opts.log.error(
            { code: closed.closeCode, reason: closed.reason },
            'controller refused this agent',
          );
          return closed;
        }
        if (fatalCloseCodes.has(closed.closeCode)) {
          // Looks like a refusal but proves nothing (a close code, an unsigned error, a key that
          // is not the pinned one): someone on the path may have sent it. Said loudly; retried.
          this.#opts.log.warn(
            { code: closed.closeCode, reason: closed.reason },
            'connection refused without proof from the pinned controller key; retrying',
          );
        } else this.#opts.log.debug({ code: closed.closeCode, reason: closed.reason }, 'connect failed');
      }
      if (this.#stopping) break;
      attempt++;
      if (conflict) {
        // Another machine is connected with this key; hammering would not help. Try again slowly,
        // so the host can take over if the other machine goes away.
        conflict = false;
        await this.#pause(CONFLICT_RETRY_MS);
        continue;
      }
      // Full jitter over an exponential ceiling: a restarted controller is not stampeded.
      const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 16));
      await this.#pause(ceiling / 2 + Math.random() * (ceiling / 2));
    }
    return null;
  }

  /** Waits `ms`, or less when stop() is called. */
  async #pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#wake = null;
  }

  /**
   * What this agent announces (protocol 2, first sealed frame): the catalogue requests it has a
   * handler for, its streams and its channel kinds.
   */
  announcement(): AgentCapabilities {
    return {
      agentVersion: this.#opts.agentVersion ?? AGENT_VERSION,
      requests: Object.keys(this.#handlers).filter((name) => requestDefinition(name) !== undefined),
      streams: [...this.#opts.streams.keys()],
      channels: [...this.channelKinds],
    };
  }

  /** Sends a frame on the current session; dropped while not connected. */
  send(frame: SessionFrame, body?: Uint8Array): void {
    if (this.connected) this.#channel?.send(frame, body);
  }

  /** Calls `listener` with the channel after every welcome (each new session). */
  onSessionReady(listener: (channel: SealedChannel) => void): () => void {
    this.#readyListeners.add(listener);
    return () => this.#readyListeners.delete(listener);
  }

  /** Closes the link cleanly (SIGTERM). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const ws = this.#ws;
    if (ws && ws.readyState === ws.CONNECTING) ws.terminate();
    else if (ws && ws.readyState === ws.OPEN) {
      await new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(closeCodes.goingAway, 'agent stopping');
        setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1_000).unref();
      });
    }
  }

  async #connectOnce(onWelcome: () => void): Promise<LinkClosed> {
    let channel: SealedChannel | null = null;
    const pending: [SessionFrame, Buffer][] = [];
    this.#welcomed = onWelcome;
    const onFrame = (frame: SessionFrame, body: Buffer) => {
      if (!channel) pending.push([frame, body]);
      else this.#onFrame(channel, frame, body);
    };
    const opened = await openSession({
      controllerUrl: this.#opts.controllerUrl,
      identity: this.#opts.identity,
      pin: this.#opts.pin,
      mode: 'connect',
      versions: this.#opts.versions,
      capabilities: this.announcement(),
      onFrame,
      onSocket: (socket) => (this.#ws = socket),
    });
    const ws = opened.ws;
    if (this.#stopping) {
      // stop() arrived during the handshake.
      ws.close(closeCodes.goingAway, 'agent stopping');
      return new LinkClosed(closeCodes.goingAway, 'agent stopping', false);
    }
    channel = opened.channel;
    this.#ws = ws;
    this.#channel = channel;
    for (const [frame, body] of pending) this.#onFrame(channel, frame, body);
    return new Promise<LinkClosed>((resolve) => {
      const heartbeatMs = this.#opts.heartbeatMs ?? 5_000;
      const liveness = new Liveness(heartbeatMs);
      const heard = () => liveness.heard();
      ws.on('pong', heard);
      ws.on('ping', heard);
      ws.on('message', heard);
      const beat = setInterval(() => {
        if (liveness.tick()) {
          this.#opts.log.warn('controller stopped answering heartbeats');
          ws.terminate();
          return;
        }
        ws.ping();
      }, heartbeatMs);
      ws.once('close', (code, reason) => {
        clearInterval(beat);
        channel!.markClosed();
        this.connected = false;
        this.#ws = null;
        this.#channel = null;
        for (const s of this.#senders.values()) s.unsubscribe();
        this.#senders.clear();
        for (const listener of this.#endListeners) {
          try {
            listener(channel!);
          } catch (err) {
            this.#opts.log.error({ err }, 'a session-end listener failed');
          }
        }
        // Fatal only after a sealed refusal in this session; a close code alone proves nothing.
        const refusal = this.#refusal;
        this.#refusal = null;
        resolve(
          new LinkClosed(
            code,
            refusal ? `${refusal.code}: ${refusal.message}` : reason.toString() || `closed with ${code}`,
            refusal !== null,
          ),
        );
      });
    });
  }

  #onFrame(channel: SealedChannel, frame: SessionFrame, body: Buffer): void {
    if (!this.router.dispatch(frame, body, channel)) {
      channel.fail(closeCodes.unexpected, `frame ${frame.type} is not allowed from the controller`);
    }
  }

  #onWelcome(channel: SealedChannel, welcome: WelcomeFrame): void {
    this.connected = true;
    this.hostId = welcome.hostId;
    this.#opts.log.info({ host: welcome.hostId }, 'connected to controller');
    for (const listener of this.#readyListeners) {
      try {
        listener(channel);
      } catch (err) {
        this.#opts.log.error({ err }, 'a session-ready listener failed');
      }
    }
    this.#parts.welcome(channel, welcome.maxFrameBytes);
    const window = welcome.windowBytes;
    const batchBytes = Math.min(this.#opts.batchBytes ?? 256 * 1024, Math.floor(welcome.maxFrameBytes / 2));
    for (const [stream, spool] of this.#opts.streams) {
      const cursor = welcome.cursors[stream] ?? 0;
      // Nothing is acked from the welcome: after a wiped or restored spool the controller's cursor
      // counts other records under these numbers. Whatever is unacked is sent again; the controller
      // drops true resends (it compares them) and restarts the stream after a marked gap when they
      // differ, so no new record is lost (see spool.ts, repositories/streams.ts).
      if (cursor > spool.lastSeq) {
        this.#opts.log.warn(
          { stream, controllerSeq: cursor, spoolSeq: spool.lastSeq },
          'the controller holds more of this stream than the spool ever numbered (spool wiped or restored): it will record a restart',
        );
      }
      const sender: StreamSender = {
        stream,
        spool,
        sentUpTo: spool.ackedSeq,
        inflight: [],
        inflightBytes: 0,
        pump: () => {},
        unsubscribe: () => {},
      };
      // Stream batches take turns with channel data on the session's fair scheduler, after
      // control frames (responses, acks, facts), which go out at once.
      const lane = schedulerFor(channel).lane(() => this.#nextBatch(channel, sender, window, batchBytes));
      sender.pump = () => lane.wake();
      const stopListening = spool.onAppend(sender.pump);
      sender.unsubscribe = () => {
        stopListening();
        lane.remove();
      };
      this.#senders.set(stream, sender);
      sender.pump();
    }
  }

  /** The next batch of a stream within its window, or null (its scheduler lane's pull). */
  #nextBatch(
    channel: SealedChannel,
    s: StreamSender,
    window: number,
    batchBytes: number,
  ): OutgoingFrame | null {
    if (channel.closed || this.#senders.get(s.stream) !== s || s.inflightBytes >= window) return null;
    // Transient: the scheduler seals the body into a frame at once, before this lane is pulled again.
    const batch = s.spool.read(s.sentUpTo, batchBytes, true);
    if (!batch || batch.count === 0) return null;
    s.sentUpTo = batch.firstSeq + batch.count - 1;
    s.inflight.push({ lastSeq: s.sentUpTo, bytes: batch.body.length });
    s.inflightBytes += batch.body.length;
    return {
      frame: { type: 'stream.data', stream: s.stream, firstSeq: batch.firstSeq, count: batch.count },
      body: batch.body,
    };
  }

  #onAck(stream: string, seq: number): void {
    const s = this.#senders.get(stream);
    if (!s) return;
    if (seq > s.spool.ackedSeq) s.spool.ack(seq);
    while (s.inflight.length > 0 && s.inflight[0]!.lastSeq <= seq)
      s.inflightBytes -= s.inflight.shift()!.bytes;
    if (seq > s.sentUpTo) s.sentUpTo = seq;
    s.pump();
  }

  async #onRequest(channel: SealedChannel, frame: Extract<SessionFrame, { type: 'req' }>): Promise<void> {
    // At most once: an id seen before is never run again.
    if (this.#seenRequests.has(frame.id)) return;
    this.#seenRequests.add(frame.id);
    if (this.#seenRequests.size > 10_000) {
      const oldest = this.#seenRequests.values().next().value;
      if (oldest !== undefined) this.#seenRequests.delete(oldest);
    }
    const answer = await answerRequest(frame, this.#handlers, this.#opts.log, {
      maxResultBytes: this.#parts.maxResultBytes(channel),
    });
    this.#parts.respond(channel, answer);
  }
}
