// Proves a routed channel's end reaches the other side (on a real Mosquitto): a replica's will is
// heard by replicas that subscribe to it only after it died (the broker keeps it retained), so a
// holder that hears an open from a replica already gone ends that channel (its agent told) instead
// of keeping it open for ever; a replica that reconnects clears its will, so it is not taken for
// gone afterwards, nor after a broker client replays its will (it clears it again); a dead
// replica's will is cleared by another once its lease has lapsed; the answers to
// an open and a close go at QoS 1, which the broker does not drop as it may QoS 0; and where no
// will comes (the holder lost the broker and its will was lost), keepalives end the channel on
// the client's side within the silence limit, while an idle channel they keep open stays open, and
// so does one whose replica stalled past the limit (a side that announced no keepalives, a replica
// from before them, gets none).
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import type { Lane, SessionFrame } from '@keel/shared';
import { ChannelHub, type AgentChannelLink } from '../channels/hub.ts';
import type { Host } from '../repositories/hosts.ts';
import { openJobChannel } from '../services/jobs-channel.ts';
import { openChannelMessage, replicaWill, routeChannels, sealChannelMessage } from './channels.ts';
import { createMqttBus, type MqttReplicaBus } from './mqtt.ts';
import { closedAfter, needBroker, subscriptionsHeld, TEST_BROKER as BROKER, until } from './test-broker.ts';
import { channelTopic, replicaGoneTopic } from './topics.ts';

const HOST = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0201';
const log = pino({ level: 'silent' });
const open = closedAfter();

const prefixFor = () =>
  `keel-test/channels-end-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;

/** A raw client that records what arrives on `topic` (retained included). */
async function watcher(prefix: string, topic: string) {
  const raw = await connectAsync(BROKER, { protocolVersion: 5, clean: true });
  open.push({ close: () => raw.endAsync() });
  const got: Buffer[] = [];
  raw.on('message', (_t, body) => got.push(body));
  await raw.subscribeAsync(topic, { qos: 1 });
  await subscriptionsHeld(raw, prefix);
  return { raw, got };
}

/** Replica A (lease `lease-a`) holding HOST's session, whose agent accepts every open at once. */
async function holder(
  prefix: string,
  key: Buffer,
  timing: { keepaliveMs?: number; silenceMs?: number } = {},
  /** Bytes the agent sends on each channel right after opening it. */
  greeting?: Buffer,
) {
  const bus = await createMqttBus({
    url: BROKER,
    prefix,
    eventKey: randomBytes(32),
    log,
    replicaId: randomUUID(),
  });
  open.push(bus);
  const control: SessionFrame[] = [];
  let hub: ChannelHub | null = null;
  const link: AgentChannelLink = {
    hostId: HOST,
    channelKinds: ['echo'],
    sendNow: (frame) => {
      control.push(frame);
      if (frame.type === 'chan.open')
        queueMicrotask(() => {
          hub!.onAgentFrame(link, { type: 'chan.opened', id: frame.id }, Buffer.alloc(0));
          if (greeting) hub!.onAgentFrame(link, { type: 'chan.data', id: frame.id }, greeting);
        });
    },
    lane: (): Lane => ({ wake: () => {}, remove: () => {} }),
  };
  hub = new ChannelHub({ log, linkFor: (id) => (id === HOST ? link : undefined) });
  const hosts = { get: async () => ({ id: HOST, online: true, sessionReplica: 'lease-a' }) as Host };
  const routing = routeChannels({ bus, hub, replicaId: 'lease-a', hosts, key, log, ...timing });
  open.push(routing, hub);
  await subscriptionsHeld(bus.client, prefix);
  const opened = async () => {
    await until('the agent asked to open', () => control.some((f) => f.type === 'chan.open'));
    return (control.find((f) => f.type === 'chan.open') as { id: string }).id;
  };
  return { bus, hub, link, control, routing, opened, hosts };
}

/**
 * Replica B, serving clients of the hosts `a` holds (no agent of its own): its bus, hub and
 * routing, subscribed. `opts` go to its routing (timing, gap).
 */
async function server(
  prefix: string,
  key: Buffer,
  a: { hosts: Parameters<typeof routeChannels>[0]['hosts'] },
  opts: Partial<
    Pick<
      Parameters<typeof routeChannels>[0],
      'keepaliveMs' | 'silenceMs' | 'gapMs' | 'liveLeases' | 'willSweepMs'
    >
  > = {},
) {
  const bus = await createMqttBus({
    url: BROKER,
    prefix,
    eventKey: randomBytes(32),
    log,
    replicaId: randomUUID(),
  });
  open.push(bus);
  let routing: ReturnType<typeof routeChannels> | null = null;
  const hub = new ChannelHub({ log, linkFor: () => undefined, remote: async (g) => routing?.open(g) });
  routing = routeChannels({ bus, hub, replicaId: 'lease-b', hosts: a.hosts, key, log, ...opts });
  open.push(routing, hub);
  await subscriptionsHeld(bus.client, prefix);
  return { bus, hub, routing };
}

/**
 * Replica B's bus, with its will (naming `lease` when given), reconnecting after `backoff` when it
 * loses the broker.
 */
async function replicaB(
  prefix: string,
  key: Buffer,
  backoff: { initialMs: number; maxMs: number },
  lease?: string,
) {
  const busIdB = randomUUID();
  const busB = await createMqttBus({
    url: BROKER,
    prefix,
    eventKey: randomBytes(32),
    log,
    replicaId: busIdB,
    will: replicaWill(key, prefix, busIdB, lease),
    backoff,
  });
  open.push(busB);
  return { busB, busIdB };
}

/** An open sealed for A as replica `lease-b`, whose bus id is `busIdB`. */
function openFromB(key: Buffer, prefix: string, busIdB: string): Buffer {
  const topicA = channelTopic(prefix, 'lease-a');
  return sealChannelMessage(key, topicA, {
    t: 'open',
    ch: randomUUID(),
    seq: 0,
    at: Date.now(),
    from: 'lease-b',
    fromBus: busIdB,
    grant: { userId: 'u1', hostId: HOST, kind: 'echo', params: {}, expiresAt: Date.now() + 30_000 },
  });
}

test(
  'an open from a replica already gone ends at once: its will was retained',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key);
    // Not back within the test: a replica that reconnects clears its will (the next test).
    const { busB, busIdB } = await replicaB(prefix, key, { initialMs: 600_000, maxMs: 600_000 });

    // B dies without a goodbye (and does not come back): the broker publishes and keeps its will.
    const gone = await watcher(prefix, replicaGoneTopic(prefix, busIdB));
    busB.client.stream.destroy();
    await until("B's will at the broker", () => gone.got.some((b) => b.length > 0));

    // An open B sent just before it died reaches A only now; A's agent accepts it.
    await gone.raw.publishAsync(channelTopic(prefix, 'lease-a'), openFromB(key, prefix, busIdB));
    const id = await a.opened();
    await until('the agent told the channel ended', () =>
      a.control.some((f) => f.type === 'chan.close' && f.id === id),
    );
    assert.equal(a.routing.stats().open, 0);
    assert.equal(a.hub.openCount, 0);
  },
);

test(
  'a replica that reconnects clears its will: it is not taken for gone',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const { busB, busIdB } = await replicaB(prefix, key, { initialMs: 20, maxMs: 100 });
    const topic = replicaGoneTopic(prefix, busIdB);
    const first = await watcher(prefix, topic);
    let reconnected = false;
    busB.onReconnected(() => (reconnected = true));
    busB.client.stream.destroy();
    await until("B's will at the broker", () => first.got.some((b) => b.length > 0));
    await until('B back', () => reconnected);
    await until('the will cleared', () => first.got.at(-1)?.length === 0);
    // A replica subscribing now hears no will from B.
    const later = await watcher(prefix, topic);
    assert.deepEqual(
      later.got.filter((b) => b.length > 0),
      [],
    );
  },
);

test(
  "a dead replica's will is cleared once its lease has lapsed: by the sweep, or at once when heard lapsed",
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const key = randomBytes(32);
    const noHosts = { hosts: { get: async () => null } };
    const never = { initialMs: 600_000, maxMs: 600_000 };

    // X dies with its lease fresh: its will stands (its hosts are refused) until the lease lapses,
    // then the next sweep clears it.
    let prefix = prefixFor();
    const live = new Set(['lease-x']);
    const liveLeases = async (ids: string[]) => ids.filter((id) => live.has(id));
    const c = await server(prefix, key, noHosts, { liveLeases, willSweepMs: 100 });
    // Sweeps with no will heard yet come first (a sweep that had nothing to check once left the
    // next ones waiting for it for ever).
    await new Promise((r) => setTimeout(r, 300));
    const x = await replicaB(prefix, key, never, 'lease-x');
    const xWill = await watcher(prefix, replicaGoneTopic(prefix, x.busIdB));
    x.busB.client.stream.destroy();
    await until("X's will heard", () => c.routing.holderGone('lease-x'));
    await new Promise((r) => setTimeout(r, 500)); // five sweeps, the lease live in each
    assert.equal(c.routing.holderGone('lease-x'), true);
    assert.deepEqual(
      xWill.got.map((b) => b.length > 0),
      [true],
      'the will stands while the lease is live',
    );
    live.delete('lease-x');
    await until("X's will cleared", () => xWill.got.at(-1)?.length === 0);
    await until('X no longer taken for gone', () => !c.routing.holderGone('lease-x'));
    const later = await watcher(prefix, replicaGoneTopic(prefix, x.busIdB));
    assert.deepEqual(
      later.got.filter((b) => b.length > 0),
      [],
      'no will retained',
    );

    // Y's lease had already lapsed when its will came (as every dead life's retained will does at a
    // connection): cleared when heard, with no sweep due for ten minutes.
    prefix = prefixFor();
    const d = await server(prefix, key, noHosts, { liveLeases, willSweepMs: 600_000 });
    const y = await replicaB(prefix, key, never, 'lease-y');
    const yWill = await watcher(prefix, replicaGoneTopic(prefix, y.busIdB));
    y.busB.client.stream.destroy();
    await until("Y's will cleared", () => yWill.got.length >= 2 && yWill.got.at(-1)?.length === 0);
    assert.equal(d.routing.holderGone('lease-y'), false);
  },
);

test(
  'a replica hearing its own will replayed while connected clears it again: it is not taken for gone',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key);
    // Another replica's routing, to see whether it takes A for gone.
    const busC = await createMqttBus({
      url: BROKER,
      prefix,
      eventKey: randomBytes(32),
      log,
      replicaId: randomUUID(),
    });
    open.push(busC);
    const hubC = new ChannelHub({ log, linkFor: () => undefined });
    const c = routeChannels({ bus: busC, hub: hubC, replicaId: 'lease-c', hosts: a.hosts, key, log });
    open.push(c, hubC);
    await subscriptionsHeld(busC.client, prefix);

    // A broker client replays A's will (recorded, retained): C takes A for gone, then A clears it.
    const topic = replicaGoneTopic(prefix, a.bus.replicaId);
    const seen = await watcher(prefix, topic);
    const will = replicaWill(key, prefix, a.bus.replicaId, 'lease-a');
    await seen.raw.publishAsync(topic, will.payload, { qos: 1, retain: true });
    await until('the will cleared by A', () => seen.got.length >= 2 && seen.got.at(-1)!.length === 0);
    await until('C no longer takes A for gone', () => !c.holderGone('lease-a'));
    const later = await watcher(prefix, topic);
    assert.deepEqual(
      later.got.filter((b) => b.length > 0),
      [],
      'no will retained',
    );
  },
);

test(
  'a will replayed on another spelling of its topic (%61 for a) is not heard: it would stay retained, A never clearing it',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key);
    // A broker client replays A's will (recorded) retained on its topic with the bus id's first
    // character percent-encoded: the same bus id once decoded, a topic A does not clear.
    const busId = a.bus.replicaId;
    const spelled = `${prefix}/replicas/%${busId.charCodeAt(0).toString(16)}${busId.slice(1)}/gone`;
    const will = replicaWill(key, prefix, busId, 'lease-a');
    const seen = await watcher(prefix, replicaGoneTopic(prefix, busId));
    const raw = seen.raw;
    await raw.publishAsync(spelled, will.payload, { qos: 1, retain: true });
    // And on its topic: A clears that (after whatever it made of the first) before D starts.
    await raw.publishAsync(will.topic, will.payload, { qos: 1, retain: true });
    await until('A cleared its will', () => seen.got.some((b) => b.length === 0));
    t.after(() => raw.publishAsync(spelled, Buffer.alloc(0), { qos: 1, retain: true }).then(() => {}));
    const busX = randomUUID();
    const topicX = replicaGoneTopic(prefix, busX);
    await raw.publishAsync(topicX, replicaWill(key, prefix, busX, 'lease-x').payload, {
      qos: 1,
      retain: true,
    });
    t.after(() => raw.publishAsync(topicX, Buffer.alloc(0), { qos: 1, retain: true }).then(() => {}));
    // A replica starting later hears every retained will: it must not take A for gone.
    const busD = await createMqttBus({
      url: BROKER,
      prefix,
      eventKey: randomBytes(32),
      log,
      replicaId: randomUUID(),
    });
    open.push(busD);
    const hubD = new ChannelHub({ log, linkFor: () => undefined });
    const d = routeChannels({ bus: busD, hub: hubD, replicaId: 'lease-d', hosts: a.hosts, key, log });
    open.push(d, hubD);
    await subscriptionsHeld(busD.client, prefix);
    // Retained wills come at the subscription: another replica's (X, canonical) shows they came.
    await until('D heard the retained wills', () => d.holderGone('lease-x'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(d.holderGone('lease-a'), false, 'A taken for gone by a will A cannot clear');
  },
);

test(
  "the holder's answers and close go at QoS 1: the broker does not drop them as it may QoS 0",
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key);
    const topicB = channelTopic(prefix, 'lease-b');
    const sent: string[] = [];
    const client: MqttReplicaBus['client'] = a.bus.client;
    const publish = client.publish.bind(client);
    client.publish = ((topic: string, message: Buffer, options: { qos?: 0 | 1 | 2 }) => {
      if (topic === topicB)
        sent.push(`${String(openChannelMessage(key, topic, message)?.head.t)}:${options.qos}`);
      return publish(topic, message, options);
    }) as typeof client.publish;
    const b = await watcher(prefix, topicB);
    await b.raw.publishAsync(channelTopic(prefix, 'lease-a'), openFromB(key, prefix, randomUUID()));
    const id = await a.opened();
    await until('opened sent to B', () => sent.some((m) => m.startsWith('opened')));
    a.hub.onAgentFrame(
      a.link,
      { type: 'chan.close', id, reason: 'process exited', exitCode: 0 },
      Buffer.alloc(0),
    );
    await until('the close sent to B', () => sent.some((m) => m.startsWith('close')));
    assert.deepEqual(sent, ['accepted:1', 'opened:1', 'close:1']);
  },
);

test(
  "many channels opened at once: their data (QoS 0) overtaking their answers (QoS 1) queued behind the broker's in-flight window does not end them",
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    // Mosquitto sends a subscriber at most 20 QoS 1 messages unacknowledged and queues the rest,
    // while QoS 0 ones go at once: 40 channels' `accepted` and `opened` queue, their data does not.
    const a = await holder(prefix, key, {}, Buffer.from('hello'));
    const { hub: hubB } = await server(prefix, key, a);
    const got: string[] = [];
    const ends: string[] = [];
    const channels = Array.from({ length: 40 }, (_, i) => {
      const c = openJobChannel(hubB, { userId: 'u1', hostId: HOST, kind: 'echo', params: {} }, (b) =>
        got.push(`${i}:${b.toString()}`),
      );
      void c.ended.then((e) => ends.push(e.reason));
      return c;
    });
    await until(
      'every channel got its data, or one ended',
      () => got.length === 40 || ends.length > 0,
      20_000,
    );
    assert.deepEqual(ends, [], 'channels ended');
    for (const c of channels) c.close('done');
  },
);

test(
  'a message lost on the bus (QoS 0 dropped) still ends the channel: the one after it waits for the gap, then ends it',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key);
    const { hub: hubB } = await server(prefix, key, a, { gapMs: 300 });
    const got: string[] = [];
    const channel = openJobChannel(hubB, { userId: 'u1', hostId: HOST, kind: 'echo', params: {} }, (b) =>
      got.push(b.toString()),
    );
    await channel.opened;
    const id = await a.opened();
    // A's next data message to B is lost; the one after it comes.
    const topicB = channelTopic(prefix, 'lease-b');
    const client: MqttReplicaBus['client'] = a.bus.client;
    const publish = client.publish.bind(client);
    let dropped = false;
    client.publish = ((topic: string, message: Buffer, options: { qos?: 0 | 1 | 2 }) => {
      if (!dropped && topic === topicB && openChannelMessage(key, topic, message)?.head.t === 'data') {
        dropped = true;
        return client;
      }
      return publish(topic, message, options);
    }) as typeof client.publish;
    const sentAt = Date.now();
    a.hub.onAgentFrame(a.link, { type: 'chan.data', id }, Buffer.from('one'));
    a.hub.onAgentFrame(a.link, { type: 'chan.data', id }, Buffer.from('two'));
    const end = await channel.ended;
    assert.equal(end.reason, 'channel bytes were lost or reordered on the message bus');
    assert.ok(Date.now() - sentAt >= 250, 'ended after the gap was held');
    assert.deepEqual(got, [], 'nothing past the gap delivered');
  },
);

test(
  'keepalives hold an idle routed channel open, and end it when the holder goes quiet without a will',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    // A silence limit well above a stalled event loop on a busy test machine.
    const timing = { keepaliveMs: 200, silenceMs: 1_500 };
    // A's bus leaves no will: its loss of the broker below is one whose will never comes.
    const a = await holder(prefix, key, timing);
    const { hub: hubB, routing: routingB } = await server(prefix, key, a, timing);

    // A client on B (the controller's own, as a job run is) opens a channel on A's agent.
    const channel = openJobChannel(hubB, { userId: 'u1', hostId: HOST, kind: 'echo', params: {} }, () => {});
    await channel.opened;
    let ended = false;
    void channel.ended.then(() => (ended = true));
    // Idle for several silence limits: each side's keepalives keep it open.
    await new Promise((r) => setTimeout(r, 3 * timing.silenceMs));
    assert.equal(ended, false, 'an idle channel stays open');
    assert.equal(routingB.stats().open, 1);
    assert.equal(a.routing.stats().open, 1);
    // This process stalls past the silence limit (both sides are in it): the keepalives sent
    // meanwhile are unread, not missing, and the channel stays open.
    const stallEnd = Date.now() + timing.silenceMs + 300;
    while (Date.now() < stallEnd) {
      // busy: the event loop is held
    }
    await new Promise((r) => setTimeout(r, 4 * timing.keepaliveMs));
    assert.equal(ended, false, 'a stall of our own is not the other side going quiet');

    // A loses the broker: it ends its side (the agent is told), but no will tells B.
    const id = await a.opened();
    a.bus.client.stream.destroy();
    await until('the agent told', () => a.control.some((f) => f.type === 'chan.close' && f.id === id));
    const lostAt = Date.now();
    const end = await channel.ended;
    const tookMs = Date.now() - lostAt;
    assert.match(end.reason, /^no word for \d+ s from the controller replica holding this host's session/);
    assert.equal(end.code, 'request.disconnected');
    assert.ok(tookMs < 6_000, `ended ${tookMs} ms after A went quiet`);
    assert.equal(routingB.stats().open, 0);
    assert.equal(hubB.openCount, 0);
  },
);

test(
  'a side that announced no keepalives (a replica from before them) gets none and is not timed out',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const a = await holder(prefix, key, { keepaliveMs: 50, silenceMs: 200 });
    const topicB = channelTopic(prefix, 'lease-b');
    const b = await watcher(prefix, topicB);
    // The open such a replica sends: no `alive`.
    await b.raw.publishAsync(channelTopic(prefix, 'lease-a'), openFromB(key, prefix, randomUUID()));
    await a.opened();
    await new Promise((r) => setTimeout(r, 800));
    const kinds = b.got.map((m) => String(openChannelMessage(key, topicB, m)?.head.t));
    assert.deepEqual(kinds, ['accepted', 'opened']);
    assert.equal(a.routing.stats().open, 1, 'still open');
  },
);
