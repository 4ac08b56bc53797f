// Proves routed requests, replies and revocations are sealed under a key derived from the master
// key for that purpose, not under the master key itself (which seals the secrets at rest): a
// revocation a replica publishes (on a real Mosquitto) opens under the derived key's box and not
// under the master key's.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { KeelError } from '@keel/shared';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import type { AgentGateway } from '../gateway/types.ts';
import type { Host } from '../repositories/hosts.ts';
import { createSecretBox } from '../secrets.ts';
import { createMqttBus } from './mqtt.ts';
import { REQUEST_KEY_PURPOSE, routeRequests } from './routing.ts';
import { needBroker, subscriptionsHeld, TEST_BROKER as BROKER } from './test-broker.ts';
import { revocationTopic } from './topics.ts';

const log = pino({ level: 'silent' });
const open: { close(): unknown }[] = [];
after(async () => {
  for (const c of open.reverse()) await c.close();
});

const gateway: AgentGateway = {
  request: () => Promise.reject(new KeelError('request.deadline_exceeded')),
  disconnect: () => false,
  isOnline: () => false,
};

test(
  'a revocation on the broker is sealed under the derived key, not the master key',
  { timeout: 30_000 },
  async (t) => {
    if (!(await needBroker(t))) return;
    const prefix = `keel-test/routing-key-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const master = createSecretBox(randomBytes(32));
    const bus = await createMqttBus({ url: BROKER, prefix, eventKey: randomBytes(32), log });
    open.push(bus);
    const routing = routeRequests({
      bus,
      gateway,
      replicaId: 'lease-a',
      hosts: { get: async () => null as Host | null },
      secrets: master,
      log,
    });
    open.push(routing);
    const raw = await connectAsync(BROKER, { protocolVersion: 5, clean: true });
    open.push({ close: () => raw.endAsync() });
    const got: Buffer[] = [];
    raw.on('message', (_t, body) => got.push(body));
    await raw.subscribeAsync(revocationTopic(prefix), { qos: 1 });
    await subscriptionsHeld(raw, prefix);

    routing.disconnect('3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0300', 'revoked');
    for (let i = 0; i < 1000 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(got.length, 1, 'the revocation on the broker');
    const sealed = (JSON.parse(got[0]!.toString('utf8')) as { sealed: string }).sealed;
    const derived = createSecretBox(master.deriveKey(REQUEST_KEY_PURPOSE));
    assert.match(derived.open(sealed, 'keel.bus.revocation'), /3f0c2a56-0b0e-4a53-9d43-5d0d7f1f0300/);
    assert.throws(() => master.open(sealed, 'keel.bus.revocation'), KeelError);
  },
);
