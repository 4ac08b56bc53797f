// The MQTT bus: controller replicas sharing one PostgreSQL share their fleet events through a
// broker (KEEL_MQTT_URL: Mosquitto, an EMQX cluster, ...). Each event a replica publishes goes to
// its own subscribers at once, as in process, and to the broker on its topic (bus/topics.ts);
// events from the other replicas reach this replica's fleet-wide subscribers, never its `local`
// ones. A replica's own events are not delivered twice: it subscribes with MQTT 5's no-local
// option and also drops any message naming itself as origin (a broker that ignores no-local).
//
// The broker is not trusted: every message is checked (bus/wire.ts) and a malformed one is
// dropped and counted; so is one whose MAC (under a key derived from the shared master key) does
// not verify, one older than EVENT_MAX_AGE_MS, and one seen before (a replay, or QoS 1 resending
// what already arrived). Losing the broker costs the other replicas' live views, never this
// replica's agents: events are not queued while it is away or slow (the database holds the truth), the
// connection is retried with backoff, the loss and the return are logged once each, and on return
// `onReconnected` listeners resend what others may have missed (the hosts held here).
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { BusStats, FleetBus, FleetEvent, ReplicaBus } from './index.ts';
import { EVENT_QOS, eventFilters, hostStateTopic, topicOf } from './topics.ts';
import { decodeEvent, encodeEvent, type Dropped } from './wire.ts';

/** An event published longer ago than this (clock skew included) is dropped as unverified. */
export const EVENT_MAX_AGE_MS = 60_000;
/** How far behind an origin's highest sequence number an event may arrive (out of order). */
const SEQ_WINDOW = 10_000;

/** Bytes waiting for the broker's socket beyond which events are not sent (counted as unsent). */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

export interface MqttBusOptions {
  /** Broker URL (mqtt://, mqtts://, ws://, wss://), credentials included: never logged. */
  url: string;
  /** Topic prefix of the deployment (KEEL_MQTT_TOPIC_PREFIX). */
  prefix: string;
  /**
   * The fleet events' MAC key, the same on every replica: secrets.deriveKey(EVENT_MAC_PURPOSE)
   * (bus/wire.ts).
   */
  eventKey: Buffer;
  log: Logger;
  /** This replica's id on the bus (the origin of its events); random by default. */
  replicaId?: string;
  /** How long creating the bus waits for the first connection before going on without it. */
  connectWaitMs?: number;
  /** Reconnect backoff: first delay and ceiling, in ms (doubling, with jitter). */
  backoff?: { initialMs: number; maxMs: number };
  /**
   * What the broker publishes (QoS 1, retained) when this replica's connection ends without a
   * goodbye: bus/channels.ts's replicaWill, which ends the channels routed through it. Retained, so
   * a replica that subscribes to it only after this one died still hears it; cleared (an empty
   * retained message) each time this replica connects, so a replica that is back is not taken
   * for gone.
   */
  will?: { topic: string; payload: Buffer };
}

/** The MQTT bus, with what request routing and the controller's wiring need beyond ReplicaBus. */
export interface MqttReplicaBus extends ReplicaBus {
  readonly replicaId: string;
  readonly prefix: string;
  /** The connected client (request routing publishes and subscribes through it). */
  readonly client: MqttClient;
  /**
   * Subscribes to one topic outside the event tree (request routing), now and after every
   * reconnect (sessions are clean); returns the unsubscribe function. `retained`: also deliver
   * the message the broker holds for the topic (a replica's will), not only new ones.
   */
  listen(
    topic: string,
    listener: (body: Buffer, topic: string) => void,
    opts?: { retained?: boolean },
  ): () => void;
}

/** The URL without its user and password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * Connects to the broker and returns the bus (after the first connection, or after `connectWaitMs`
 * without one: the replica starts anyway and keeps retrying).
 * @example const bus = await createMqttBus({ url: 'mqtt://127.0.0.1:1883', prefix: 'keel', log })
 */
export async function createMqttBus(opts: MqttBusOptions): Promise<MqttReplicaBus> {
  const { prefix, log } = opts;
  const replicaId = opts.replicaId ?? randomUUID();
  const where = redactUrl(opts.url);
  const backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
  const { eventKey } = opts;
  const stats: BusStats = { sent: 0, received: 0, malformed: 0, unverified: 0, unsent: 0 };
  let seq = 0;
  // Per origin: the highest sequence number heard, the recent ones (replays), when last heard.
  const origins = new Map<string, { max: number; recent: Set<number>; heardAt: number }>();
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  const reconnected = new Set<() => void>();
  /** By topic, or by a filter with `+` levels (every replica's will): a topic's own listener first. */
  const listening = new Map<string, (body: Buffer, topic: string) => void>();
  /** Topics listened to with their retained message (rh 0 instead of 2). */
  const listeningRetained = new Set<string>();
  const stateTopicPrefix = `${prefix}/hosts/`;
  const eventTreePrefixes = [`${prefix}/hosts/`, `${prefix}/jobs/`];

  const clientOptions: IClientOptions = {
    protocolVersion: 5,
    clientId: `keel-${replicaId}`,
    clean: true,
    // Reconnects are ours (below): mqtt.js retries at a fixed period.
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 30,
    // Publishes are not queued while the broker is away (see header).
    queueQoSZero: false,
    properties: { maximumPacketSize: 64 * 1024 * 1024 },
    ...(opts.will ? { will: { ...opts.will, qos: 1, retain: true } } : {}),
  };
  const client = connect(opts.url, clientOptions);

  let closing = false;
  let everConnected = false;
  let lost = false;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | null = null;

  /** False for an event too old, too far behind its origin's sequence, or heard before. */
  const fresh = (origin: string, eventSeq: number, at: number): boolean => {
    const now = Date.now();
    if (Math.abs(now - at) > EVENT_MAX_AGE_MS) return false;
    let heard = origins.get(origin);
    if (!heard) {
      // Origins are random per start: forget those not heard for a while.
      for (const [o, h] of origins) if (now - h.heardAt > EVENT_MAX_AGE_MS * 10) origins.delete(o);
      heard = { max: eventSeq, recent: new Set(), heardAt: now };
      origins.set(origin, heard);
    }
    if (eventSeq <= heard.max - SEQ_WINDOW || heard.recent.has(eventSeq)) return false;
    heard.recent.add(eventSeq);
    heard.heardAt = now;
    if (eventSeq > heard.max) heard.max = eventSeq;
    if (heard.recent.size > SEQ_WINDOW * 2) {
      for (const s of heard.recent) if (s <= heard.max - SEQ_WINDOW) heard.recent.delete(s);
    }
    return true;
  };

  const subscribe = () => {
    // No-local: the broker does not send our own events back. Retain handling 2: replicas never
    // want retained states (they have the database); integrations do.
    client.subscribe(
      eventFilters(prefix).map((topic) => topic),
      { qos: EVENT_QOS, nl: true, rh: 2 },
      (err) => {
        if (err && !closing) log.error({ err: err.message, broker: where }, 'MQTT bus subscription failed');
      },
    );
    for (const topic of listening.keys()) listenOn(topic);
  };
  const listenOn = (topic: string) => {
    client.subscribe(topic, { qos: 1, nl: true, rh: listeningRetained.has(topic) ? 0 : 2 }, (err) => {
      if (err && !closing) log.error({ err: err.message, topic }, 'MQTT bus subscription failed');
    });
  };

  client.on('connect', () => {
    if (closing) {
      // A connack that raced close(): mqtt.js has just started its keepalive interval again, which
      // would keep a closed bus (and its process) alive for ever.
      client.keepaliveManager?.destroy();
      client.end(true);
      return;
    }
    attempt = 0;
    // Routed keystrokes are small writes: without this, Nagle holds each behind the last one's ACK.
    (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
    // This replica is here: its will from a connection that ended is no longer true. Published
    // before anything else on this connection, so the broker clears it before any channel opens.
    if (opts.will) client.publish(opts.will.topic, Buffer.alloc(0), { qos: 1, retain: true });
    subscribe();
    if (!everConnected) {
      everConnected = true;
      log.info({ broker: where, replica: replicaId, prefix }, 'MQTT bus connected');
    } else if (lost) {
      log.info({ broker: where }, 'MQTT bus reconnected');
      for (const listener of reconnected) {
        try {
          listener();
        } catch (err) {
          log.error({ err }, 'MQTT bus reconnect listener failed');
        }
      }
    }
    lost = false;
  });
  client.on('error', (err) => {
    // Each failed attempt reports here and then closes; the close handler retries and logs once.
    log.debug({ err: err.message, broker: where }, 'MQTT bus connection error');
  });
  client.on('close', () => {
    if (closing) return;
    if (!lost) {
      lost = true;
      log.warn(
        { broker: where },
        everConnected
          ? 'MQTT bus connection lost: this replica keeps serving its own agents; reconnecting'
          : 'MQTT bus broker unreachable: this replica serves its own agents only until it connects',
      );
    }
    if (retryTimer) return;
    const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
    attempt = Math.min(attempt + 1, 30);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (!closing) client.reconnect();
    }, delay);
    retryTimer.unref();
  });
  const lastDropLog: Record<Dropped, number> = { malformed: 0, unverified: 0 };
  const dropReasons: Record<Dropped, string> = {
    malformed: 'MQTT bus message dropped: malformed',
    unverified:
      'MQTT bus message dropped: unverified (no valid MAC under the shared master key, too old or replayed; replicas must share KEEL_MASTER_KEY)',
  };
  /** Counts a dropped message; logs at most once a minute per reason. */
  const drop = (why: Dropped, topic: string, body: Buffer) => {
    stats[why]++;
    const now = Date.now();
    if (now - lastDropLog[why] <= 60_000) return;
    lastDropLog[why] = now;
    log.warn({ topic, bytes: body.length, [why]: stats[why] }, dropReasons[why]);
  };

  client.on('message', (topic, body) => {
    if (!eventTreePrefixes.some((p) => topic.startsWith(p))) {
      try {
        const listener = listening.get(topic) ?? wildcardListener(topic);
        listener?.(body, topic);
      } catch (err) {
        log.error({ err, topic }, 'an MQTT bus listener failed');
      }
      return;
    }
    // An empty retained message clears a removed host's state: nothing to deliver.
    if (body.length === 0 && topic.startsWith(stateTopicPrefix) && topic.endsWith('/state')) return;
    const received = decodeEvent(eventKey, body);
    if (received === 'malformed' || received === 'unverified') return drop(received, topic, body);
    if (topicOf(prefix, received.event).topic !== topic) return drop('malformed', topic, body);
    if (received.origin === replicaId) return;
    if (!fresh(received.origin, received.seq, received.at)) return drop('unverified', topic, body);
    stats.received++;
    try {
      emitter.emit('remote', received.event);
    } catch (err) {
      log.error({ err, topic }, 'a bus subscriber failed on an event from another replica');
    }
  });

  /** The listener of a `+` filter matching `topic` (ids are percent-encoded, so `+` is a wildcard). */
  function wildcardListener(topic: string): ((body: Buffer, topic: string) => void) | undefined {
    const levels = topic.split('/');
    for (const [filter, listener] of listening) {
      if (!filter.includes('+')) continue;
      const want = filter.split('/');
      if (want.length === levels.length && want.every((w, i) => w === '+' || w === levels[i]))
        return listener;
    }
    return undefined;
  }

  const local: FleetBus = {
    publish(event) {
      emitter.emit('local', event);
      send(event);
    },
    subscribe(listener) {
      emitter.on('local', listener);
      return () => emitter.off('local', listener);
    },
  };

  function send(event: FleetEvent): void {
    // A broker that cannot keep up gets no more than MAX_BUFFERED_BYTES waiting in this process.
    if (!client.connected || (client.stream?.writableLength ?? 0) > MAX_BUFFERED_BYTES) {
      stats.unsent++;
      return;
    }
    const { topic, retain } = topicOf(prefix, event);
    const body = encodeEvent(eventKey, replicaId, seq++, Date.now(), event);
    client.publish(topic, body, { qos: EVENT_QOS, retain }, (err) => {
      if (err && !closing) log.debug({ err: err.message, topic }, 'MQTT bus publish failed');
    });
    stats.sent++;
    // A removed host's retained state goes too, so integrations subscribing later do not see it.
    if (event.type === 'host.removed') {
      client.publish(hostStateTopic(prefix, event.hostId), '', { qos: EVENT_QOS, retain: true });
    }
  }

  if (opts.connectWaitMs !== 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, opts.connectWaitMs ?? 5_000);
      function done() {
        clearTimeout(timer);
        client.off('connect', done);
        resolve();
      }
      client.on('connect', done);
    });
  }

  return {
    replicaId,
    prefix,
    client,
    local,
    publish: local.publish,
    subscribe(listener) {
      emitter.on('local', listener);
      emitter.on('remote', listener);
      return () => {
        emitter.off('local', listener);
        emitter.off('remote', listener);
      };
    },
    get connected() {
      return client.connected;
    },
    stats: () => ({ ...stats }),
    onReconnected(listener) {
      reconnected.add(listener);
      return () => reconnected.delete(listener);
    },
    listen(topic, listener, listenOpts) {
      listening.set(topic, listener);
      if (listenOpts?.retained) listeningRetained.add(topic);
      else listeningRetained.delete(topic);
      if (client.connected) listenOn(topic);
      return () => {
        listening.delete(topic);
        listeningRetained.delete(topic);
        if (client.connected) client.unsubscribe(topic);
      };
    },

    async close() {
      if (closing) return;
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      await client.endAsync(!client.connected).catch(() => {});
      // Ended while a reconnect was under way, mqtt.js can leave its keepalive interval running.
      client.keepaliveManager?.destroy();
    },
  };
}
