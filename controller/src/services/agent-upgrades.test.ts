// Proves the rollout's rules for a host whose upgrade request went astray (the bug test/upgrades
// found under load): a request lost with a dropped link or a controller restart is sent again
// when the agent says no upgrade is under way; a release its launcher switched back is halted as
// rolled-back from agent.upgrade.status even when the event never arrived; and a controller that
// starts long after the request gives the host its whole bound from its own start. Real
// repositories on PGlite; the agent side is a scripted gateway (the real one needs live agents:
// test/upgrades.test.ts runs them).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { KeelError, type HostCapabilities } from '@keel/shared';
import { openTestApp, type TestApp } from '../app-fixture.ts';
import type { AgentGateway } from '../gateway/types.ts';
import { createAgentUpgradeRepository } from '../repositories/agent-upgrades.ts';
import { createHostRepository } from '../repositories/hosts.ts';
import { createJoinTokenRepository } from '../repositories/join-tokens.ts';
import { createAgentUpgradesService } from './agent-upgrades.ts';
import { sampleFacts } from '../../../test/helpers/facts.ts';

const FROM = '0.2.0';
const TO = '0.2.1';
const admin = { id: 'admin-test', role: 'admin' as const };

/** The agent side, scripted: what each request answers and what the host announces. */
function scriptedGateway() {
  const state = {
    online: true,
    version: FROM,
    calls: [] as string[],
    upgrade: (): Promise<unknown> => Promise.resolve({ previous: FROM, version: TO }),
    status: (): unknown => ({ version: FROM, upgrading: false, lastRollback: null }),
  };
  const gateway = {
    async request(_hostId: string, method: string) {
      state.calls.push(method);
      if (method === 'agent.upgrade') return state.upgrade();
      if (method === 'agent.upgrade.status') return state.status();
      throw new KeelError('request.deadline_exceeded');
    },
    disconnect: () => false,
    isOnline: () => state.online,
    capabilitiesOf: (): HostCapabilities | null =>
      state.online
        ? {
            agentVersion: state.version,
            requests: ['ping', 'agent.upgrade', 'agent.upgrade.status'],
            streams: ['events'],
            channels: [],
            announced: true,
          }
        : null,
  } as unknown as AgentGateway;
  return { state, gateway };
}

let t: TestApp;
before(async () => {
  t = await openTestApp();
});
after(async () => {
  await t.close();
});

async function setup(clock: { ms: number }) {
  const { secret } = await createJoinTokenRepository(t.db).create({ ttlSeconds: 600 });
  const hosts = createHostRepository(t.db);
  const host = await hosts.enroll({
    publicKey: randomBytes(32).toString('base64url'),
    name: `host-${randomBytes(3).toString('hex')}`,
    facts: { ...sampleFacts, agentVersion: FROM },
    tokenSecret: secret,
  });
  await hosts.markOnline(host.id, new Date(clock.ms));
  const agent = scriptedGateway();
  const service = (at: { ms: number }) =>
    createAgentUpgradesService({
      rollouts: createAgentUpgradeRepository(t.db),
      hosts,
      hostEvents: { tail: async () => ({ events: [], gaps: [] }) },
      gateway: agent.gateway,
      audit: t.services.audit,
      log: pino({ level: 'silent' }),
      now: () => new Date(at.ms),
      bundles: {
        versions: () => [TO],
        get: () => ({ version: TO, sha256: 'a'.repeat(64), bytes: Buffer.alloc(1000) }),
      },
    });
  return { hostId: host.id, hosts, agent, service };
}

/** Ticks until `done` holds (each tick is one step of the driver; answers settle in between). */
async function tickUntil(svc: { tick(): Promise<void> }, done: () => Promise<boolean>, max = 20) {
  for (let i = 0; i < max; i++) {
    await svc.tick();
    await new Promise((r) => setImmediate(r));
    if (await done()) return;
  }

  assert.fail('the condition never held');
}

describe('agent rollouts: a request gone astray', () => {
  test('a request lost with the link is sent again, and the host then ends on the new release', async () => {
    const clock = { ms: Date.parse('2026-11-30T00:00:00Z') };
    const { hostId, agent, service } = await setup(clock);
    const svc = service(clock);
    // The link drops before the first answer: the agent never ran it. Later ones are answered.
    let lost = false;
    agent.state.upgrade = () => {
      if (lost) {
        // Answered: from now on the agent is under way (its trial), until the new release says hello.
        agent.state.status = () => ({ version: FROM, upgrading: true, lastRollback: null });
        return Promise.resolve({ previous: FROM, version: TO });
      }
      lost = true;
      return Promise.reject(new KeelError('request.disconnected'));
    };
    const r = await svc.create(admin, { version: TO, hostIds: [hostId], maxStarts: 5 });
    assert.equal(r.maxStarts, 5);
    const view = () => svc.get(admin, r.id);
    // Asked, the agent says it runs the old release and nothing is under way: sent again, once.
    await tickUntil(svc, async () => agent.state.calls.filter((c) => c === 'agent.upgrade').length === 2);
    assert.deepEqual(agent.state.calls.slice(0, 3), [
      'agent.upgrade',
      'agent.upgrade.status',
      'agent.upgrade',
    ]);
    assert.equal((await view()).hosts[0]!.state, 'upgrading');
    // Under way: asked again, it is left to finish (not sent a third time).
    const asked = agent.state.calls.length;
    await tickUntil(svc, async () => agent.state.calls.length > asked);
    assert.deepEqual(agent.state.calls.slice(asked), ['agent.upgrade.status']);
    agent.state.version = TO; // the new release's hello
    await tickUntil(svc, async () => (await view()).state === 'done');
    assert.equal((await view()).hosts[0]!.state, 'ok');
    assert.equal(agent.state.calls.filter((c) => c === 'agent.upgrade').length, 2);
  });

  test('a release switched back is halted from agent.upgrade.status when the event never came', async () => {
    const clock = { ms: Date.parse('2026-11-30T01:00:00Z') };
    const { hostId, agent, service } = await setup(clock);
    const svc = service(clock);
    const r = await svc.create(admin, { version: TO, hostIds: [hostId] });
    await tickUntil(svc, async () => agent.state.calls.includes('agent.upgrade'));
    // Back on the old release; the launcher's record says why, and is newer than the request.
    agent.state.status = () => ({
      version: FROM,
      upgrading: false,
      lastRollback: { version: TO, previous: FROM, reason: 'it exited 3 times', at: clock.ms / 1000 + 5 },
    });
    await tickUntil(svc, async () => (await svc.get(admin, r.id)).state === 'halted');
    const v = await svc.get(admin, r.id);
    assert.equal(v.hosts[0]!.state, 'rolled-back');
    assert.match(v.hosts[0]!.reason!, /it exited 3 times/);
    assert.equal(agent.state.calls.filter((c) => c === 'agent.upgrade').length, 1, 'not sent again');
  });

  test('a controller that starts long after the request gives the host its whole bound from its start', async () => {
    const clock = { ms: Date.parse('2026-11-30T02:00:00Z') };
    const { hostId, agent, service, hosts } = await setup(clock);
    const first = service(clock);
    const r = await first.create(admin, { version: TO, hostIds: [hostId], confirmSeconds: 60 });
    await tickUntil(first, async () => agent.state.calls.includes('agent.upgrade'));
    await first.stop();
    // The host restarted into the new release while the controller was down for 10 minutes.
    agent.state.online = false;
    await hosts.markOffline(hostId, new Date(clock.ms));
    const later = { ms: clock.ms + 600_000 };
    const second = service(later);
    await second.tick();
    assert.equal((await second.get(admin, r.id)).hosts[0]!.state, 'upgrading', 'not given up at once');
    later.ms += 80_000; // within 60 s + 30 s of this controller's start
    await second.tick();
    assert.equal((await second.get(admin, r.id)).hosts[0]!.state, 'upgrading');
    later.ms += 11_000; // past it
    await second.tick();
    const v = await second.get(admin, r.id);
    assert.equal(v.state, 'halted');
    assert.match(v.hosts[0]!.reason!, /within 90 s/);
  });
});
