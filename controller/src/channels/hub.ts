// The channel relay: joins a client WebSocket (a browser or an API client, admitted by a ticket)
// to a channel on the agent session of its host, and carries bytes both ways under the credit
// window. Memory per channel stays within a window each way: data from the agent is credited back
// only once the client socket has written it, and a client's socket is paused while the agent has
// not granted credit for what is already queued. A channel ends on every side when any side goes:
// the client closes (the agent gets chan.close), the agent closes it or its session ends (the
// client gets a `close` message and the socket closes), or the controller shuts down.
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import {
  CHANNEL_WINDOW_BYTES,
  CHANNEL_WS_CLOSE_AGENT_GONE,
  CHANNEL_WS_CLOSE_GOING_AWAY,
  CHANNEL_WS_CLOSE_NORMAL,
  CHANNEL_WS_CLOSE_PROTOCOL,
  ChannelInbox,
  ChannelOutbox,
  closeReason,
  MAX_CHANNELS_PER_SESSION,
  type ChannelClientMessage,
  type ChannelEnd,
  type Lane,
  type OutgoingFrame,
  type SessionFrame,
} from '@keel/shared';
import type { ChannelGrant } from './tickets.ts';

/** What the hub needs of one live agent session; the gateway provides it. */
export interface AgentChannelLink {
  readonly hostId: string;
  /** Channel kinds the agent announced in its handshake (null: it announced nothing). */
  readonly channelKinds: readonly string[] | null;
  /** Sends a control frame now (chan.open, chan.credit, chan.close). */
  sendNow(frame: SessionFrame): void;
  /** A lane of the session's fair scheduler, for one channel's data. */
  lane(pull: () => OutgoingFrame | null): Lane;
  /**
   * True for a link that carries one channel (a channel routed to another replica, bus/channels.ts):
   * the hub forgets it when that channel ends.
   */
  readonly single?: boolean;
}

/** A link to a host whose session another controller replica holds (bus/channels.ts), or undefined. */
/**
 * A link to the replica holding the host's session; undefined when none holds it (the host is
 * offline), or why the channel cannot be opened there (that replica is gone from the bus).
 */
export type RemoteLinkFactory = (grant: ChannelGrant) => Promise<AgentChannelLink | ChannelEnd | undefined>;

/** Sees a channel's bytes as they pass (the terminal's recorder); must not block. */
export interface ChannelTap {
  toAgent?(bytes: Buffer): void;
  toClient?(bytes: Buffer): void;
  ended?(end: ChannelEnd): void;
}

/** Makes the tap of a channel that opens; `end` ends the channel on every side. */
export type ChannelTapFactory = (
  grant: ChannelGrant,
  channelId: string,
  end: (end: ChannelEnd) => void,
) => ChannelTap | undefined;

/** How long an agent gets to answer chan.open. */
const OPEN_TIMEOUT_MS = 10_000;

interface Relay {
  id: string;
  kind: string;
  session: SessionChannels;
  ws: WebSocket;
  outbox: ChannelOutbox;
  lane: Lane;
  inbox: ChannelInbox;
  opened: boolean;
  ended: boolean;
  paused: boolean;
  openTimer: NodeJS.Timeout;
  tap: ChannelTap | undefined;
}

interface SessionChannels {
  link: AgentChannelLink;
  relays: Map<string, Relay>;
}

/** Every live channel of this controller, by agent session. */
export class ChannelHub {
  #sessions = new Map<AgentChannelLink, SessionChannels>();
  #linkFor: (hostId: string) => AgentChannelLink | undefined;
  #log: Logger;
  #nextId = 0;
  #closing = false;
  #maxPerSession: number;
  #tap: ChannelTapFactory | undefined;
  #remote: RemoteLinkFactory | undefined;

  /** `linkFor` finds the host's ready agent session (the gateway's sessionOf, adapted). */
  constructor(opts: {
    log: Logger;
    linkFor: (hostId: string) => AgentChannelLink | undefined;
    maxPerSession?: number;
    /** Called when a channel opens; the tap it returns sees the channel's bytes both ways. */
    tap?: ChannelTapFactory;
    /** For a host with no session here: a link through the replica holding it (replicas only). */
    remote?: RemoteLinkFactory;
  }) {
    this.#tap = opts.tap;
    this.#remote = opts.remote;
    this.#log = opts.log;
    this.#linkFor = opts.linkFor;
    this.#maxPerSession = opts.maxPerSession ?? MAX_CHANNELS_PER_SESSION;
  }

  /** Channels open now (for tests and /metrics). */
  get openCount(): number {
    let n = 0;
    for (const s of this.#sessions.values()) n += s.relays.size;
    return n;
  }

  /** An agent session ended: every channel on it ends for its client. */
  sessionEnded(link: AgentChannelLink, reason = 'agent disconnected'): void {
    const s = this.#sessions.get(link);
    if (!s) return;
    this.#sessions.delete(link);
    this.#endAll(s, reason, CHANNEL_WS_CLOSE_AGENT_GONE);
  }

  /** Handles a chan.* frame from an agent session (other frames are not the hub's). */
  onAgentFrame(link: AgentChannelLink, frame: SessionFrame, body: Buffer): void {
    const s = this.#sessions.get(link);
    if (!s || !('id' in frame)) return;
    const relay = s.relays.get(frame.id);
    // A frame for a channel that already ended on this side (they cross): nothing to do.
    if (!relay || relay.ended) return;
    switch (frame.type) {
      case 'chan.opened':
        if (relay.opened) return;
        relay.opened = true;
        clearTimeout(relay.openTimer);
        this.#toClient(relay, { type: 'opened', id: relay.id });
        return;
      case 'chan.data':
        if (!relay.inbox.received(body.length)) {
          this.#end(relay, { reason: 'agent sent beyond its credit', code: 'frame.unexpected' }, 'both');
          return;
        }
        relay.ws.send(body, () => {
          // Written to the client's socket: only now may the agent send that much more.
          const credit = relay.inbox.consumed(body.length);
          if (credit > 0 && !relay.ended)
            relay.session.link.sendNow({ type: 'chan.credit', id: relay.id, bytes: credit });
        });
        // The recorder sees the bytes after they are on their way: it is not on the echo's path.
        relay.tap?.toClient?.(body);
        return;
      case 'chan.credit':
        relay.outbox.grant(frame.bytes);
        return;
      case 'chan.close':
        this.#end(
          relay,
          { reason: frame.reason, code: frame.code, exitCode: frame.exitCode },
          'client',
          CHANNEL_WS_CLOSE_NORMAL,
        );
        return;
      default:
        return;
    }
  }

  /**
   * Opens the channel a ticket granted, on a client socket that just connected. The client is
   * told `opened` when the agent accepted, or `close` with the reason. A host whose session another
   * replica holds is reached through it (`remote`), unless the channel was `routed` here already:
   * then it opens on a session of this controller or not at all, and the tap (the recorder) ran on
   * the replica serving the client.
   */
  open(grant: ChannelGrant, ws: WebSocket, opts: { routed?: boolean } = {}): void {
    const link = this.#closing ? undefined : this.#linkFor(grant.hostId);
    if (!this.#closing && !link && this.#remote && !opts.routed) {
      // Read nothing of the client until the channel exists on the other replica's side.
      ws.pause();
      this.#remote(grant).then(
        (remote) => {
          if (ws.readyState !== ws.OPEN) return;
          if (remote && !('sendNow' in remote)) {
            sendText(ws, { type: 'close', ...remote });
            safeClose(ws, CHANNEL_WS_CLOSE_NORMAL, remote.reason);
            ws.resume(); // read the client's close frame: paused, the closing handshake waits 30 s
            return;
          }
          // The tap (the terminal's recording, its audit and permission re-check) runs here,
          // on the replica serving the client; the holder opens it untapped (`routed`).
          this.#openOn(remote, grant, ws, true);
          ws.resume();
        },
        (err: unknown) => {
          this.#log.error({ err, host: grant.hostId }, 'finding the replica holding the host failed');
          this.#openOn(undefined, grant, ws, false);
        },
      );
      return;
    }
    this.#openOn(link, grant, ws, !opts.routed);
  }

  #openOn(link: AgentChannelLink | undefined, grant: ChannelGrant, ws: WebSocket, tapped: boolean): void {
    const refuse = (end: ChannelEnd) => {
      sendText(ws, { type: 'close', ...end });
      safeClose(ws, CHANNEL_WS_CLOSE_NORMAL, end.reason);
    };
    if (this.#closing) return refuse({ reason: 'controller shutting down', code: 'internal' });
    if (!link) return refuse({ reason: 'the host is offline', code: 'host.offline' });
    if (link.channelKinds && !link.channelKinds.includes(grant.kind)) {
      return refuse({
        reason: `this agent does not offer ${grant.kind} channels; upgrade it`,
        code: 'agent.unsupported',
      });
    }
    let s = this.#sessions.get(link);
    if (!s) {
      s = { link, relays: new Map() };
      this.#sessions.set(link, s);
    }
    if (s.relays.size >= this.#maxPerSession) {
      return refuse({ reason: 'too many channels are open on this host', code: 'channel.limit' });
    }
    const id = `c${(this.#nextId++).toString(36)}`;
    const outbox = new ChannelOutbox(id);
    const relay: Relay = {
      id,
      kind: grant.kind,
      session: s,
      ws,
      outbox,
      lane: s.link.lane(() => outbox.pull()),
      inbox: new ChannelInbox(CHANNEL_WINDOW_BYTES),
      opened: false,
      ended: false,
      paused: false,
      openTimer: setTimeout(() => {
        if (!relay.opened)
          this.#end(
            relay,
            { reason: 'the agent did not open the channel in time', code: 'request.deadline_exceeded' },
            'both',
          );
      }, OPEN_TIMEOUT_MS),
      tap: undefined,
    };
    relay.openTimer.unref();
    outbox.onReady = () => relay.lane.wake();
    s.relays.set(id, relay);
    relay.tap = tapped ? this.#tap?.(grant, id, (end) => this.#end(relay, end, 'both')) : undefined;
    s.link.sendNow({ type: 'chan.open', id, kind: grant.kind, params: grant.params });
    this.#log.info(
      { host: grant.hostId, channel: id, kind: grant.kind, user: grant.userId },
      'channel opened',
    );

    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (relay.ended) return;
      if (!isBinary) {
        this.#end(
          relay,
          { reason: 'channel sockets carry binary messages only', code: 'request.invalid' },
          'both',
          CHANNEL_WS_CLOSE_PROTOCOL,
        );
        return;
      }
      const bytes = toBytes(data);
      const room = relay.outbox.push(bytes);
      // After the scheduler's send (queued first): the recorder is not on the keystroke's path.
      const tap = relay.tap;
      if (tap?.toAgent) queueMicrotask(() => tap.toAgent!(bytes));
      if (!room && !relay.paused) {
        // The agent has not taken what is queued: stop reading the client until it does.
        relay.paused = true;
        ws.pause();
        void relay.outbox.writable().then(() => {
          relay.paused = false;
          if (!relay.ended) ws.resume();
        });
      }
    });
    ws.on('close', () => this.#end(relay, { reason: 'client closed the channel' }, 'agent'));
    ws.on('error', (err) => this.#log.debug({ channel: id, err: err.message }, 'channel socket error'));
  }

  /** Ends every channel (controller shutting down). */
  close(): void {
    this.#closing = true;
    for (const s of this.#sessions.values()) {
      for (const relay of [...s.relays.values()]) {
        this.#end(
          relay,
          { reason: 'controller shutting down', code: 'internal' },
          'both',
          CHANNEL_WS_CLOSE_GOING_AWAY,
        );
      }
    }
    this.#sessions.clear();
  }

  #endAll(s: SessionChannels, reason: string, wsCode: number): void {
    for (const relay of [...s.relays.values()]) {
      this.#end(relay, { reason, code: 'request.disconnected' }, 'client', wsCode);
    }
  }

  /** Ends a channel once; tells the client, the agent or both. */
  #end(
    relay: Relay,
    end: ChannelEnd,
    tell: 'client' | 'agent' | 'both',
    wsCode = CHANNEL_WS_CLOSE_NORMAL,
  ): void {
    if (relay.ended) return;
    relay.ended = true;
    clearTimeout(relay.openTimer);
    relay.lane.remove();
    relay.outbox.clear();
    relay.session.relays.delete(relay.id);
    if (relay.session.link.single && relay.session.relays.size === 0) {
      this.#sessions.delete(relay.session.link);
    }
    relay.tap?.ended?.(end);
    if (tell !== 'client') {
      relay.session.link.sendNow({
        type: 'chan.close',
        id: relay.id,
        reason: end.reason.slice(0, 500),
        ...(end.code ? { code: end.code.slice(0, 64) } : {}),
      });
    }
    if (tell !== 'agent') {
      this.#toClient(relay, { type: 'close', ...end });
      safeClose(relay.ws, wsCode, end.reason);
    }
    this.#log.info(
      {
        host: relay.session.link.hostId,
        channel: relay.id,
        kind: relay.kind,
        reason: end.reason,
        code: end.code,
        exitCode: end.exitCode,
      },
      'channel closed',
    );
  }

  #toClient(relay: Relay, message: ChannelClientMessage): void {
    sendText(relay.ws, message);
  }
}

function sendText(ws: WebSocket, message: ChannelClientMessage): void {
  if (ws.readyState !== ws.OPEN) return;
  ws.send(JSON.stringify(message));
}

function safeClose(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.CLOSED || ws.readyState === ws.CLOSING) return;
  try {
    ws.close(code, closeReason(reason));
  } catch {
    ws.terminate();
  }
}

function toBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
