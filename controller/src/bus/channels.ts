// Live channels between controller replicas: a browser served by replica B opens a terminal, a
// live log tail or any other channel on a host whose agent session replica A holds. B checks the
// permission and issues the single-use ticket as for a local host (channels/service.ts); when the
// socket comes, B's hub finds no local session and asks here for a link to the holder
// (hosts.session_replica, read per channel). Over the broker, A opens the channel on the agent
// session with its own hub, through a stand-in for the client socket (BusClientSocket), so both
// hubs keep their rules: B's hub sees A as "the agent", A's hub sees B as "the client".
//
//   browser ==ws== B hub --[remote link]-- broker -- [BusClientSocket]-- A hub ==session== agent
//
// Credit stays end to end. Agent -> browser: A forwards a chunk the moment the agent sends it, but
// A's hub credits the agent for it (the socket's send callback) only once B returned credit for
// it, which B does once the browser's socket has written it: at most one window in flight, in no
// replica's memory for longer than the broker takes. Browser -> agent: B sends only within the
// credit A grants, and A grants it back only while its hub reads (it pauses the stand-in socket
// when the agent has not taken what is queued), so a window at most waits on A.
//
// Every message is sealed (ChaCha20-Poly1305 under a key derived from the master key, the topic
// as associated data) and carries its channel id and a per-direction sequence number: a forged,
// replayed, reordered or lost message ends the channel. An open also carries its time and a
// random id: older than CHANNEL_OPEN_MAX_AGE_MS, or seen before, it is refused. The open, its
// answers and the close go at QoS 1 (AT_LEAST_ONCE), so the broker may deliver one twice: the
// second is dropped (an open as seen before, the others behind the sequence), never acted on.
//
// A channel ends on every side when any side goes: the browser, the agent, either hub; a replica
// that dies (the broker publishes its will, `replicaGoneTopic`, sealed at its start); a replica
// that loses the broker (it ends its routed channels at once, the other side hears the will).
// Nothing carries a routed channel over a broker outage or to another replica when the host's
// agent moves: its shell or tail is gone on the host by then (the agent ends a channel whose
// session or controller side ends), so each side ends it at once with the reason the console shows,
// and the user opens a new one, which goes to whichever replica holds the host then.
// Where no will comes (a broker that lost it: a cluster node that died, a takeover; a replica that
// forgot the channel), the sides' keepalives do: each side sends `alive` on a channel it has sent
// nothing on for `keepaliveMs`, and ends a channel it has heard nothing of for `silenceMs` (at least
// three of the other side's keepalive intervals), so a channel never hangs silently. Keepalives go
// only to a side that announced them in its open or `accepted` (replicas from before them, which
// would take one for a malformed message and end the channel, get none).
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  CHANNEL_FRAME_MIN_CREDIT,
  CHANNEL_WINDOW_BYTES,
  CHANNEL_WS_CLOSE_AGENT_GONE,
  ChannelInbox,
  type ChannelEnd,
  type Lane,
  type OutgoingFrame,
  type SessionFrame,
} from '@keel/shared';
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import type { AgentChannelLink, ChannelHub } from '../channels/hub.ts';
import type { ChannelGrant } from '../channels/tickets.ts';
import type { Host } from '../repositories/hosts.ts';
import { REPLICA_RENEW_MS } from '../services/replicas.ts';
import type { MqttReplicaBus } from './mqtt.ts';
import { HOLDER_GONE, refusals } from './routing.ts';
import { busIdOfGoneTopic, channelTopic, replicaGoneFilter, replicaGoneTopic } from './topics.ts';

/** What the channel messages' key is derived for (secrets.deriveKey). */
export const CHANNEL_KEY_PURPOSE = 'keel.bus.channels';
/** An open older than this (clock skew included) is refused as a possible replay. */
export const CHANNEL_OPEN_MAX_AGE_MS = 60_000;
/**
 * QoS 0 for a channel's bytes and credit: one packet per message each way (QoS 1 adds an
 * acknowledgement per message, and measured slower for keystrokes: p50 3.1-3.8 ms against 5.2-6.8 ms
 * through a replica). Order holds on the connection; a message the broker drops breaks the sequence
 * and ends the channel with a reason.
 */
const CHANNEL_QOS = 0;
/**
 * Sent at QoS 1: the open and its answers (`accepted`, `opened`), whose loss would leave the
 * opener waiting out the hub's open timeout with nothing to show the gap, and the close, whose loss
 * would keep the other side's channel (and a shell) open. QoS 1 may deliver one twice (the sender
 * resends what the broker had not acknowledged): a second open is refused as a replay (seen before,
 * by its channel id), and one of these arriving again behind the sequence is dropped, not taken for
 * a loss. Data, credit and keepalives at QoS 0 never come twice from the broker: one behind the
 * sequence is a replay and ends the channel.
 */
const AT_LEAST_ONCE: ReadonlySet<string> = new Set(['open', 'accepted', 'opened', 'close']);
/**
 * A message ahead of the sequence is held, not taken for a loss, for this long: the broker sends a
 * subscriber at most its in-flight window of QoS 1 messages unacknowledged (Mosquitto: 20) and
 * queues the rest, while a QoS 0 one goes at once, so a channel's data can arrive before its
 * `accepted` or `opened` when many channels open together. A gap still open after this (a QoS 0
 * message the broker dropped) ends the channel as before.
 */
const CHANNEL_GAP_MS = 5_000;
/** At most this many messages of a channel are held ahead of its sequence (beyond: a loss). */
const MAX_AHEAD = 256;
/** A side sends `alive` on a routed channel it has sent nothing on for this long. */
export const CHANNEL_KEEPALIVE_MS = 10_000;
/** A side ends a routed channel it has heard nothing of for this long (the bus lost it). */
export const CHANNEL_SILENCE_MS = 30_000;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MAX_HEADER_BYTES = 64 * 1024;

// ---- the sealed message -------------------------------------------------------------------------

const id = z.string().min(1).max(200);
const header = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('open'),
    ch: id,
    seq: z.literal(0),
    at: z.number(),
    from: id,
    fromBus: id,
    /** The opener's keepalive interval (ms); absent from replicas without keepalives. */
    alive: z.number().int().positive().max(3_600_000).optional(),
    grant: z.object({
      userId: id,
      hostId: id,
      kind: z.string().min(1).max(64),
      params: z.unknown(),
      tokenId: id.optional(),
      expiresAt: z.number(),
    }),
  }),
  z.object({
    t: z.literal('accepted'),
    ch: id,
    seq: z.number().int().nonnegative(),
    bus: id,
    /** The holder's keepalive interval (ms); absent from replicas without keepalives. */
    alive: z.number().int().positive().max(3_600_000).optional(),
  }),
  z.object({ t: z.literal('alive'), ch: id, seq: z.number().int().nonnegative() }),
  z.object({ t: z.literal('opened'), ch: id, seq: z.number().int().nonnegative() }),
  z.object({ t: z.literal('data'), ch: id, seq: z.number().int().nonnegative() }),
  z.object({
    t: z.literal('credit'),
    ch: id,
    seq: z.number().int().nonnegative(),
    bytes: z.number().int().positive(),
  }),
  z.object({
    t: z.literal('close'),
    ch: id,
    seq: z.number().int().nonnegative(),
    reason: z.string().max(500),
    code: z.string().max(64).optional(),
    exitCode: z.number().int().optional(),
    wsCode: z.number().int().optional(),
  }),
]);
type Header = z.infer<typeof header>;
/** A will: the bus id, and (replicas from 1 Dec on) the lease id its hosts' sessions name. */
const goneSchema = z.object({ bus: id, replica: id.optional() });
/** At most this many gone replicas are remembered (their wills stay retained on the broker). */
const MAX_GONE = 10_000;

const VERSION = 1;
const SALT_BYTES = 16;
const MESSAGE_KEY_LABEL = 'keel.bus.channels.message\0';
const WILL_KEY_LABEL = 'keel.bus.replica-gone\0';

/** A message's clear prefix: which channel, which sender, which sequence number (the nonce). */
interface ClearPrefix {
  ch: string;
  salt: Buffer;
  seq: number;
  /** Where the ciphertext starts. */
  at: number;
}

function clearPrefix(ch: string, salt: Buffer, seq: number): Buffer {
  const chBytes = Buffer.from(ch, 'utf8');
  if (chBytes.length === 0 || chBytes.length > 255) throw new Error('channel id must be 1-255 bytes');
  if (salt.length !== SALT_BYTES) throw new Error(`salt must be ${SALT_BYTES} bytes`);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new Error('seq must be a non-negative integer');
  const prefix = Buffer.alloc(2 + chBytes.length + SALT_BYTES + 8);
  prefix[0] = VERSION;
  prefix[1] = chBytes.length;
  chBytes.copy(prefix, 2);
  salt.copy(prefix, 2 + chBytes.length);
  prefix.writeBigUInt64BE(BigInt(seq), 2 + chBytes.length + SALT_BYTES);
  return prefix;
}

/** Reads a message's clear prefix, or null when it is not one. */
export function readClearPrefix(sealed: Buffer): ClearPrefix | null {
  if (sealed.length < 2 || sealed[0] !== VERSION) return null;
  const chLength = sealed[1]!;
  const at = 2 + chLength + SALT_BYTES + 8;
  if (chLength === 0 || sealed.length < at + TAG_BYTES + 4) return null;
  const seq = sealed.readBigUInt64BE(2 + chLength + SALT_BYTES);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return {
    ch: sealed.subarray(2, 2 + chLength).toString('utf8'),
    salt: Buffer.from(sealed.subarray(2 + chLength, 2 + chLength + SALT_BYTES)),
    seq: Number(seq),
    at,
  };
}

/**
 * The key one sender seals one channel's messages to one topic with: HKDF from the channels' key
 * over the topic, the channel id and the sender's random salt. Each direction of each channel has
 * its own key (the two directions go to different replicas' topics), and a sender that might reuse
 * a channel id (an open replayed and accepted twice) still gets a fresh key from its own salt, so
 * the sequence number can be the nonce: never reused under one key, with no birthday bound.
 */
export function channelMessageKey(key: Buffer, topic: string, ch: string, salt: Buffer): Buffer {
  const info = Buffer.concat([
    Buffer.from(MESSAGE_KEY_LABEL, 'utf8'),
    createHash('sha256').update(topic, 'utf8').digest(),
    Buffer.from(`\0${ch}\0`, 'utf8'),
    salt,
  ]);
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, 32));
}

function counterNonce(seq: number): Buffer {
  const nonce = Buffer.alloc(NONCE_BYTES);
  nonce.writeBigUInt64BE(BigInt(seq), NONCE_BYTES - 8);
  return nonce;
}

/**
 * Seals under a message key already derived (channelMessageKey): the clear prefix (version,
 * channel id, the sender's salt, the sequence number), then [u32 header length][header JSON][body]
 * under ChaCha20-Poly1305 with the sequence number as nonce, then the tag. The topic and the prefix
 * are the associated data, so a message cannot be moved to another replica's topic or channel.
 */
export function sealWithMessageKey(
  messageKey: Buffer,
  topic: string,
  salt: Buffer,
  head: { ch: string; seq: number } & Record<string, unknown>,
  body?: Uint8Array,
): Buffer {
  const { ch, seq, ...rest } = head;
  const prefix = clearPrefix(ch, salt, seq);
  const json = Buffer.from(JSON.stringify(rest), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  const cipher = createCipheriv('chacha20-poly1305', messageKey, counterNonce(seq), {
    authTagLength: TAG_BYTES,
  });
  cipher.setAAD(Buffer.concat([Buffer.from(topic, 'utf8'), prefix]), {
    plaintextLength: 4 + json.length + (body?.byteLength ?? 0),
  });
  const parts = [prefix, cipher.update(length), cipher.update(json)];
  if (body && body.byteLength > 0) parts.push(cipher.update(body));
  parts.push(cipher.final(), cipher.getAuthTag());
  return Buffer.concat(parts);
}

/** Opens a message under its message key: its header (unchecked, with `ch` and `seq`) and body, or null. */
export function openWithMessageKey(
  messageKey: Buffer,
  topic: string,
  sealed: Buffer,
  prefix: ClearPrefix,
): { head: Record<string, unknown>; body: Buffer } | null {
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('chacha20-poly1305', messageKey, counterNonce(prefix.seq), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(Buffer.concat([Buffer.from(topic, 'utf8'), sealed.subarray(0, prefix.at)]), {
      plaintextLength: sealed.length - prefix.at - TAG_BYTES,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    plain = Buffer.concat([
      decipher.update(sealed.subarray(prefix.at, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    return null;
  }
  const length = plain.readUInt32BE(0);
  if (length > MAX_HEADER_BYTES || 4 + length > plain.length) return null;
  try {
    const parsed: unknown = JSON.parse(plain.subarray(4, 4 + length).toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
    return {
      head: { ...(parsed as Record<string, unknown>), ch: prefix.ch, seq: prefix.seq },
      body: plain.subarray(4 + length),
    };
  } catch {
    return null;
  }
}

/**
 * Seals a channel message for `topic` under the channels' key (`salt`: the sender's, random per
 * channel and direction; a fresh one when not given). See sealWithMessageKey for the format.
 */
export function sealChannelMessage(
  key: Buffer,
  topic: string,
  head: { ch: string; seq: number } & Record<string, unknown>,
  body?: Uint8Array,
  salt: Buffer = randomBytes(SALT_BYTES),
): Buffer {
  return sealWithMessageKey(channelMessageKey(key, topic, head.ch, salt), topic, salt, head, body);
}

/** Opens a channel message sealed for `topic`: its header (unchecked) and body, or null. */
export function openChannelMessage(
  key: Buffer,
  topic: string,
  sealed: Buffer,
): { head: Record<string, unknown>; body: Buffer; salt: Buffer } | null {
  const prefix = readClearPrefix(sealed);
  if (!prefix) return null;
  const opened = openWithMessageKey(
    channelMessageKey(key, topic, prefix.ch, prefix.salt),
    topic,
    sealed,
    prefix,
  );
  return opened ? { ...opened, salt: prefix.salt } : null;
}

/** The will's key: its own label, so a will and a channel message never share a key. */
function willKey(key: Buffer, topic: string): Buffer {
  const info = Buffer.concat([
    Buffer.from(WILL_KEY_LABEL, 'utf8'),
    createHash('sha256').update(topic, 'utf8').digest(),
  ]);
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, 32));
}

function sealWill(key: Buffer, topic: string, busId: string, leaseId?: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('chacha20-poly1305', willKey(key, topic), nonce, {
    authTagLength: TAG_BYTES,
  });
  const plain = Buffer.from(JSON.stringify({ bus: busId, ...(leaseId ? { replica: leaseId } : {}) }), 'utf8');
  cipher.setAAD(Buffer.from(topic, 'utf8'), { plaintextLength: plain.length });
  const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([nonce, sealed, cipher.getAuthTag()]);
}

function openWill(key: Buffer, topic: string, sealed: Buffer): unknown {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return null;
  try {
    const decipher = createDecipheriv(
      'chacha20-poly1305',
      willKey(key, topic),
      sealed.subarray(0, NONCE_BYTES),
      {
        authTagLength: TAG_BYTES,
      },
    );
    decipher.setAAD(Buffer.from(topic, 'utf8'), { plaintextLength: sealed.length - NONCE_BYTES - TAG_BYTES });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = Buffer.concat([
      decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
    return JSON.parse(plain.toString('utf8'));
  } catch {
    return null;
  }
}

// ---- the holder's stand-in for the client socket ------------------------------------------------

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * The subset of `ws.WebSocket` the hub uses, for a client on another replica: what the hub sends
 * goes over the broker; what the other replica sends arrives through `deliver`.
 */
class BusClientSocket extends EventEmitter {
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;
  readyState = OPEN;
  /** Credit the client's replica returned and not yet spent on send callbacks. */
  #credit = 0;
  /** Send callbacks waiting for credit, with what each frame costs. */
  #unacked: { cost: number; cb?: (err?: Error) => void }[] = [];
  #paused = false;
  /** Client bytes that arrived while the hub had paused reading. */
  #held: Buffer[] = [];
  /** Client bytes the hub took while paused after them: credited back on resume. */
  #uncredited = 0;
  #inbox = new ChannelInbox(CHANNEL_WINDOW_BYTES);
  #lastClose: ChannelEnd | null = null;

  constructor(
    private readonly out: {
      text(message: { type: string } & Partial<ChannelEnd>): void;
      data(body: Buffer): void;
      credit(bytes: number): void;
      close(end: ChannelEnd, wsCode: number): void;
      violation(reason: string): void;
    },
  ) {
    super();
  }

  send(data: Buffer | string, cb?: (err?: Error) => void): void {
    if (this.readyState !== OPEN) return;
    if (typeof data === 'string') {
      const message = JSON.parse(data) as { type: string } & Partial<ChannelEnd>;
      if (message.type === 'close') this.#lastClose = message as ChannelEnd;
      else this.out.text(message);
      cb?.();
      return;
    }
    this.out.data(data);
    this.#unacked.push({ cost: Math.max(data.byteLength, CHANNEL_FRAME_MIN_CREDIT), ...(cb ? { cb } : {}) });
    this.#release();
  }

  /** The client's replica returned `bytes` of credit: the hub's send callbacks they cover run. */
  credit(bytes: number): void {
    this.#credit += bytes;
    this.#release();
  }

  #release(): void {
    while (this.#unacked.length > 0 && this.#unacked[0]!.cost <= this.#credit) {
      const { cost, cb } = this.#unacked.shift()!;
      this.#credit -= cost;
      cb?.();
    }
  }

  /** Client bytes from the other replica, within the credit this side granted. */
  deliver(body: Buffer): void {
    if (this.readyState !== OPEN) return;
    if (!this.#inbox.received(body.length)) {
      this.out.violation('the client sent beyond its credit');
      return;
    }
    if (this.#paused) {
      this.#held.push(body);
      return;
    }
    this.#emitData(body);
  }

  #emitData(body: Buffer): void {
    this.emit('message', body, true);
    // Taken by the hub; if it paused on it, the credit waits until it reads again.
    if (this.#paused) this.#uncredited += body.length === 0 ? 1 : body.length;
    else this.#consumed(body.length);
  }

  #consumed(bytes: number): void {
    const give = this.#inbox.consumed(bytes);
    if (give > 0) this.out.credit(give);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#uncredited > 0) {
      const bytes = this.#uncredited;
      this.#uncredited = 0;
      this.#consumed(bytes);
    }
    while (!this.#paused && this.#held.length > 0 && this.readyState === OPEN) {
      this.#emitData(this.#held.shift()!);
    }
  }

  /** The hub ends the channel: the client's replica is told how. */
  close(code = 1000, reason = ''): void {
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSED;
    this.out.close(this.#lastClose ?? { reason: reason || 'closed' }, code);
    this.#drop();
    this.emit('close', code, Buffer.from(reason));
  }

  terminate(): void {
    this.close(1006, 'terminated');
  }

  /** The client's side ended (its replica said so, or is gone): the hub ends the channel. */
  ended(): void {
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSED;
    this.#drop();
    this.emit('close', 1000, Buffer.alloc(0));
  }

  #drop(): void {
    this.#held = [];
    this.#unacked = [];
  }
}

// ---- routing ------------------------------------------------------------------------------------

export interface ChannelRoutingOptions {
  bus: MqttReplicaBus;
  hub: ChannelHub;
  /** This replica's lease id: what hosts.session_replica names, and its channel topic. */
  replicaId: string;
  hosts: { get(id: string): Promise<Host | null> };
  /** secrets.deriveKey(CHANNEL_KEY_PURPOSE), the same on every replica. */
  key: Buffer;
  log: Logger;
  /** How long a side stays quiet on a channel before it sends `alive` (default CHANNEL_KEEPALIVE_MS). */
  keepaliveMs?: number;
  /** How long a side waits to hear of a channel before ending it (default CHANNEL_SILENCE_MS). */
  silenceMs?: number;
  /** How long a message ahead of the sequence waits for the gap to fill (default CHANNEL_GAP_MS). */
  gapMs?: number;
  /**
   * Which of these lease ids still have a live lease (repositories/replicas.ts `live`). With it, a
   * will whose lease has lapsed is cleared from the broker (see sweepWills); without it, wills stay.
   */
  liveLeases?: (leaseIds: string[]) => Promise<string[]>;
  /** How often the wills heard are checked against the live leases (default REPLICA_RENEW_MS). */
  willSweepMs?: number;
}

/** What channel routing counted since start. */
export interface ChannelRoutingStats {
  /** Channels this replica opened on a host another replica holds. */
  opened: number;
  /** Channels other replicas opened through this one's agent sessions. */
  served: number;
  /** Messages dropped: not sealed under this key, malformed, out of order, replayed or too old. */
  refused: number;
  /** Routed channels open now, both roles. */
  open: number;
}

/** One routed channel, as this replica sees it. */
interface Routed {
  ch: string;
  /** `client`: the browser is here; `holder`: the agent session is here. */
  role: 'client' | 'holder';
  /** The other replica's lease id (its channel topic). */
  peer: string;
  /** The other replica's bus id (its will's topic), once known. */
  peerBus: string | null;
  sendSeq: number;
  recvSeq: number;
  /** This side's random salt for the channel, and the key it seals with (channelMessageKey). */
  sendSalt: Buffer;
  sendKey: Buffer;
  /** The other side's salt and key, pinned by its first message (the open, or `accepted`). */
  recvSalt: Buffer | null;
  recvKey: Buffer | null;
  /** client role: the hub's link for this channel and the hub's own id for it. */
  link?: AgentChannelLink;
  hubId?: string;
  /** holder role: the stand-in socket the hub reads and writes. */
  socket?: BusClientSocket;
  /** The other side's keepalive interval, once it announced one (null: it sends none, expect none). */
  peerAlive: number | null;
  /** When this side last sent, and last heard a message of, the channel (Date.now()). */
  lastSent: number;
  lastHeard: number;
  /** Messages that came ahead of recvSeq (CHANNEL_GAP_MS), by sequence, and the gap's timer. */
  ahead: Map<number, { head: Header; body: Buffer }>;
  gapTimer: NodeJS.Timeout | null;
}

/**
 * Carries live channels between replicas over the bus; `open` is the hub's `remote` (a link to the
 * replica holding a host's session, or undefined when no other replica holds it).
 * @example const routing = routeChannels({ bus, hub, replicaId: lease.id, hosts, key, log })
 */
export function routeChannels(opts: ChannelRoutingOptions) {
  const { bus, hub, replicaId, key, log } = opts;
  const keepaliveMs = opts.keepaliveMs ?? CHANNEL_KEEPALIVE_MS;
  const silenceMs = opts.silenceMs ?? CHANNEL_SILENCE_MS;
  const gapMs = opts.gapMs ?? CHANNEL_GAP_MS;
  const stats = { opened: 0, served: 0, refused: 0 };
  const channels = new Map<string, Routed>();
  const seenOpens = new Map<string, number>();
  /**
   * Replicas whose will was heard and that have not come back since: bus id -> lease id (null from
   * replicas whose will names none), and lease id -> bus id (hosts.session_replica names the lease).
   */
  const goneBuses = new Map<string, string | null>();
  const goneLeases = new Map<string, string>();
  const ownTopic = channelTopic(bus.prefix, replicaId);

  const refuse = refusals(log, stats, 'routed channel message dropped');

  const send = (r: Routed, head: Record<string, unknown>, body?: Uint8Array) => {
    if (!bus.client.connected) return;
    const topic = channelTopic(bus.prefix, r.peer);
    const message = sealWithMessageKey(
      r.sendKey,
      topic,
      r.sendSalt,
      { ...head, ch: r.ch, seq: r.sendSeq++ },
      body,
    );
    // The open, its answers and the close at QoS 1 (AT_LEAST_ONCE): the broker may drop QoS 0.
    bus.client.publish(topic, message, { qos: AT_LEAST_ONCE.has(String(head.t)) ? 1 : CHANNEL_QOS });
    r.lastSent = Date.now();
  };

  /** A channel as this side starts it: its own salt and sealing key towards `peer`. */
  const routed = (ch: string, role: Routed['role'], peer: string, recvSeq: number): Routed => {
    const sendSalt = randomBytes(SALT_BYTES);
    return {
      ch,
      role,
      peer,
      peerBus: null,
      sendSeq: 0,
      recvSeq,
      sendSalt,
      sendKey: channelMessageKey(key, channelTopic(bus.prefix, peer), ch, sendSalt),
      recvSalt: null,
      recvKey: null,
      peerAlive: null,
      lastSent: Date.now(),
      lastHeard: Date.now(),
      ahead: new Map(),
      gapTimer: null,
    };
  };

  /** Learns the other side's bus id; a replica already gone (its will heard first) ends the channel. */
  const watch = (r: Routed, busId: string) => {
    if (r.peerBus) return;
    r.peerBus = busId;
    // After the caller's own steps (the hub opening it), as a will arriving then would.
    if (goneBuses.has(busId)) queueMicrotask(() => channels.get(r.ch) === r && cutGone(r));
  };

  /** Forgets a channel (its ends are already told). */
  const forget = (r: Routed) => {
    channels.delete(r.ch);
    if (r.gapTimer) clearTimeout(r.gapTimer);
    r.gapTimer = null;
    r.ahead.clear();
  };

  /** Ends a channel here because the other side cannot be reached any more. */
  const cut = (r: Routed, reason: string) => {
    forget(r);
    if (r.role === 'client') hub.sessionEnded(r.link!, reason);
    else r.socket!.ended();
  };

  const cutGone = (r: Routed) => {
    log.warn(
      { channel: r.ch, peer: r.peer, role: r.role },
      'routed channel ended: the other replica is gone',
    );
    cut(
      r,
      r.role === 'client'
        ? // Its will: it died, or its connection to the broker ended (the same to the broker).
          "the controller replica holding this host's session stopped or lost the message bus"
        : 'the controller replica serving the client stopped or lost the message bus',
    );
  };

  // Every replica's will (retained: those of replicas gone before this subscription too). A will
  // means that replica died or lost the broker: its channels end, and the hosts it holds are not
  // reached through it (holderGone) until it is back, which its clearing of the will says (an
  // empty retained message, the first thing it publishes on each connection).
  /** Forgets a gone replica (it is back, or its will was cleared); returns the lease its will named. */
  function forgetGone(busId: string): string | null | undefined {
    const lease = goneBuses.get(busId);
    goneBuses.delete(busId);
    if (lease && goneLeases.get(lease) === busId) goneLeases.delete(lease);
    return lease;
  }
  /** Clears a replica's retained will: the empty retained message every replica hears as "back". */
  function clearWill(busId: string): void {
    bus.client.publish(replicaGoneTopic(bus.prefix, busId), Buffer.alloc(0), { qos: 1, retain: true });
  }
  function onGone(busId: string, body: Buffer): void {
    if (body.length === 0) {
      if (!goneBuses.has(busId)) return;
      const lease = forgetGone(busId);
      log.info({ bus: busId, replica: lease }, 'controller replica back on the message bus');
      return;
    }
    const topic = replicaGoneTopic(bus.prefix, busId);
    if (busId === bus.replicaId) {
      // This replica's own will while it is connected: a replay, or the broker's word on a
      // connection this one already replaced. It is here: clear it again for the others.
      if (bus.client.connected) clearWill(busId);
      return;
    }
    const gone = goneSchema.safeParse(openWill(key, topic, body));
    if (!gone.success || gone.data.bus !== busId) return refuse('not sealed under this master key');
    const lease = gone.data.replica ?? null;
    if (!goneBuses.has(busId)) {
      log.warn({ bus: busId, replica: lease }, 'controller replica gone from the message bus (its will)');
      goneBuses.set(busId, lease);
      if (lease) goneLeases.set(lease, busId);
      if (goneBuses.size > MAX_GONE) {
        const [oldest, oldLease] = goneBuses.entries().next().value!;
        goneBuses.delete(oldest);
        if (oldLease && goneLeases.get(oldLease) === oldest) goneLeases.delete(oldLease);
      }
      if (lease) sweepWills();
    }
    for (const r of [...channels.values()]) {
      // A channel still waiting for the holder's `accepted` knows it by its lease id only.
      if (r.peerBus === busId || (lease && r.role === 'client' && r.peer === lease)) cutGone(r);
    }
  }
  const stopGone = bus.listen(
    replicaGoneFilter(bus.prefix),
    (body, topic) => {
      const busId = busIdOfGoneTopic(bus.prefix, topic);
      if (busId) onGone(busId, body);
    },
    { retained: true },
  );

  // A crashed replica's will stays retained: its next life has a new bus id and clears only its own
  // topic, so wills of dead lives would pile up on the broker (one per crash), each delivered to
  // every replica at every connection. Once the lease a will names has lapsed (no row: the replica
  // is gone for good and its hosts were released, REPLICA_STALE_MS), nothing can be refused on its
  // account any more, and any replica clears it: an empty retained message, as the replica itself
  // would send on coming back, which every replica hears as "back". Checked when a will is heard
  // (the retained ones at each connection: a lapsed one goes at once) and every `willSweepMs`
  // (a replica that died with its lease fresh: cleared within a sweep of the lapse). A will
  // naming no lease (a replica from before 1 Dec) cannot be judged and stays.
  let sweeping: Promise<void> | null = null;
  let sweepAgain = false;
  const sweep = async (): Promise<void> => {
    do {
      sweepAgain = false;
      const heard = [...goneLeases.keys()];
      if (heard.length === 0 || !bus.client.connected) return;
      const live = new Set(await opts.liveLeases!(heard));
      for (const lease of heard) {
        const busId = goneLeases.get(lease);
        if (live.has(lease) || !busId || !bus.client.connected) continue;
        log.info({ bus: busId, replica: lease }, "clearing a gone replica's will: its lease has lapsed");
        clearWill(busId);
        // No replica hears its own publications (no-local): the others hear the clear as "back".
        forgetGone(busId);
      }
    } while (sweepAgain);
  };
  const sweepWills = (): void => {
    if (!opts.liveLeases || goneLeases.size === 0) return;
    if (sweeping) {
      sweepAgain = true;
      return;
    }
    // `finally` runs after the assignment even when the sweep ends without waiting (nothing heard).
    sweeping = sweep()
      .catch((err: unknown) => log.warn({ err }, 'checking the wills heard against the live leases failed'))
      .finally(() => (sweeping = null));
  };
  const willSweep = opts.liveLeases ? setInterval(sweepWills, opts.willSweepMs ?? REPLICA_RENEW_MS) : null;
  willSweep?.unref();

  // Losing the broker cuts every routed channel here; the other side hears this replica's will.
  // What this replica knew of gone replicas is forgotten: back on the broker, the wills still
  // retained are heard again, and a replica that came back meanwhile has none.
  const onBrokerLost = () => {
    goneBuses.clear();
    goneLeases.clear();
    for (const r of [...channels.values()]) {
      cut(
        r,
        r.role === 'client'
          ? "lost the message bus to the controller replica holding this host's session"
          : 'lost the message bus to the controller replica serving the client',
      );
    }
  };
  bus.client.on('close', onBrokerLost);

  // Keepalives, and the end of a channel the other side has gone quiet on (see the header).
  const tickMs = Math.max(10, Math.min(1_000, Math.floor(keepaliveMs / 2)));
  let lastTick = Date.now();
  const keepalive = setInterval(() => {
    const now = Date.now();
    // This process stalled (its event loop held up): what the other sides sent meanwhile is still
    // unread in the socket, so silence is counted from now, not taken for theirs.
    const stalled = now - lastTick > 3 * tickMs + 1_000;
    lastTick = now;
    for (const r of [...channels.values()]) {
      if (r.peerAlive === null) continue;
      if (stalled) r.lastHeard = Math.max(r.lastHeard, now);
      const limit = Math.max(silenceMs, 3 * r.peerAlive);
      if (now - r.lastHeard > limit) {
        const quiet = Math.round((now - r.lastHeard) / 1000);
        const reason =
          r.role === 'client'
            ? `no word for ${quiet} s from the controller replica holding this host's session (lost on the message bus)`
            : `no word for ${quiet} s from the controller replica serving the client (lost on the message bus)`;
        log.warn(
          { channel: r.ch, peer: r.peer, role: r.role, quietMs: now - r.lastHeard },
          'routed channel ended: the other side went quiet',
        );
        send(r, { t: 'close', reason, code: 'request.disconnected', wsCode: CHANNEL_WS_CLOSE_AGENT_GONE });
        cut(r, reason);
      } else if (now - r.lastSent >= keepaliveMs) send(r, { t: 'alive' });
    }
  }, tickMs);
  keepalive.unref();

  const notSealed = 'not sealed under this master key (replicas must share KEEL_MASTER_KEY)';
  const stopListening = bus.listen(ownTopic, (body) => {
    const prefix = readClearPrefix(body);
    if (!prefix) return refuse('malformed');
    const r = channels.get(prefix.ch);
    if (!r) {
      // Only an open starts a channel; anything else is for one ended here meanwhile (messages
      // cross) or a replay of a closed one, and is not worth a key derivation.
      if (prefix.seq !== 0) return;
      const messageKey = channelMessageKey(key, ownTopic, prefix.ch, prefix.salt);
      const opened = openWithMessageKey(messageKey, ownTopic, body, prefix);
      if (!opened) return refuse(notSealed);
      const parsed = header.safeParse(opened.head);
      if (!parsed.success) return refuse('malformed');
      if (parsed.data.t !== 'open') return; // the first message of a channel ended here
      return onOpen(parsed.data, prefix.salt, messageKey);
    }
    if (r.recvSalt && !r.recvSalt.equals(prefix.salt))
      return refuse('from another sender', { channel: r.ch });
    const messageKey = r.recvKey ?? channelMessageKey(key, ownTopic, prefix.ch, prefix.salt);
    const opened = openWithMessageKey(messageKey, ownTopic, body, prefix);
    if (!opened) return refuse(notSealed);
    const parsed = header.safeParse(opened.head);
    if (!parsed.success) return refuse('malformed');
    const head = parsed.data;
    if (head.t === 'open') return refuse('replayed');
    if (!r.recvSalt) {
      r.recvSalt = prefix.salt;
      r.recvKey = messageKey;
    }
    // A QoS 1 message delivered again (AT_LEAST_ONCE): already acted on, so nothing to do.
    const again = head.seq < r.recvSeq || r.ahead.has(head.seq);
    if (again && AT_LEAST_ONCE.has(head.t)) return;
    if (again) return outOfOrder(r, head.seq); // a replay
    if (head.seq > r.recvSeq) {
      // Ahead: held until the messages before it come (CHANNEL_GAP_MS), or taken for a loss.
      if (r.ahead.size >= MAX_AHEAD) return outOfOrder(r, head.seq);
      r.ahead.set(head.seq, { head, body: opened.body });
      r.gapTimer ??= setTimeout(() => {
        r.gapTimer = null;
        if (channels.get(r.ch) === r && r.ahead.size > 0) outOfOrder(r, Math.min(...r.ahead.keys()));
      }, gapMs).unref();
      return;
    }
    deliver(r, head, opened.body);
    // What came ahead of it, in order, while the channel lasts.
    for (let next = r.ahead.get(r.recvSeq); next && channels.get(r.ch) === r; next = r.ahead.get(r.recvSeq)) {
      r.ahead.delete(r.recvSeq);
      deliver(r, next.head, next.body);
    }
    if (r.ahead.size === 0 && r.gapTimer) {
      clearTimeout(r.gapTimer);
      r.gapTimer = null;
    }
  });

  /** The next message of a channel, in sequence. */
  function deliver(r: Routed, head: Header, body: Buffer): void {
    r.recvSeq++;
    r.lastHeard = Date.now();
    if (head.t === 'alive') return;
    if (r.role === 'client') onClientSide(r, head, body);
    else onHolderSide(r, head, body);
  }

  /** A message replayed, or one lost (a gap held past CHANNEL_GAP_MS): the channel ends. */
  function outOfOrder(r: Routed, got: number): void {
    refuse('out of order', { channel: r.ch, expected: r.recvSeq, got });
    const reason = 'channel bytes were lost or reordered on the message bus';
    send(r, { t: 'close', reason, code: 'request.disconnected', wsCode: CHANNEL_WS_CLOSE_AGENT_GONE });
    cut(r, reason);
  }

  /** A message for a channel whose browser is here, from the replica holding the agent. */
  function onClientSide(r: Routed, head: Header, body: Buffer): void {
    const link = r.link!;
    const hubId = r.hubId!;
    switch (head.t) {
      case 'accepted':
        if (head.alive) r.peerAlive = head.alive;
        watch(r, head.bus);
        return;
      case 'opened':
        hub.onAgentFrame(link, { type: 'chan.opened', id: hubId }, Buffer.alloc(0));
        return;
      case 'data':
        hub.onAgentFrame(link, { type: 'chan.data', id: hubId }, body);
        return;
      case 'credit':
        hub.onAgentFrame(link, { type: 'chan.credit', id: hubId, bytes: head.bytes }, Buffer.alloc(0));
        return;
      case 'close':
        forget(r);
        if (head.wsCode === CHANNEL_WS_CLOSE_AGENT_GONE) hub.sessionEnded(link, head.reason);
        else
          hub.onAgentFrame(
            link,
            {
              type: 'chan.close',
              id: hubId,
              reason: head.reason,
              ...(head.code ? { code: head.code } : {}),
              ...(head.exitCode !== undefined ? { exitCode: head.exitCode } : {}),
            },
            Buffer.alloc(0),
          );
        return;
      default:
        refuse('unexpected message', { type: head.t });
    }
  }

  /** A message for a channel whose agent session is here, from the replica serving the browser. */
  function onHolderSide(r: Routed, head: Header, body: Buffer): void {
    const socket = r.socket!;
    switch (head.t) {
      case 'data':
        socket.deliver(body);
        return;
      case 'credit':
        socket.credit(head.bytes);
        return;
      case 'close':
        forget(r);
        socket.ended();
        return;
      default:
        refuse('unexpected message', { type: head.t });
    }
  }

  /** Another replica opens a channel on an agent session held here. */
  function onOpen(head: Extract<Header, { t: 'open' }>, salt: Buffer, messageKey: Buffer): void {
    const now = Date.now();
    if (Math.abs(now - head.at) > CHANNEL_OPEN_MAX_AGE_MS) return refuse('too old', { age: now - head.at });
    if (seenOpens.has(head.ch) || channels.has(head.ch)) return refuse('replayed');
    seenOpens.set(head.ch, now);
    for (const [seenId, at] of seenOpens) {
      if (now - at <= CHANNEL_OPEN_MAX_AGE_MS * 2) break; // insertion order: the rest are newer
      seenOpens.delete(seenId);
    }
    const r = routed(head.ch, 'holder', head.from, 1);
    r.recvSalt = salt;
    r.recvKey = messageKey;
    if (head.alive) r.peerAlive = head.alive;
    const socket = new BusClientSocket({
      text: (message) => {
        if (message.type === 'opened') send(r, { t: 'opened' });
      },
      data: (bytes) => send(r, { t: 'data' }, bytes),
      credit: (bytes) => send(r, { t: 'credit', bytes }),
      close: (end, wsCode) => {
        if (!channels.has(r.ch)) return; // the client's side ended it: nothing to tell
        forget(r);
        send(r, {
          t: 'close',
          reason: end.reason.slice(0, 500),
          ...(end.code ? { code: end.code.slice(0, 64) } : {}),
          ...(end.exitCode !== undefined ? { exitCode: end.exitCode } : {}),
          wsCode,
        });
      },
      violation: (reason) => {
        send(r, { t: 'close', reason, code: 'frame.unexpected' });
        forget(r);
        socket.ended();
      },
    });
    r.socket = socket;
    channels.set(r.ch, r);
    stats.served++;
    // `alive` tells the client's replica this side sends keepalives and expects them.
    send(r, { t: 'accepted', bus: bus.replicaId, alive: keepaliveMs });
    watch(r, head.fromBus);
    const { tokenId, ...grant } = head.grant;
    log.info(
      { host: grant.hostId, channel: r.ch, kind: grant.kind, user: grant.userId, for: head.from },
      'routed channel opening here',
    );
    hub.open({ ...grant, ...(tokenId ? { tokenId } : {}) }, socket as unknown as WebSocket, { routed: true });
  }

  /**
   * The hub's `remote`: a link to the replica holding the host's session, undefined when no other
   * replica holds it, or the refusal when that replica is gone from the bus (its will heard).
   */
  async function open(grant: ChannelGrant): Promise<AgentChannelLink | ChannelEnd | undefined> {
    const host = await opts.hosts.get(grant.hostId);
    const holder = host?.online ? host.sessionReplica : null;
    if (!holder || holder === replicaId || !bus.client.connected) return undefined;
    if (goneLeases.has(holder)) return { reason: HOLDER_GONE, code: 'host.offline' };
    const r = routed(randomUUID(), 'client', holder, 0);
    const link: AgentChannelLink = {
      hostId: grant.hostId,
      // The holder's hub checks the agent's kinds (and its own limits) and refuses with the reason.
      channelKinds: null,
      single: true,
      sendNow(frame: SessionFrame) {
        switch (frame.type) {
          case 'chan.open': {
            r.hubId = frame.id;
            channels.set(r.ch, r);
            stats.opened++;
            const { expiresAt, tokenId, ...rest } = grant;
            send(r, {
              t: 'open',
              at: Date.now(),
              from: replicaId,
              fromBus: bus.replicaId,
              alive: keepaliveMs,
              grant: { ...rest, params: frame.params, expiresAt, ...(tokenId ? { tokenId } : {}) },
            });
            return;
          }
          case 'chan.credit':
            send(r, { t: 'credit', bytes: frame.bytes });
            return;
          case 'chan.close':
            if (!channels.has(r.ch)) return;
            forget(r);
            send(r, {
              t: 'close',
              reason: frame.reason,
              ...(frame.code ? { code: frame.code } : {}),
            });
            return;
          default:
            return;
        }
      },
      lane(pull: () => OutgoingFrame | null): Lane {
        let removed = false;
        return {
          // The outbox yields only what the holder granted: the credit bounds what goes out.
          wake: () => {
            for (let out = removed ? null : pull(); out; out = removed ? null : pull()) {
              send(r, { t: 'data' }, out.body);
            }
          },
          remove: () => (removed = true),
        };
      },
    };
    r.link = link;
    return link;
  }

  return {
    open,
    stats: (): ChannelRoutingStats => ({ ...stats, open: channels.size }),
    /** True while the replica with this lease id is gone from the bus (its will heard, not cleared). */
    holderGone: (leaseId: string): boolean => goneLeases.has(leaseId),
    /** Ends every routed channel and stops listening (the controller is stopping). */
    close() {
      clearInterval(keepalive);
      if (willSweep) clearInterval(willSweep);
      bus.client.off('close', onBrokerLost);
      for (const r of [...channels.values()]) {
        send(r, { t: 'close', reason: 'controller shutting down', code: 'internal' });
        cut(r, 'controller shutting down');
      }
      stopListening();
      stopGone();
    },
  };
}

export type ChannelRouting = ReturnType<typeof routeChannels>;

/**
 * The will a replica leaves with the broker: published by the broker when the replica's connection
 * ends without a goodbye (killed, hung past its keepalive, cut off), it ends the channels other
 * replicas route through it, and they reach none of the hosts whose sessions name `leaseId` until
 * the replica clears it (it does on each connection). Sealed, so a client of the broker without the
 * master key cannot forge one; being fixed at start, it can be replayed by one that recorded it,
 * which ends channels, and which the replica, hearing its own will while connected, clears again.
 */
export function replicaWill(
  key: Buffer,
  prefix: string,
  busId: string,
  leaseId?: string,
): { topic: string; payload: Buffer } {
  const topic = replicaGoneTopic(prefix, busId);
  return { topic, payload: sealWill(key, topic, busId, leaseId) };
}
