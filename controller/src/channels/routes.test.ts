// Proves POST /hosts/:id/channels: the kind's permission is enforced (echo: admins only), params
// are validated against the kind, the host must exist and be online, and an issued ticket is
// audited and redeemable exactly once.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../app-fixture.ts';
import { createHostRepository } from '../repositories/hosts.ts';
import { createJoinTokenRepository } from '../repositories/join-tokens.ts';
import { sampleFacts } from '../../../test/helpers/facts.ts';

let t: TestApp;
let hostId: string;
let operator: SignedIn;
let admin: SignedIn;

before(async () => {
  t = await openTestApp();
  const { secret } = await createJoinTokenRepository(t.db).create({ ttlSeconds: 600 });
  const host = await createHostRepository(t.db).enroll({
    publicKey: randomBytes(32).toString('base64url'),
    name: 'edge-1',
    facts: sampleFacts,
    tokenSecret: secret,
  });
  hostId = host.id;
  [operator, admin] = await Promise.all([t.signInAs('operator'), t.signInAs('admin')]);
});
after(async () => {
  await t.close();
});

const open = (as: SignedIn, id: string, json: unknown) =>
  t.request(`/api/v1/hosts/${id}/channels`, { method: 'POST', as, json });

describe('opening a channel', () => {
  test('an operator may not open an echo channel', async () => {
    t.gateway.online.add(hostId);
    const res = await open(operator, hostId, { kind: 'echo' });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'auth.forbidden');
  });

  test('an unknown kind, bad params, an unknown host and an offline host are refused', async () => {
    t.gateway.online.add(hostId);
    const codes = async (res: Response) => [
      res.status,
      ((await res.json()) as { error: { code: string } }).error.code,
    ];
    assert.deepEqual(await codes(await open(admin, hostId, { kind: 'shell' })), [
      400,
      'channel.unknown_kind',
    ]);
    assert.deepEqual(await codes(await open(admin, hostId, { kind: 'echo', params: { mode: 'x' } })), [
      400,
      'request.invalid',
    ]);
    assert.deepEqual(
      await codes(await open(admin, '0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33', { kind: 'echo' })),
      [404, 'host.not_found'],
    );
    t.gateway.online.delete(hostId);
    assert.deepEqual(await codes(await open(admin, hostId, { kind: 'echo' })), [409, 'host.offline']);
  });

  test('an admin gets a ticket, the opening is audited, and the ticket works once', async () => {
    t.gateway.online.add(hostId);
    const res = await open(admin, hostId, { kind: 'echo', params: { mode: 'source', bytes: 10 } });
    assert.equal(res.status, 201);
    const body = (await res.json()) as { ticket: string; url: string; kind: string; expiresAt: string };
    assert.equal(body.kind, 'echo');
    assert.equal(body.url, `/api/v1/channels/ws?ticket=${body.ticket}`);
    const grant = t.services.channels.tickets.redeem(body.ticket);
    assert.equal(grant?.hostId, hostId);
    assert.equal(grant?.userId, admin.userId);
    assert.deepEqual(grant?.params, { mode: 'source', bytes: 10 });
    assert.equal(t.services.channels.tickets.redeem(body.ticket), null);
    const audit = await t.request('/api/v1/audit?action=channel.open', { as: admin });
    const entries = ((await audit.json()) as { entries: { actor: string; target: string }[] }).entries;
    assert.ok(entries.some((e) => e.actor === admin.userId && e.target === `host:${hostId}`));
  });

  test("the agent gets the params as given, checked but without the schema's defaults", async () => {
    // An agent of an earlier version refuses a parameter it does not know (strict schemas); the
    // defaults are the agent's own to apply, so a parameter added since reaches it only when asked for.
    t.gateway.online.add(hostId);
    const res = await open(admin, hostId, { kind: 'process.logs', params: { name: 'web' } });
    assert.equal(res.status, 201);
    const { ticket } = (await res.json()) as { ticket: string };
    assert.deepEqual(t.services.channels.tickets.redeem(ticket)?.params, { name: 'web' });
    const paced = await open(admin, hostId, {
      kind: 'process.logs',
      params: { name: 'web', maxBytesPerSecond: 1024 },
    });
    assert.equal(paced.status, 400);
    assert.equal(((await paced.json()) as { error: { code: string } }).error.code, 'request.invalid');
  });
});
