// Proves a replica's will reaches replicas that subscribe to it only after it died (on a real
// Mosquitto): the broker keeps it retained, so a holder that hears an open from a replica already
// gone ends that channel (its agent told) instead of keeping it open for ever; and a replica that
// reconnects clears its will, so it is not taken for gone afterwards.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import type { Lane, SessionFrame } from '@keel/shared';
import { ChannelHub, type AgentChannelLink } from '../channels/hub.ts';
import type { Host } from '../repositories/hosts.ts';
import { replicaWill, routeChannels, sealChannelMessage } from './channels.ts';
import { createMqttBus } from './mqtt.ts';
import { needBroker, subscriptionsHeld, TEST_BROKER as BROKER } from './test-broker.ts';
import { channelTopic, replicaGoneTopic } from './topics.ts';

const HOST = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0201';
const log = pino({ level: 'silent' });
const open: { close(): unknown }[] = [];
after(async () => {
  for (const c of open.reverse()) await c.close();
});

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const prefixFor = () =>
  `keel-test/channels-will-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;

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

test(
  'an open from a replica already gone ends at once: its will was retained',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const eventKey = randomBytes(32);
    const busIdB = randomUUID();
    const busA = await createMqttBus({ url: BROKER, prefix, eventKey, log, replicaId: randomUUID() });
    const busB = await createMqttBus({
      url: BROKER,
      prefix,
      eventKey,
      log,
      replicaId: busIdB,
      will: replicaWill(key, prefix, busIdB),
    });
    open.push(busA);
    const control: SessionFrame[] = [];
    let hubA: ChannelHub | null = null;
    const link: AgentChannelLink = {
      hostId: HOST,
      channelKinds: ['echo'],
      sendNow: (frame) => {
        control.push(frame);
        // The agent accepts at once: only the will can end this channel now.
        if (frame.type === 'chan.open')
          queueMicrotask(() =>
            hubA!.onAgentFrame(link, { type: 'chan.opened', id: frame.id }, Buffer.alloc(0)),
          );
      },
      lane: (): Lane => ({ wake: () => {}, remove: () => {} }),
    };
    hubA = new ChannelHub({ log, linkFor: (id) => (id === HOST ? link : undefined) });
    const hosts = { get: async () => ({ id: HOST, online: true, sessionReplica: 'lease-a' }) as Host };
    const a = routeChannels({ bus: busA, hub: hubA, replicaId: 'lease-a', hosts, key, log });
    open.push(a, hubA);
    await subscriptionsHeld(busA.client, prefix);

    // B dies without a goodbye (and does not come back): the broker publishes and keeps its will.
    const gone = await watcher(prefix, replicaGoneTopic(prefix, busIdB));
    busB.client.stream.destroy();
    await busB.close();
    await until("B's will at the broker", () => gone.got.some((b) => b.length > 0));

    // An open B sent just before it died reaches A only now.
    const topicA = channelTopic(prefix, 'lease-a');
    const ch = randomUUID();
    await gone.raw.publishAsync(
      topicA,
      sealChannelMessage(key, topicA, {
        t: 'open',
        ch,
        seq: 0,
        at: Date.now(),
        from: 'lease-b',
        fromBus: busIdB,
        grant: { userId: 'u1', hostId: HOST, kind: 'echo', params: {}, expiresAt: Date.now() + 30_000 },
      }),
    );
    await until('the agent asked to open', () => control.some((f) => f.type === 'chan.open'));
    const id = (control.find((f) => f.type === 'chan.open') as { id: string }).id;
    await until('the agent told the channel ended', () =>
      control.some((f) => f.type === 'chan.close' && f.id === id),
    );
    assert.equal(a.stats().open, 0);
    assert.equal(hubA.openCount, 0);
  },
);

test(
  'a replica that reconnects clears its will: it is not taken for gone',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = prefixFor();
    const key = randomBytes(32);
    const busIdB = randomUUID();
    const busB = await createMqttBus({
      url: BROKER,
      prefix,
      eventKey: randomBytes(32),
      log,
      replicaId: busIdB,
      will: replicaWill(key, prefix, busIdB),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    open.push(busB);
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
