// Proves the host routes: listing, role enforcement (viewer reads, operator pings and refreshes,
// admin revokes), revoke cutting the session through the gateway with an audit row and a bus
// event, and the event-history endpoint decoding stored stream records.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeRecords, type HostFacts } from '@keel/shared';
import { openTestApp, type SignedIn, type TestApp } from '../app-fixture.ts';
import { createAuditRepository } from '../repositories/audit.ts';
import { createHostRepository } from '../repositories/hosts.ts';
import { createJoinTokenRepository } from '../repositories/join-tokens.ts';
import { createStreamRepository } from '../repositories/streams.ts';

const facts: HostFacts = {
  hostname: 'edge-1',
  os: { platform: 'linux', distro: 'Debian GNU/Linux', release: '12', codename: 'bookworm', arch: 'x64' },
  kernel: '6.1.0',
  cpu: { model: 'Test CPU', cores: 2, physicalCores: 2, speedGHz: 2.4 },
  memory: { totalBytes: 4 * 1024 ** 3 },
  disks: [{ mount: '/', fs: '/dev/vda1', type: 'ext4', sizeBytes: 20e9, usedBytes: 5e9 }],
  agentVersion: '0.1.0',
  bootTime: 1_700_000_000,
  uptimeSeconds: 1234,
};

let t: TestApp;
let hostId: string;
let viewer: SignedIn;
let operator: SignedIn;
let admin: SignedIn;

before(async () => {
  t = await openTestApp();
  const { secret } = await createJoinTokenRepository(t.db).create({ ttlSeconds: 600 });
  const host = await createHostRepository(t.db).enroll({
    publicKey: randomBytes(32).toString('base64url'),
    name: 'edge-1',
    facts,
    tokenSecret: secret,
  });
  hostId = host.id;
  t.gateway.online.add(hostId);
  [viewer, operator, admin] = await Promise.all([
    t.signInAs('viewer'),
    t.signInAs('operator'),
    t.signInAs('admin'),
  ]);
});
after(async () => {
  await t.close();
});

describe('reading hosts', () => {
  test('GET /hosts lists hosts in the contract shape; GET /hosts/:id returns one', async () => {
    const res = await t.request('/api/v1/hosts', { as: viewer });
    assert.equal(res.status, 200);
    const { hosts } = (await res.json()) as { hosts: Record<string, unknown>[] };
    assert.equal(hosts.length, 1);
    assert.deepEqual(Object.keys(hosts[0]!).sort(), [
      'agentVersion',
      'capabilities',
      'connectedAt',
      'enrolledAt',
      'facts',
      'id',
      'lastSeenAt',
      'name',
      'online',
      'revokedAt',
    ]);
    assert.deepEqual(hosts[0]!.facts, facts);

    const one = await t.request(`/api/v1/hosts/${hostId}`, { as: viewer });
    assert.equal(one.status, 200);
    assert.equal(((await one.json()) as { host: { id: string } }).host.id, hostId);
  });

  test('an unknown host is 404 host.not_found; no session is 401', async () => {
    const res = await t.request('/api/v1/hosts/00000000-0000-4000-8000-000000000000', { as: viewer });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: { code: 'host.not_found', message: 'No such host.' } });
    const anon = await t.request('/api/v1/hosts');
    assert.equal(anon.status, 401);
    assert.equal(((await anon.json()) as { error: { code: string } }).error.code, 'auth.required');
  });
});

describe('roles', () => {
  test('a viewer may not ping, refresh or revoke', async () => {
    for (const action of ['ping', 'refresh-facts', 'revoke']) {
      const res = await t.request(`/api/v1/hosts/${hostId}/${action}`, { method: 'POST', as: viewer });
      assert.equal(res.status, 403, action);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'auth.forbidden');
    }
    assert.equal(t.gateway.calls.length, 0);
  });

  test('an operator pings and refreshes facts, but may not revoke', async () => {
    const ping = await t.request(`/api/v1/hosts/${hostId}/ping`, { method: 'POST', as: operator });
    assert.equal(ping.status, 200);
    const body = (await ping.json()) as { rttMs: number; agentTime: number };
    assert.equal(body.agentTime, 1_700_000_000_000);
    assert.equal(typeof body.rttMs, 'number');

    t.gateway.answer['facts.refresh'] = () => ({ facts: { ...facts, kernel: '6.12.0' } });
    const refresh = await t.request(`/api/v1/hosts/${hostId}/refresh-facts`, {
      method: 'POST',
      as: operator,
    });
    assert.equal(refresh.status, 200);
    const { host } = (await refresh.json()) as { host: { facts: HostFacts } };
    assert.equal(host.facts.kernel, '6.12.0');
    assert.ok(t.published.some((e) => e.type === 'host' && e.host.facts?.kernel === '6.12.0'));

    const revoke = await t.request(`/api/v1/hosts/${hostId}/revoke`, { method: 'POST', as: operator });
    assert.equal(revoke.status, 403);
    assert.deepEqual(
      t.gateway.calls.map((c) => c.method),
      ['ping', 'facts.refresh'],
    );
  });

  test('an agent that does not answer is 504 request.deadline_exceeded', async () => {
    delete t.gateway.answer['facts.refresh'];
    const res = await t.request(`/api/v1/hosts/${hostId}/refresh-facts`, { method: 'POST', as: operator });
    assert.equal(res.status, 504);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'request.deadline_exceeded');
  });
});

describe('revoke', () => {
  test('an admin revokes: the gateway cuts the session, the bus hears it, the audit log records it', async () => {
    const before = t.published.length;
    const res = await t.request(`/api/v1/hosts/${hostId}/revoke`, { method: 'POST', as: admin });
    assert.equal(res.status, 200);
    const { host } = (await res.json()) as { host: { revokedAt: string | null; online: boolean } };
    assert.ok(host.revokedAt);
    assert.equal(host.online, false);
    assert.deepEqual(t.gateway.disconnects, [hostId]);
    assert.equal(t.gateway.isOnline(hostId), false);
    const event = t.published.slice(before).find((e) => e.type === 'host');
    assert.ok(event && event.type === 'host' && event.host.revokedAt === host.revokedAt);

    const rows = await createAuditRepository(t.db).recent(20);
    const row = rows.find((r) => r.action === 'host.revoke');
    assert.ok(row);
    assert.equal(row.actor, admin.userId);
    assert.equal(row.target, `host:${hostId}`);
    assert.equal(row.detail.hadSession, true);
    assert.equal(row.ip, '192.0.2.1');
  });

  test('a revoked host is not pinged (409 host.revoked)', async () => {
    const res = await t.request(`/api/v1/hosts/${hostId}/ping`, { method: 'POST', as: operator });
    assert.equal(res.status, 409);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'host.revoked');
  });
});

describe('GET /hosts/:id/events', () => {
  test('returns decoded events after a sequence number, and the gaps', async () => {
    const streams = createStreamRepository(t.db);
    const payload = (o: unknown) => Buffer.from(JSON.stringify(o));
    await streams.append(hostId, 'events', {
      firstSeq: 1,
      count: 2,
      body: encodeRecords([
        { ts: 1000, payload: payload({ kind: 'agent.started', version: '0.1.0' }) },
        { ts: 2000, payload: payload({ kind: 'process.exited', code: 1 }) },
      ]),
    });
    // The agent lost 3..4.
    await streams.append(hostId, 'events', {
      firstSeq: 5,
      count: 1,
      body: encodeRecords([{ ts: 5000, payload: Buffer.from('not json') }]),
    });
    const res = await t.request(`/api/v1/hosts/${hostId}/events?after=1&limit=10`, { as: viewer });
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      events: { seq: number; ts: number; kind: string; data: Record<string, unknown> }[];
      gaps: { fromSeq: number; toSeq: number; at: string }[];
    };
    assert.deepEqual(
      body.events.map((e) => [e.seq, e.ts, e.kind]),
      [
        [2, 2000, 'process.exited'],
        [5, 5000, 'unreadable'],
      ],
    );
    assert.deepEqual(body.events[0]!.data, { code: 1 });
    assert.deepEqual(
      body.gaps.map((g) => [g.fromSeq, g.toSeq]),
      [[3, 4]],
    );

    const bad = await t.request(`/api/v1/hosts/${hostId}/events?limit=0`, { as: viewer });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /query\.limit/);

    // tail=1: only the newest event, whatever `after` says.
    const tail = await t.request(`/api/v1/hosts/${hostId}/events?tail=1`, { as: viewer });
    assert.equal(tail.status, 200);
    const tailBody = (await tail.json()) as { events: { seq: number }[] };
    assert.deepEqual(
      tailBody.events.map((e) => e.seq),
      [5],
    );
  });
});
