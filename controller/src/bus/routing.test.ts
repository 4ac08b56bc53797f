// Proves request routing between replicas on a real Mosquitto: a request for a host another replica
// holds is answered by that replica's agent; the agent's error code, and a deadline passed, come
// back as a local request gives them; a request the broker's other clients forge (unsealed, sealed
// under another master key) or replay never reaches an agent; a revocation made on one replica closes
// the session another holds, and a forged one closes nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test, type TestContext } from 'node:test';
import { KeelError } from '@keel/shared';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import type { AgentGateway } from '../gateway/types.ts';
import type { Host } from '../repositories/hosts.ts';
import { createSecretBox } from '../secrets.ts';
import { createMqttBus, type MqttReplicaBus } from './mqtt.ts';
import { routeRequests } from './routing.ts';
import { needBroker, subscriptionsHeld, TEST_BROKER as BROKER } from './test-broker.ts';
import { requestTopic, revocationTopic } from './topics.ts';

const open: { close(): unknown }[] = [];
after(async () => {
  for (const c of open.reverse()) await c.close();
});

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const HOST = '3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0100';
const log = pino({ level: 'silent' });

/** A gateway holding HOST whose agent answers as `answer` says; counts the requests it got. */
function agentGateway(answer: (method: string, params: unknown) => Promise<unknown>) {
  const calls: { method: string; params: unknown; timeoutMs: number | undefined }[] = [];
  const disconnects: string[] = [];
  const gateway: AgentGateway = {
    request: ((hostId: string, method: string, params: unknown, o?: { timeoutMs?: number }) => {
      assert.equal(hostId, HOST);
      calls.push({ method, params, timeoutMs: o?.timeoutMs });
      return answer(method, params);
    }) as AgentGateway['request'],
    disconnect: (hostId) => (disconnects.push(hostId), hostId === HOST),
    isOnline: (hostId) => hostId === HOST,
  };
  return { gateway, calls, disconnects };
}

/** A gateway holding nothing: what a replica without the host's session has. */
const emptyGateway: AgentGateway = {
  request: () => Promise.reject(new KeelError('request.deadline_exceeded')),
  disconnect: () => false,
  isOnline: () => false,
};

async function setUp(t: TestContext, answer: (method: string, params: unknown) => Promise<unknown>) {
  if (!(await needBroker(t))) return null;
  const prefix = `keel-test/routing-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const key = randomBytes(32);
  const busA: MqttReplicaBus = await createMqttBus({ url: BROKER, prefix, eventKey: key, log });
  const busB: MqttReplicaBus = await createMqttBus({ url: BROKER, prefix, eventKey: key, log });
  open.push(busA, busB);
  const row = { id: HOST, online: true, sessionReplica: 'lease-a' } as Host;
  const hosts = { get: async () => row };
  const agent = agentGateway(answer);
  const a = routeRequests({
    bus: busA,
    gateway: agent.gateway,
    replicaId: 'lease-a',
    hosts,
    secrets: createSecretBox(key),
    log,
  });
  const b = routeRequests({
    bus: busB,
    gateway: emptyGateway,
    replicaId: 'lease-b',
    hosts,
    secrets: createSecretBox(key),
    log,
  });
  open.push(a, b);
  // Subscriptions are made on connect and by routeRequests, unanswered: wait until both buses' are held.
  await Promise.all([busA, busB].map((bus) => subscriptionsHeld(bus.client, prefix)));
  return { prefix, busA, busB, a, b, agent, row, secrets: createSecretBox(key) };
}

test('a request for a host held by another replica is answered by its agent', async (t) => {
  const s = await setUp(t, async () => ({ agentTime: 1234 }));
  if (!s) return;
  assert.equal(s.b.isOnline(HOST), false, 'isOnline keeps its contract: a session on this replica');
  assert.deepEqual(await s.b.request(HOST, 'ping', {}), { agentTime: 1234 });
  assert.deepEqual(s.agent.calls, [{ method: 'ping', params: {}, timeoutMs: 10_000 }]);
  const counted = { refused: 0, revocationsSent: 0, revocationsApplied: 0 };
  assert.deepEqual(s.b.stats(), { ...counted, routed: 1, served: 0 });
  assert.deepEqual(s.a.stats(), { ...counted, routed: 0, served: 1 });

  // A host no replica holds: the local gateway decides (it waits for the host, as before routing).
  s.row.online = false;
  await assert.rejects(s.b.request(HOST, 'ping', {}), /did not answer/);
  assert.equal(s.b.stats().routed, 1, 'not routed');
});

test("the agent's error code and a passed deadline come back as a local request gives them", async (t) => {
  let mode: 'error' | 'silent' | 'bad' = 'error';
  const s = await setUp(t, () =>
    mode === 'error'
      ? Promise.reject(new KeelError('agent.unsupported', 'too old an agent'))
      : mode === 'bad'
        ? Promise.resolve({ agentTime: 'noon' })
        : new Promise(() => {}),
  );
  if (!s) return;
  await assert.rejects(s.b.request(HOST, 'ping', {}), (err: unknown) => {
    assert.ok(err instanceof KeelError);
    assert.equal(err.code, 'agent.unsupported');
    assert.equal(err.message, 'too old an agent');
    return true;
  });
  mode = 'silent';
  const started = Date.now();
  await assert.rejects(s.b.request(HOST, 'ping', {}, { timeoutMs: 200 }), (err: unknown) => {
    assert.ok(err instanceof KeelError);
    assert.equal(err.code, 'request.deadline_exceeded');
    return true;
  });
  assert.ok(Date.now() - started < 5000);
  // A malformed result from the other side is refused, as a local gateway refuses an agent's.
  mode = 'bad';
  await assert.rejects(s.b.request(HOST, 'ping', {}), (err: unknown) => {
    assert.ok(err instanceof KeelError);
    assert.equal(err.code, 'agent.bad_result');
    return true;
  });
});

test('forged and replayed requests never reach an agent', async (t) => {
  const s = await setUp(t, async () => ({ agentTime: 1 }));
  if (!s) return;
  const raw = await connectAsync(BROKER, { protocolVersion: 5 });
  open.push({ close: () => raw.endAsync() });
  const topic = requestTopic(s.prefix, 'lease-a');
  const captured: Buffer[] = [];
  raw.on('message', (_t, body) => captured.push(body));
  await raw.subscribeAsync(topic, { qos: 1 });

  const request = {
    id: 'x1',
    at: Date.now(),
    from: 'lease-b',
    hostId: HOST,
    method: 'ping',
    params: {},
    timeoutMs: 1000,
  };
  // Unsealed, and sealed under another master key.
  await raw.publishAsync(topic, JSON.stringify({ v: 1, sealed: JSON.stringify(request) }), { qos: 1 });
  const other = createSecretBox(randomBytes(32));
  await raw.publishAsync(
    topic,
    JSON.stringify({ v: 1, sealed: other.seal(JSON.stringify(request), 'keel.bus.request') }),
    {
      qos: 1,
    },
  );
  await raw.publishAsync(topic, 'garbage', { qos: 1 });
  await waitFor('A to refuse them', () => s.a.stats().refused === 3);

  // A genuine request goes through once; the same message sent again is refused.
  assert.deepEqual(await s.b.request(HOST, 'ping', {}), { agentTime: 1 });
  await waitFor('the genuine request captured', () => captured.length === 4);
  await raw.publishAsync(topic, captured[3]!, { qos: 1 });
  await waitFor('A to refuse the replay', () => s.a.stats().refused === 4);
  assert.equal(s.agent.calls.length, 1, 'the agent got only the genuine request');
});

test('a revocation made on another replica closes the session held here; forged ones do not', async (t) => {
  const s = await setUp(t, async () => ({ agentTime: 1 }));
  if (!s) return;
  const raw = await connectAsync(BROKER, { protocolVersion: 5 });
  open.push({ close: () => raw.endAsync() });
  const topic = revocationTopic(s.prefix);
  const revocation = { id: 'r1', at: Date.now(), from: 'lease-b', hostId: HOST, reason: 'revoked' };
  await raw.publishAsync(topic, JSON.stringify({ v: 1, sealed: JSON.stringify(revocation) }), { qos: 1 });
  const other = createSecretBox(randomBytes(32));
  const forged = other.seal(JSON.stringify(revocation), 'keel.bus.revocation');
  await raw.publishAsync(topic, JSON.stringify({ v: 1, sealed: forged }), { qos: 1 });
  await waitFor('A to refuse them', () => s.a.stats().refused === 2);
  assert.deepEqual(s.agent.disconnects, []);

  // B revokes (B's own gateway holds nothing): A's gateway closes the session, once.
  assert.equal(s.b.disconnect(HOST, 'revoked'), false, 'no session on B');
  await waitFor('A to close the session', () => s.a.stats().revocationsApplied === 1);
  assert.deepEqual(s.agent.disconnects, [HOST]);
  assert.equal(s.b.stats().revocationsSent, 1);
});

test('a revocation made while the broker is away goes out when it is back', async (t) => {
  const s = await setUp(t, async () => ({ agentTime: 1 }));
  if (!s) return;
  // A replica whose broker connection is not up yet (the same as one that lost it).
  const busC = await createMqttBus({
    url: BROKER,
    prefix: s.prefix,
    eventKey: randomBytes(32),
    log,
    connectWaitMs: 0,
  });
  open.push(busC);
  const c = routeRequests({
    bus: busC,
    gateway: emptyGateway,
    replicaId: 'lease-c',
    hosts: { get: async () => s.row },
    secrets: s.secrets,
    log,
  });
  open.push(c);
  assert.equal(busC.connected, false);
  c.disconnect(HOST, 'revoked');
  await waitFor('A to close the session once C is connected', () => s.a.stats().revocationsApplied === 1);
  assert.deepEqual(s.agent.disconnects, [HOST]);
  assert.equal(c.stats().revocationsSent, 1);
});
