// Proves API tokens: the secret is shown once and never again (API answers, logs), a bearer token
// works on the API without a CSRF header, its permissions and host groups are enforced (and never
// exceed its user's), expired and revoked tokens are refused, last use (time, address) is shown,
// a token cannot manage its user's account, and creation/revocation are audited.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';

let t: TestApp;
let clock = new Date('2026-01-01T00:00:00Z');
let owner: SignedIn;
let operator: SignedIn;
let hostA: string;
let hostB: string;
let groupA: string;

const enrollHost = (name: string) => t.enrollHost(name);

const bearer = (secret: string, ip?: string) => ({ headers: { authorization: `Bearer ${secret}` }, ip });

async function makeToken(as: SignedIn, body: Record<string, unknown>) {
  const res = await t.request('/api/v1/tokens', { method: 'POST', json: body, as });
  const json = (await res.json()) as { token: { id: string }; secret: string; error?: { code: string } };
  return { status: res.status, ...json };
}

before(async () => {
  t = await openTestApp({ now: () => clock });
  hostA = await enrollHost('a');
  hostB = await enrollHost('b');
  t.gateway.online.add(hostA);
  t.gateway.online.add(hostB);
  owner = await t.signInAs('owner');
  operator = await t.signInAs('operator');
  const res = await t.request('/api/v1/groups', {
    method: 'POST',
    json: { name: 'a-only', hostIds: [hostA] },
    as: owner,
  });
  groupA = ((await res.json()) as { group: { id: string } }).group.id;
});
after(async () => {
  await t.close();
});

describe('API tokens', () => {
  test('shown once: the secret is in the creation answer only, never in lists or logs', async () => {
    const made = await makeToken(operator, { name: 'prometheus', permissions: ['host.view'] });
    assert.equal(made.status, 201);
    assert.match(made.secret, /^kat_[A-Za-z0-9_-]{43}$/);
    const list = await (await t.request('/api/v1/tokens', { as: operator })).text();
    assert.ok(list.includes(made.token.id));
    assert.ok(!list.includes(made.secret));
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret))).status, 200);
    assert.ok(!t.logLines.join('').includes(made.secret), 'the secret reached the log');
    assert.ok(!t.logLines.join('').includes(made.secret.slice(4)), 'the secret body reached the log');
  });

  test('scope: permissions are enforced, no CSRF header is needed, and a token holds no more than its user', async () => {
    const viewOnly = await makeToken(operator, { name: 'ro', permissions: ['host.view'] });
    const ping = (secret: string) =>
      t.request(`/api/v1/hosts/${hostA}/ping`, { method: 'POST', ...bearer(secret) });
    assert.equal((await ping(viewOnly.secret)).status, 403);
    const operate = await makeToken(operator, { name: 'ops', permissions: ['host.view', 'host.operate'] });
    assert.equal((await ping(operate.secret)).status, 200, 'bearer POST without x-csrf-token');
    // An operator cannot mint a token with an admin permission.
    const tooMuch = await makeToken(operator, { name: 'x', permissions: ['host.manage'] });
    assert.equal(tooMuch.status, 403);
  });

  test('host groups: a token limited to a group sees and acts on only its hosts (404 elsewhere)', async () => {
    const scoped = await makeToken(owner, {
      name: 'ansible',
      permissions: ['host.view', 'host.operate'],
      groupIds: [groupA],
    });
    const hosts = (await (await t.request('/api/v1/hosts', bearer(scoped.secret))).json()) as {
      hosts: { id: string }[];
    };
    assert.deepEqual(
      hosts.hosts.map((h) => h.id),
      [hostA],
    );
    assert.equal((await t.request(`/api/v1/hosts/${hostB}`, bearer(scoped.secret))).status, 404);
    // Controller permissions were not given: the owner's token cannot list users.
    assert.equal((await t.request('/api/v1/users', bearer(scoped.secret))).status, 403);
  });

  test('expired and revoked tokens are refused (401); revocation is audited', async () => {
    const short = await makeToken(operator, { name: 'short', permissions: ['host.view'], ttlDays: 1 });
    assert.equal((await t.request('/api/v1/hosts', bearer(short.secret))).status, 200);
    const saved = clock;
    clock = new Date(saved.getTime() + 24 * 60 * 60 * 1000 + 1000);
    try {
      assert.equal((await t.request('/api/v1/hosts', bearer(short.secret))).status, 401);
    } finally {
      clock = saved;
    }
    const gone = await makeToken(operator, { name: 'gone', permissions: ['host.view'] });
    const del = await t.request(`/api/v1/tokens/${gone.token.id}`, { method: 'DELETE', as: operator });
    assert.equal(del.status, 200);
    assert.equal((await t.request('/api/v1/hosts', bearer(gone.secret))).status, 401);
    assert.equal((await t.request('/api/v1/hosts', bearer('kat_' + 'A'.repeat(43)))).status, 401);
    // Someone else's token is not found to a user who does not manage users.
    const other = await makeToken(owner, { name: 'owner-only', permissions: ['host.view'] });
    const steal = await t.request(`/api/v1/tokens/${other.token.id}`, { method: 'DELETE', as: operator });
    assert.equal(steal.status, 404);
    const audit = (await (await t.request('/api/v1/audit?limit=200', { as: owner })).json()) as {
      entries: { action: string; target: string | null }[];
    };
    const actions = audit.entries.map((e) => `${e.action} ${e.target}`);
    assert.ok(actions.includes(`api_token.create api_token:${gone.token.id}`));
    assert.ok(actions.includes(`api_token.revoke api_token:${gone.token.id}`));
  });

  test('last use: time and address are shown', async () => {
    const used = await makeToken(operator, { name: 'used', permissions: ['host.view'] });
    await t.request('/api/v1/hosts', bearer(used.secret, '198.51.100.7'));
    const list = (await (await t.request('/api/v1/tokens', { as: operator })).json()) as {
      tokens: { id: string; lastUsedAt: string | null; lastUsedIp: string | null }[];
    };
    const row = list.tokens.find((x) => x.id === used.token.id)!;
    assert.equal(row.lastUsedIp, '198.51.100.7');
    assert.equal(row.lastUsedAt, clock.toISOString());
  });

  test("a token cannot manage its user's account (tokens, sessions): those need a sign-in", async () => {
    const full = await makeToken(owner, { name: 'full', permissions: ['host.view', 'users.manage'] });
    const res = await t.request('/api/v1/tokens', {
      method: 'POST',
      json: { name: 'more', permissions: ['host.view'] },
      ...bearer(full.secret),
    });
    assert.equal(res.status, 403);
    // users.manage was given, so this works; the token never reaches the account routes.
    assert.equal((await t.request('/api/v1/users', bearer(full.secret))).status, 200);
    // A malformed Authorization header is refused, not ignored in favour of a cookie.
    const mixed = await t.request('/api/v1/hosts', { as: owner, headers: { authorization: 'Bearer nope' } });
    assert.equal(mixed.status, 401);
  });
});
