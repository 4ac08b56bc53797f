// Proves the admin view of API tokens: a user manager lists every user's tokens with their owner, created, expiry and last use but never a secret or its hash; others are refused; an admin revokes another user's token, which stops working at once, and the revocation is audited; an API token cannot reach the list even holding users.manage.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';

let t: TestApp;
let admin: SignedIn;
let viewer: SignedIn;
let bob: SignedIn;
let bobSecret = '';
let bobTokenId = '';

interface Listed {
  id: string;
  userId: string;
  ownerName: string;
  name: string;
  permissions: string[];
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
}

const bearer = (path: string, secret: string) =>
  t.request(path, { headers: { authorization: `Bearer ${secret}` }, ip: '192.0.2.7' });

async function listAll(who: SignedIn) {
  return t.request('/api/v1/tokens/all', { as: who });
}

before(async () => {
  t = await openTestApp();
  admin = await t.signInAs('admin');
  viewer = await t.signInAs('viewer');
  await t.createUser('bob', 'operator');
  bob = await t.login('bob');
  const made = await t.request('/api/v1/tokens', {
    method: 'POST',
    json: { name: 'ansible', permissions: ['host.view'], ttlDays: 30 },
    as: bob,
  });
  assert.equal(made.status, 201);
  const body = (await made.json()) as { token: { id: string }; secret: string };
  bobSecret = body.secret;
  bobTokenId = body.token.id;
  // A use, so last use is shown.
  assert.equal((await bearer('/api/v1/hosts', bobSecret)).status, 200);
});
after(async () => {
  await t.close();
});

test('an admin lists every user’s tokens with owner and dates; never the secret or its hash', async () => {
  const res = await listAll(admin);
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.ok(!text.includes(bobSecret), 'the secret is not in the answer');
  assert.ok(!text.includes(bobSecret.slice(4, 24)), 'nor a part of it');
  assert.ok(!/secret|hash/i.test(text), `no secret or hash field: ${text}`);
  const tokens = (JSON.parse(text) as { tokens: Listed[] }).tokens;
  const bobs = tokens.find((x) => x.id === bobTokenId);
  assert.ok(bobs, 'bob’s token is listed to the admin');
  assert.equal(bobs.ownerName, 'bob');
  assert.equal(bobs.name, 'ansible');
  assert.deepEqual(bobs.permissions, ['host.view']);
  assert.equal(bobs.revokedAt, null);
  assert.ok(bobs.lastUsedAt, 'last use recorded');
  assert.equal(bobs.lastUsedIp, '192.0.2.7');
  const days = (Date.parse(bobs.expiresAt) - Date.parse(bobs.createdAt)) / 86_400_000;
  assert.equal(Math.round(days), 30);
});

test('a viewer or operator is refused the list (403)', async () => {
  for (const who of [viewer, bob]) {
    const res = await listAll(who);
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'auth.forbidden');
  }
});

test('an API token cannot reach the list, even one holding users.manage', async () => {
  const made = await t.request('/api/v1/tokens', {
    method: 'POST',
    json: { name: 'admin automation', permissions: ['users.manage'] },
    as: admin,
  });
  assert.equal(made.status, 201);
  const { secret } = (await made.json()) as { secret: string };
  assert.equal((await bearer('/api/v1/users', secret)).status, 200, 'the token itself works');
  assert.equal((await bearer('/api/v1/tokens/all', secret)).status, 403);
});

test('an admin revokes another user’s token: it stops working at once; audited', async () => {
  const res = await t.request(`/api/v1/tokens/${bobTokenId}`, { method: 'DELETE', as: admin });
  assert.equal(res.status, 200);
  assert.equal((await bearer('/api/v1/hosts', bobSecret)).status, 401);
  const listed = ((await (await listAll(admin)).json()) as { tokens: Listed[] }).tokens;
  assert.ok(listed.find((x) => x.id === bobTokenId)?.revokedAt, 'shown as revoked');
  // A viewer cannot revoke someone else's token: to them it does not exist.
  const other = await t.request(`/api/v1/tokens/${bobTokenId}`, { method: 'DELETE', as: viewer });
  assert.equal(other.status, 404);
  const owner = await t.signInAs('owner');
  const audit = await t.request('/api/v1/audit/export?format=jsonl&action=api_token.revoke', { as: owner });
  const lines = (await audit.text()).trim().split('\n').filter(Boolean);
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!) as { actor: string | null; target: string; detail?: unknown };
  assert.equal(entry.target, `api_token:${bobTokenId}`);
  assert.match(lines[0]!, new RegExp(admin.userId));
  assert.ok(!lines[0]!.includes(bobSecret));
});
