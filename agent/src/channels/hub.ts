// The agent's end of live channels: opens a channel of a kind some capability serves when the
// controller asks (chan.open), validates its params, hands the handler a port to write to, and
// carries its bytes under the credit window. The link's fair scheduler sends channel data in turn
// with the other lanes, after control frames. When the link goes, every channel ends.
import type { Logger } from 'pino';
import {
  CHANNEL_WINDOW_BYTES,
  ChannelInbox,
  ChannelOutbox,
  schedulerFor,
  type FairScheduler,
  MAX_CHANNELS_PER_SESSION,
  type ChannelEnd,
  type ChannelKindDefinition,
  type FrameRouter,
  type Lane,
  type SealedChannel,
  type SessionFrame,
} from '@keel/shared';

/** What a channel handler writes to and closes. */
export interface ChannelPort {
  readonly id: string;
  /**
   * Queues bytes for the client. Resolves once the channel's queue has room again: await it, and
   * a slow client slows the producer instead of growing memory.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the channel from this side (after what was written is sent). */
  close(end: ChannelEnd): void;
  /** True once the channel ended, from either side. */
  readonly closed: boolean;
  /** Aborted when the channel ends. */
  readonly signal: AbortSignal;
}

/** What an open channel does with what arrives. */
export interface ChannelSession {
  /** A chunk from the client. The next chunk waits until the returned promise settles. */
  onData?(chunk: Buffer): void | Promise<void>;
  /** The channel ended (closed by the client, the controller, the link, or this side). */
  onClose?(end: ChannelEnd): void;
}

/** Serves one channel kind: its definition (params schema) and how to open one. */
export interface ChannelHandler<P = unknown> {
  definition: ChannelKindDefinition;
  open(port: ChannelPort, params: P): ChannelSession;
}

/** The part of the agent link the hub plugs into (AgentLink satisfies it). */
export interface ChannelLinkHost {
  readonly router: FrameRouter<SealedChannel>;
  /** Channel kinds the link announces to the controller. */
  readonly channelKinds?: Set<string>;
  onSessionEnded(listener: (channel: SealedChannel) => void): () => void;
}

interface OpenChannel {
  id: string;
  kind: string;
  session: ChannelSession;
  outbox: ChannelOutbox;
  lane: Lane;
  inbox: ChannelInbox;
  /** Incoming chunks are handled one after another. */
  chain: Promise<void>;
  ended: boolean;
  closing: ChannelEnd | null;
  abort: AbortController;
}

interface LinkChannels {
  scheduler: FairScheduler;
  open: Map<string, OpenChannel>;
}

/** Channels of the agent, per link session. */
export class AgentChannelHub {
  #kinds: ReadonlyMap<string, ChannelHandler>;
  #log: Logger;
  #links = new WeakMap<SealedChannel, LinkChannels>();

  constructor(opts: { kinds: Readonly<Record<string, ChannelHandler>>; log: Logger }) {
    this.#kinds = new Map(Object.entries(opts.kinds));
    this.#log = opts.log;
  }

  /** The channel kinds served (announced in the handshake). */
  get kinds(): string[] {
    return [...this.#kinds.keys()];
  }

  /** Registers the channel frames on the link and ends channels when its session ends. */
  attach(link: ChannelLinkHost): void {
    for (const kind of this.#kinds.keys()) link.channelKinds?.add(kind);
    link.router
      .register('chan.open', (frame, _body, channel) => this.#open(channel, frame))
      .register('chan.data', (frame, body, channel) => this.#data(channel, frame.id, body))
      .register('chan.credit', (frame, _body, channel) =>
        this.#links.get(channel)?.open.get(frame.id)?.outbox.grant(frame.bytes),
      )
      .register('chan.close', (frame, _body, channel) => {
        const open = this.#links.get(channel)?.open.get(frame.id);
        if (open) this.#end(channel, open, { reason: frame.reason, code: frame.code }, false);
      });
    link.onSessionEnded((channel) => {
      const state = this.#links.get(channel);
      if (!state) return;
      this.#links.delete(channel);
      for (const open of [...state.open.values()]) {
        this.#end(
          channel,
          open,
          { reason: 'link to the controller lost', code: 'request.disconnected' },
          false,
        );
      }
    });
  }

  /** The fair scheduler of a link session (one per session; streams may take lanes on it too). */
  schedulerOf(channel: SealedChannel): FairScheduler {
    return this.#state(channel).scheduler;
  }

  #state(channel: SealedChannel): LinkChannels {
    let state = this.#links.get(channel);
    if (!state) {
      state = { scheduler: schedulerFor(channel), open: new Map() };
      this.#links.set(channel, state);
    }
    return state;
  }

  #open(channel: SealedChannel, frame: Extract<SessionFrame, { type: 'chan.open' }>): void {
    const state = this.#state(channel);
    const refuse = (code: string, reason: string) =>
      state.scheduler.sendNow({ type: 'chan.close', id: frame.id, reason, code });
    if (state.open.has(frame.id)) return refuse('frame.unexpected', 'channel id already in use');
    if (state.open.size >= MAX_CHANNELS_PER_SESSION) return refuse('channel.limit', 'too many channels');
    const handler = this.#kinds.get(frame.kind);
    if (!handler)
      return refuse('channel.unknown_kind', `this agent has no ${frame.kind.slice(0, 64)} channels`);
    const parsed = handler.definition.params.safeParse(frame.params);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return refuse(
        'request.invalid',
        `params${issue?.path.length ? `.${issue.path.join('.')}` : ''}: ${issue?.message ?? 'invalid'}`.slice(
          0,
          500,
        ),
      );
    }
    const outbox = new ChannelOutbox(frame.id);
    const open: OpenChannel = {
      id: frame.id,
      kind: frame.kind,
      session: {},
      outbox,
      lane: state.scheduler.lane(() => {
        const out = outbox.pull();
        if (open.closing && outbox.queuedBytes === 0) {
          // The last bytes are handed to the socket now; the close goes right after them.
          const end = open.closing;
          queueMicrotask(() => this.#end(channel, open, end, true));
        }
        return out;
      }),
      inbox: new ChannelInbox(CHANNEL_WINDOW_BYTES),
      chain: Promise.resolve(),
      ended: false,
      closing: null,
      abort: new AbortController(),
    };
    outbox.onReady = () => open.lane.wake();
    state.open.set(frame.id, open);
    state.scheduler.sendNow({ type: 'chan.opened', id: frame.id });
    this.#log.info({ channel: frame.id, kind: frame.kind }, 'channel opened');
    const port: ChannelPort = {
      id: frame.id,
      write: async (bytes) => {
        if (open.ended || open.closing) return;
        outbox.push(bytes);
        await outbox.writable();
      },
      close: (end) => {
        if (open.ended || open.closing) return;
        if (outbox.queuedBytes === 0) this.#end(channel, open, end, true);
        else open.closing = end;
      },
      get closed() {
        return open.ended || open.closing !== null;
      },
      signal: open.abort.signal,
    };
    try {
      open.session = handler.open(port, parsed.data);
    } catch (err) {
      this.#log.warn({ err, channel: frame.id, kind: frame.kind }, 'opening a channel failed');
      this.#end(channel, open, { reason: 'the channel failed to open', code: 'request.failed' }, true);
    }
  }

  #data(channel: SealedChannel, id: string, body: Buffer): void {
    const open = this.#links.get(channel)?.open.get(id);
    if (!open || open.ended) return; // it ended here while the data was on its way
    if (!open.inbox.received(body.length)) {
      this.#end(
        channel,
        open,
        { reason: 'the controller sent beyond its credit', code: 'frame.unexpected' },
        true,
      );
      return;
    }
    const scheduler = this.#state(channel).scheduler;
    open.chain = open.chain
      .then(() => (open.ended ? undefined : open.session.onData?.(body)))
      .then(
        () => {
          const credit = open.inbox.consumed(body.length);
          if (credit > 0 && !open.ended) scheduler.sendNow({ type: 'chan.credit', id, bytes: credit });
        },
        (err: unknown) => {
          this.#log.warn({ err, channel: id }, 'a channel handler failed');
          this.#end(channel, open, { reason: 'the channel handler failed', code: 'request.failed' }, true);
        },
      );
  }

  /** Ends a channel once; `tell` sends chan.close to the controller. */
  #end(channel: SealedChannel, open: OpenChannel, end: ChannelEnd, tell: boolean): void {
    if (open.ended) return;
    open.ended = true;
    open.lane.remove();
    open.outbox.clear();
    const state = this.#links.get(channel);
    state?.open.delete(open.id);
    if (tell && state) {
      state.scheduler.sendNow({
        type: 'chan.close',
        id: open.id,
        reason: end.reason.slice(0, 500),
        ...(end.code ? { code: end.code.slice(0, 64) } : {}),
        ...(end.exitCode !== undefined ? { exitCode: end.exitCode } : {}),
      });
    }
    open.abort.abort();
    this.#log.info(
      { channel: open.id, kind: open.kind, reason: end.reason, code: end.code, exitCode: end.exitCode },
      'channel closed',
    );
    try {
      open.session.onClose?.(end);
    } catch (err) {
      this.#log.warn({ err, channel: open.id }, 'a channel close handler failed');
    }
  }
}
