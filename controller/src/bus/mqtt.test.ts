// Proves the MQTT bus on a real Mosquitto: an event published by one replica reaches another's
// subscribers intact (binary stream payloads included) and its own subscribers once, never its
// `local` ones elsewhere; malformed messages from the broker are dropped and counted, and so are
// events without a valid MAC under the replicas' key, too old or replayed; a lost broker
// is logged once, events are not queued meanwhile, and the bus reconnects with backoff by itself.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import type { FleetEvent } from './index.ts';
import { createMqttBus, redactUrl, type MqttReplicaBus } from './mqtt.ts';
import { needBroker, reachable, subscriptionsHeld, TEST_BROKER as BROKER } from './test-broker.ts';
import { encodeEvent } from './wire.ts';
import { freePort } from '../../../test/helpers/ports.ts';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p));
const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const c of open.reverse()) await c.close().catch(() => {});
});

function logCapture() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** The replicas' shared event key in these tests. */
const KEY = randomBytes(32);
let nextSeq = 1_000;
/** A message as replica `origin` publishes it (a fresh sequence number unless given). */
function signed(origin: string, event: FleetEvent, key = KEY, seq = nextSeq++, at = Date.now()): string {
  return encodeEvent(key, origin, seq, at, event);
}

async function bus(prefix: string, more: Partial<Parameters<typeof createMqttBus>[0]> = {}) {
  const b = await createMqttBus({
    url: BROKER,
    prefix,
    eventKey: KEY,
    log: pino({ level: 'silent' }),
    ...more,
  });
  open.push(b);
  return b;
}

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const prefixFor = (name: string) => `keel-test/${name}-${process.pid}-${Date.now()}`;

/**
 * A replica bus on a fresh prefix whose subscriptions the broker holds, what it delivers and logs,
 * and a raw broker client to publish what other clients of the broker could; null when skipped.
 */
async function listeningReplica(t: TestContext, name: string) {
  if (!(await needBroker(t))) return null;
  const prefix = prefixFor(name);
  const { log, lines } = logCapture();
  const b = await bus(prefix, { log });
  await subscriptionsHeld(b.client, prefix);
  const got: FleetEvent[] = [];
  b.subscribe((e) => got.push(e));
  const raw = await connectAsync(BROKER, { protocolVersion: 5 });
  open.push({ close: () => raw.endAsync() });
  return { prefix, b, got, lines, raw };
}

const host = (id: string, online: boolean) => ({
  type: 'host' as const,
  host: {
    id,
    name: 'edge-1',
    online,
    connectedAt: online ? new Date().toISOString() : null,
    lastSeenAt: null,
    enrolledAt: new Date().toISOString(),
    revokedAt: null,
    agentVersion: '0.2.0',
    facts: { hostname: 'edge-1', os: { id: 'debian' } } as never,
    capabilities: null,
  },
});

test('an event reaches the other replica intact and its own subscribers once', async (t) => {
  if (!(await needBroker(t))) return;
  const prefix = prefixFor('roundtrip');
  const a = await bus(prefix);
  const b = await bus(prefix);
  assert.ok(a.connected && b.connected);
  // A's events go to B only once the broker holds B's subscription.
  await subscriptionsHeld(b.client, prefix);
  const onA: FleetEvent[] = [];
  const onB: FleetEvent[] = [];
  const localB: FleetEvent[] = [];
  a.subscribe((e) => onA.push(e));
  b.subscribe((e) => onB.push(e));
  b.local.subscribe((e) => localB.push(e));

  const events: FleetEvent[] = [
    host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0001', true),
    {
      type: 'stream.stored',
      hostId: '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0001',
      stream: 'events',
      ackedSeq: 7,
      records: [{ seq: 7, ts: 1700000000000, payload: Buffer.from([0, 1, 2, 255]) }],
    },
    {
      type: 'job.output',
      runId: 'run-1',
      hostId: '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0001',
      stream: 'stdout',
      offset: 0,
      text: 'hello\n',
    },
    { type: 'host.removed', hostId: '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0001' },
  ];
  for (const e of events) a.publish(e);
  assert.deepEqual(onA, events, "A's subscribers hear A's events at once, as in process");
  await waitFor('B to receive all of them', () => onB.length === events.length);
  assert.deepEqual(onB, events);
  assert.deepEqual(localB, [], "B's local subscribers hear only B's own events");

  // B answers; once A has B's event, an echo of A's own events would have come before it.
  b.publish(host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0002', false));
  await waitFor('A to receive B', () => onA.length === events.length + 1);
  assert.equal(onA.length, events.length + 1, 'no echo of A own events');
  assert.equal(localB.length, 1);
  assert.deepEqual(a.stats(), { sent: 4, received: 1, malformed: 0, unverified: 0, unsent: 0 });

  // A broker that ignored no-local: the origin check still drops a replica's own events.
  const raw = await connectAsync(BROKER, { protocolVersion: 5 });
  open.push({ close: () => raw.endAsync() });
  const self = host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0003', true);
  await raw.publishAsync(`${prefix}/hosts/${self.host.id}/state`, signed(a.replicaId, self), { qos: 1 });
  const other = host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0004', true);
  await raw.publishAsync(`${prefix}/hosts/${other.host.id}/state`, signed('another', other), { qos: 1 });
  await waitFor('A to receive the other replica event', () => onA.length === events.length + 2);
  assert.deepEqual(onA.at(-1), other, 'the event naming A as origin was dropped');
});

test('malformed messages are dropped and counted, never delivered or thrown', async (t) => {
  const r = await listeningReplica(t, 'malformed');
  if (!r) return;
  const { prefix, b, got, lines, raw } = r;
  const id = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0010';
  const good = host(id, true);
  const bad: [string, string | Buffer][] = [
    [`${prefix}/hosts/${id}/state`, 'not json {'],
    [`${prefix}/hosts/${id}/state`, Buffer.from([0xff, 0xfe, 0x00])],
    [`${prefix}/hosts/${id}/state`, JSON.stringify({ v: 1, origin: 'x', event: { type: 'host', host: {} } })],
    [`${prefix}/hosts/${id}/state`, JSON.stringify({ v: 2, origin: 'x', event: good })],
    [`${prefix}/hosts/${id}/state`, JSON.stringify({ v: 1, origin: 'x', event: { type: 'rm -rf' } })],
    // A valid event on another host's topic: a publisher cannot make one host's topic carry another's.
    [`${prefix}/hosts/someone-else/state`, signed('x', good)],
    [`${prefix}/jobs/r/run`, 'null'],
  ];
  for (const [topic, body] of bad) await raw.publishAsync(topic, body, { qos: 1 });
  // An empty retained message (a removed host's state cleared) is not malformed, nor an event.
  await raw.publishAsync(`${prefix}/hosts/${id}/state`, '', { qos: 1 });
  await raw.publishAsync(`${prefix}/hosts/${id}/state`, signed('x', good), { qos: 1 });
  await waitFor('the good event', () => got.length === 1);
  assert.deepEqual(got, [good]);
  assert.equal(b.stats().malformed, bad.length);
  const warned = lines.filter((l) => l.msg.includes('malformed'));
  assert.equal(warned.length, 1, 'logged once a minute, not per message');
});

test('the URL is logged without its credentials', () => {
  assert.equal(redactUrl('mqtt://keel:hunter2@broker.internal:1883'), 'mqtt://broker.internal:1883');
  assert.equal(redactUrl('mqtts://broker:8883'), 'mqtts://broker:8883');
  assert.equal(redactUrl('not a url'), '(unparsable URL)');
});

/** A Mosquitto of this test's own on a free port, to stop and start again. */
async function ownBroker(port: number): Promise<{ start(): Promise<void>; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  let proc: ChildProcess | null = null;
  const broker = {
    async start() {
      proc = spawn(MOSQUITTO!, ['-c', conf], { stdio: 'ignore' });
      const until = Date.now() + 10_000;
      while (!(await reachable(`mqtt://127.0.0.1:${port}`))) {
        if (Date.now() > until) throw new Error('mosquitto did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null) return;
      await new Promise((r) => (p.once('exit', r), p.kill('SIGKILL')));
    },
    async close() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  open.push(broker);
  return broker;
}

test('a lost broker: logged once, nothing queued, reconnected with backoff', async (t) => {
  if (!MOSQUITTO) {
    if (process.env.CI) throw new Error('mosquitto is needed (.ci/run installs it)');
    t.skip('mosquitto is not installed');
    return;
  }
  const port = await freePort();
  const broker = await ownBroker(port);
  await broker.start();
  const url = `mqtt://keel:hunter2@127.0.0.1:${port}`;
  const { log, lines } = logCapture();
  const prefix = prefixFor('reconnect');
  const backoff = { initialMs: 50, maxMs: 400 };
  const a: MqttReplicaBus = await bus(prefix, { url, log, backoff });
  const b: MqttReplicaBus = await bus(prefix, { url, backoff });
  let reconnects = 0;
  a.onReconnected(() => reconnects++);
  const onB: FleetEvent[] = [];
  b.subscribe((e) => onB.push(e));

  await broker.stop();
  await waitFor('A to see the loss', () => !a.connected);
  a.publish(host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0020', true));
  assert.equal(a.stats().unsent, 1, 'not queued while the broker is away');
  // Several attempts fail meanwhile (50, 100, 200, 400 ms...).
  await new Promise((r) => setTimeout(r, 1500));
  await broker.start();
  await waitFor('A to reconnect', () => a.connected && reconnects === 1, 10_000);
  await waitFor('B to reconnect', () => b.connected, 10_000);
  // The subscription is back: an event after the return goes through.
  const after = host('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0021', true);
  await waitFor(
    'an event after the return',
    () => {
      if (onB.length === 0) a.publish(after);
      return onB.length > 0;
    },
    5000,
  );
  assert.deepEqual(onB.at(-1), after);
  const text = lines.map((l) => l.msg);
  assert.equal(text.filter((m) => m.includes('connection lost')).length, 1, 'the loss logged once');
  assert.equal(text.filter((m) => m.includes('reconnected')).length, 1);
  assert.ok(lines.filter((l) => l.msg.includes('connection error')).length >= 2, 'several attempts failed');
  assert.ok(!JSON.stringify(lines).includes('hunter2'), 'no credentials in the logs');
});

test('events without a valid MAC, too old or replayed are dropped and counted as unverified', async (t) => {
  const r = await listeningReplica(t, 'unverified');
  if (!r) return;
  const { prefix, b, got, lines, raw } = r;
  const id = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0020';
  const topic = `${prefix}/hosts/${id}/state`;
  const offline = host(id, false);
  const genuine = signed('r1', host(id, true));
  const tampered = genuine.replace('"online":true', '"online":false');
  const unsigned = JSON.stringify({ v: 1, origin: 'r1', seq: 5, at: Date.now(), event: offline });
  const forged = [
    unsigned,
    JSON.stringify({ v: 1, origin: 'r1', event: offline }),
    signed('r1', offline, randomBytes(32)), // another master key
    tampered,
    signed('r1', offline, KEY, nextSeq++, Date.now() - 5 * 60_000), // too old
  ];
  for (const body of forged) await raw.publishAsync(topic, body, { qos: 1 });
  await raw.publishAsync(topic, genuine, { qos: 1 });
  await raw.publishAsync(topic, genuine, { qos: 1 }); // replayed
  await waitFor('the genuine event and the drops', () => b.stats().unverified === forged.length + 1);
  assert.equal(got.length, 1);
  const shown = got[0];
  assert.ok(shown?.type === 'host');
  assert.equal(shown.host.online, true, 'no forged state shown');
  assert.equal(b.stats().malformed, 0);
  assert.equal(lines.filter((l) => l.msg.includes('unverified')).length, 1, 'logged once a minute');
  // The payload stays readable: the event and the envelope's fields, the MAC last.
  const parsed = JSON.parse(genuine) as {
    v: number;
    origin: string;
    seq: number;
    at: number;
    event: unknown;
    mac: string;
  };
  assert.deepEqual(Object.keys(parsed), ['v', 'origin', 'seq', 'at', 'event', 'mac']);
  assert.match(parsed.mac, /^[0-9a-f]{64}$/);
});
