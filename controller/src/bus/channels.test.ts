// Proves channel routing between two replicas' hubs on a real Mosquitto, with a real client
// WebSocket on B and a recording agent session on A: bytes go both ways within the credit window
// (client bytes beyond what the agent granted wait on B), the agent's close reaches the client; a
// replayed open, a message sealed under another key and a message for another replica's topic are
// refused; a replayed data message ends the channel on both sides; the open and its answers go at
// QoS 1, and each delivered again (as QoS 1 may) opens nothing twice and ends nothing; B losing the
// broker ends its channel at once and A's side hears B's will; the broker dying ends it on both
// replicas.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { CHANNEL_WINDOW_BYTES, type ChannelClientMessage, type SessionFrame } from '@keel/shared';
import { ChannelHub } from '../channels/hub.ts';
import { recordingLink } from '../channels/test-link.ts';
import type { Host } from '../repositories/hosts.ts';
import { openChannelMessage, replicaWill, routeChannels, sealChannelMessage } from './channels.ts';
import { createMqttBus } from './mqtt.ts';
import {
  closedAfter,
  needBroker,
  reachable,
  subscriptionsHeld,
  TEST_BROKER as BROKER,
  until,
} from './test-broker.ts';
import { channelTopic } from './topics.ts';

const HOST = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0200';
const log = pino({ level: 'silent' });
const open = closedAfter();

async function setUp(t: TestContext, url = BROKER) {
  if (url === BROKER && !(await needBroker(t))) return null;
  const prefix = `keel-test/channels-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const key = randomBytes(32);
  const eventKey = randomBytes(32);
  // Bus ids are MQTT client ids: unique, or the broker drops the older connection with the same.
  const [busIdA, busIdB] = [randomUUID(), randomUUID()];
  const busA = await createMqttBus({ url, prefix, eventKey, log, replicaId: busIdA });
  const busB = await createMqttBus({
    url,
    prefix,
    eventKey,
    log,
    replicaId: busIdB,
    will: replicaWill(key, prefix, busIdB),
  });
  open.push(busA, busB);
  // An agent session on A that records control frames and takes data frames as lanes wake.
  const agent = recordingLink(HOST);
  const hubA = new ChannelHub({ log, linkFor: (id) => (id === HOST ? agent.link : undefined) });
  const hosts = { get: async () => ({ id: HOST, online: true, sessionReplica: 'lease-a' }) as Host };
  const a = routeChannels({ bus: busA, hub: hubA, replicaId: 'lease-a', hosts, key, log });
  let b: ReturnType<typeof routeChannels> | null = null;
  const hubB = new ChannelHub({ log, linkFor: () => undefined, remote: async (g) => b?.open(g) });
  b = routeChannels({ bus: busB, hub: hubB, replicaId: 'lease-b', hosts, key, log });
  open.push(a, b, hubA, hubB);
  await Promise.all([busA, busB].map((bus) => subscriptionsHeld(bus.client, prefix)));

  // The browser's side: a WebSocket server on B whose sockets the hub opens the channel on.
  const wss = new WebSocketServer({ noServer: true });
  const server: Server = createServer();
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) =>
      hubB.open(
        { userId: 'u1', hostId: HOST, kind: 'echo', params: { mode: 'x' }, expiresAt: Date.now() + 30_000 },
        ws,
      ),
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push({ close: () => (server.closeAllConnections(), new Promise((r) => server.close(r))) });

  // A client of the broker, as anyone with its credentials: sees and publishes the sealed messages.
  const raw = await connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
  open.push({ close: () => raw.endAsync(true) });
  const toA: Buffer[] = [];
  raw.on('message', (topic, body) => {
    if (topic === channelTopic(prefix, 'lease-a')) toA.push(Buffer.from(body));
  });
  await raw.subscribeAsync(channelTopic(prefix, 'lease-a'), { qos: 0 });

  /** Connects a client through B; resolves once A's agent got chan.open and accepted it. */
  const client = async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const messages: ChannelClientMessage[] = [];
    const bytes: Buffer[] = [];
    ws.on('message', (d: Buffer, isBinary) => {
      if (isBinary) bytes.push(d);
      else messages.push(JSON.parse(d.toString()) as ChannelClientMessage);
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise((resolve) => ws.once('open', resolve));
    const opens = () => agent.control.filter((f) => f.type === 'chan.open');
    const before = opens().length;
    await until('chan.open on the agent', () => opens().length > before);
    const id = (opens().at(-1) as Extract<SessionFrame, { type: 'chan.open' }>).id;
    hubA.onAgentFrame(agent.link, { type: 'chan.opened', id }, Buffer.alloc(0));
    await until('opened on the client', () => messages.some((m) => m.type === 'opened'));
    return { ws, messages, bytes, closed, id };
  };
  return { prefix, key, busA, busB, a, b, hubA, hubB, agent, raw, toA, client };
}

test(
  'bytes cross both ways within the window; the agent closing reaches the client',
  { timeout: 30_000 },
  async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const c = await s.client();
    const open = s.agent.control.find((f) => f.type === 'chan.open');
    assert.deepEqual(open && { kind: open.kind, params: open.params }, {
      kind: 'echo',
      params: { mode: 'x' },
    });

    // Agent to client.
    s.hubA.onAgentFrame(s.agent.link, { type: 'chan.data', id: c.id }, Buffer.from('from the agent'));
    await until('the bytes on the client', () => Buffer.concat(c.bytes).toString() === 'from the agent');

    // Client to agent: as far as the agent granted, then more once it grants more.
    const sent = () => s.agent.data.reduce((n, f) => n + (f.body?.byteLength ?? 0), 0);
    for (let i = 0; i < 12; i++) c.ws.send(Buffer.alloc(64 * 1024, i));
    await until('a window at the agent', () => sent() === CHANNEL_WINDOW_BYTES);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(sent(), CHANNEL_WINDOW_BYTES, 'nothing beyond the window crossed the broker');
    s.hubA.onAgentFrame(s.agent.link, { type: 'chan.credit', id: c.id, bytes: 256 * 1024 }, Buffer.alloc(0));
    await until('the rest at the agent', () => sent() === 12 * 64 * 1024);
    assert.deepEqual(
      Buffer.concat(s.agent.data.map((f) => f.body!)).subarray(0, 64 * 1024 + 1),
      Buffer.concat([Buffer.alloc(64 * 1024, 0), Buffer.alloc(1, 1)]),
      'in order',
    );

    s.hubA.onAgentFrame(
      s.agent.link,
      { type: 'chan.close', id: c.id, reason: 'process exited', exitCode: 3 },
      Buffer.alloc(0),
    );
    assert.equal(await c.closed, 1000);
    assert.deepEqual(c.messages.at(-1), { type: 'close', reason: 'process exited', exitCode: 3 });
    await until('both hubs forget it', () => s.hubA.openCount === 0 && s.hubB.openCount === 0);
    assert.equal(s.a.stats().open + s.b.stats().open, 0);
  },
);

test('replayed, foreign-key and misdirected messages are refused; a replayed data message ends the channel', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  const c = await s.client();
  const openMessage = s.toA[0]!;
  const opensBefore = s.agent.control.filter((f) => f.type === 'chan.open').length;
  const refusedBefore = s.a.stats().refused;
  const topicA = channelTopic(s.prefix, 'lease-a');
  // The open again (a replay), one sealed under another master key, one sealed for B's topic.
  await s.raw.publishAsync(topicA, openMessage);
  await s.raw.publishAsync(
    topicA,
    sealChannelMessage(randomBytes(32), topicA, { t: 'credit', ch: 'x', seq: 0, bytes: 1 }),
  );
  await s.raw.publishAsync(
    topicA,
    sealChannelMessage(s.key, channelTopic(s.prefix, 'lease-b'), { t: 'credit', ch: 'x', seq: 0, bytes: 1 }),
  );
  await until('three refused on A', () => s.a.stats().refused === refusedBefore + 3);
  assert.equal(s.agent.control.filter((f) => f.type === 'chan.open').length, opensBefore, 'no second open');
  assert.equal(s.hubA.openCount, 1);

  // Client bytes, then the same message again: out of sequence, the channel ends everywhere.
  c.ws.send(Buffer.from('once'));
  await until('the bytes at the agent', () => s.agent.data.length === 1);
  // The open, the three above (the raw client hears its own), then the bytes: not before they came.
  await until('the bytes seen on the broker', () => s.toA.length === 5);
  await s.raw.publishAsync(topicA, s.toA.at(-1)!);
  assert.equal(await c.closed, 4502);
  assert.match(JSON.stringify(c.messages.at(-1)), /lost or reordered on the message bus/);
  await until('the agent told', () => s.agent.control.some((f) => f.type === 'chan.close' && f.id === c.id));
  assert.equal(s.agent.data.length, 1, 'the replayed bytes never reached the agent');
});

test('the open and its answers go at QoS 1; delivered twice, they open nothing twice and end nothing', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  // A client of the broker subscribed at QoS 1 gets each message at the QoS it was published with.
  const topicA = channelTopic(s.prefix, 'lease-a');
  const topicB = channelTopic(s.prefix, 'lease-b');
  const seen: { topic: string; t: string; qos: number; body: Buffer }[] = [];
  const watcher = await connectAsync(BROKER, { protocolVersion: 5, reconnectPeriod: 0 });
  open.push({ close: () => watcher.endAsync(true) });
  watcher.on('message', (topic, body, packet) => {
    const t = String(openChannelMessage(s.key, topic, Buffer.from(body))?.head.t);
    seen.push({ topic, t, qos: packet.qos, body: Buffer.from(body) });
  });
  await watcher.subscribeAsync([topicA, topicB], { qos: 1 });
  await subscriptionsHeld(watcher, s.prefix);

  const c = await s.client();
  t.after(() => c.ws.terminate()); // failed midway, the open channel would keep the file running
  await until('the answers seen', () => seen.filter((m) => m.topic === topicB).length >= 2);
  const first = (t: string) => seen.find((m) => m.t === t)!;
  assert.deepEqual(
    ['open', 'accepted', 'opened'].map((t) => `${t}:${first(t).qos}`),
    ['open:1', 'accepted:1', 'opened:1'],
  );

  // Each delivered again, as the broker may at QoS 1 (the sender resending what it had not had
  // acknowledged): no second channel on the agent, and the channel goes on.
  const opensBefore = s.agent.control.filter((f) => f.type === 'chan.open').length;
  for (const t of ['open', 'accepted', 'opened'])
    await s.raw.publishAsync(first(t).topic, first(t).body, { qos: 1 });
  await until('the open refused as replayed', () => s.a.stats().refused === 1);
  s.hubA.onAgentFrame(s.agent.link, { type: 'chan.data', id: c.id }, Buffer.from('still here'));
  await until('bytes after the repeats', () => Buffer.concat(c.bytes).toString() === 'still here');
  assert.equal(s.agent.control.filter((f) => f.type === 'chan.open').length, opensBefore, 'no second open');
  assert.equal(s.hubA.openCount, 1);
  assert.equal(s.hubB.openCount, 1);
  assert.equal(s.b.stats().refused, 0, 'a repeated answer is not a refusal');
  assert.equal(c.messages.filter((m) => m.type === 'close').length, 0, 'not ended');
  c.ws.close();
  await c.closed;
  await until('both hubs forget it', () => s.hubA.openCount === 0 && s.hubB.openCount === 0);
});

test(
  "B losing the broker ends its channel at once, and A's side on B's will",
  { timeout: 30_000 },
  async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const c = await s.client();
    // As a crash: the connection ends without a goodbye, so the broker publishes B's will.
    s.busB.client.stream.destroy();
    assert.equal(await c.closed, 4502);
    assert.match(JSON.stringify(c.messages.at(-1)), /lost the message bus/);
    await until("the agent told by A's side", () =>
      s.agent.control.some((f) => f.type === 'chan.close' && f.id === c.id),
    );
    assert.equal(s.hubA.openCount, 0);
  },
);

test('the broker dying ends the channel on both replicas', { timeout: 30_000 }, async (t) => {
  const mosquitto = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p));
  if (!mosquitto) {
    if (process.env.CI) throw new Error('mosquitto is needed (.ci/run installs it)');
    t.skip('mosquitto is not installed');
    return;
  }
  // A broker of this test's own, to kill.
  const dir = mkdtempSync(join(tmpdir(), 'keel-mosquitto-'));
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
  const broker = spawn(mosquitto, ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  const exited = new Promise((r) => broker.once('exit', r));
  open.push({
    close: async () => {
      if (broker.exitCode === null) broker.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  });
  for (let i = 0; !(await reachable(`mqtt://127.0.0.1:${port}`)); i++) {
    if (i > 100) throw new Error('mosquitto did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = await setUp(t, `mqtt://127.0.0.1:${port}`);
  if (!s) return;
  const c = await s.client();
  broker.kill('SIGKILL');
  assert.equal(await c.closed, 4502);
  assert.match(JSON.stringify(c.messages.at(-1)), /lost the message bus/);
  await until("the agent told by A's side", () =>
    s.agent.control.some((f) => f.type === 'chan.close' && f.id === c.id),
  );
  assert.equal(s.hubA.openCount + s.hubB.openCount, 0);
});
