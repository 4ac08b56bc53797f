// Proves API token use is audited per request: a token's first use, a use from a new address and a use after an hour idle are audited as `api_token.use` (its "sign-in", with address and User-Agent; one entry for parallel first requests), every mutating request with a token is audited as `api_token.request` with the user, token, method, path, address and outcome (allowed and refused alike, never the body), reads in between add no entry but show in last use and the request log, and a revoked token presented again is audited as `api_token.refused` (at most once a minute).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';

let t: TestApp;
let clock = new Date('2026-02-01T08:00:00Z');
let owner: SignedIn;
let operator: SignedIn;

interface Entry {
  actor: string;
  action: string;
  target: string | null;
  ip: string | null;
  detail: Record<string, unknown>;
}

const bearer = (secret: string, ip = '198.51.100.7', init: RequestInit & { json?: unknown } = {}) => ({
  ...init,
  headers: { authorization: `Bearer ${secret}`, 'user-agent': 'keel-test-cli/1.0' },
  ip,
});

async function makeToken(as: SignedIn, permissions: string[]) {
  const res = await t.request('/api/v1/tokens', {
    method: 'POST',
    json: { name: `t-${Math.random().toString(36).slice(2, 8)}`, permissions },
    as,
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { token: { id: string; name: string }; secret: string };
}

/** The audit entries about one token, oldest first. */
async function entriesOf(tokenId: string): Promise<Entry[]> {
  const res = await t.request(`/api/v1/audit?target=api_token:${tokenId}&limit=200`, { as: owner });
  assert.equal(res.status, 200);
  return ((await res.json()) as { entries: Entry[] }).entries.reverse();
}

const advance = (ms: number) => {
  clock = new Date(clock.getTime() + ms);
};

before(async () => {
  t = await openTestApp({ now: () => clock });
  owner = await t.signInAs('owner');
  operator = await t.signInAs('operator');
});
after(async () => {
  await t.close();
});

describe('API token audit', () => {
  test('first use is one api_token.use entry (even for parallel requests); reads after it add none', async () => {
    const made = await makeToken(operator, ['host.view']);
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => t.request('/api/v1/hosts', bearer(made.secret))),
    );
    for (const a of answers) assert.equal(a.status, 200);
    advance(5 * 60_000);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret))).status, 200);
    const entries = await entriesOf(made.token.id);
    assert.deepEqual(
      entries.map((e) => e.action),
      ['api_token.create', 'api_token.use'],
    );
    const use = entries[1]!;
    assert.equal(use.actor, operator.userId);
    assert.equal(use.ip, '198.51.100.7');
    assert.equal(use.detail.reason, 'first_use');
    assert.equal(use.detail.name, made.token.name);
    assert.equal(use.detail.userAgent, 'keel-test-cli/1.0');
    // Reads stay visible: last use on the token, and a request log line naming the token.
    const list = (await (await t.request('/api/v1/tokens', { as: operator })).json()) as {
      tokens: { id: string; lastUsedAt: string | null; lastUsedIp: string | null }[];
    };
    const row = list.tokens.find((x) => x.id === made.token.id)!;
    assert.equal(row.lastUsedIp, '198.51.100.7');
    assert.equal(row.lastUsedAt, clock.toISOString());
    const lines = t.logLines
      .map((l) => JSON.parse(l) as { msg: string; tokenId?: string; path?: string })
      .filter((l) => l.msg === 'request' && l.tokenId === made.token.id);
    assert.equal(lines.length, 6, 'one request log line per read');
    assert.ok(!t.logLines.join('').includes(made.secret.slice(4)), 'the secret reached the log');
  });

  test('a new address and a use after an hour idle are audited as sign-ins', async () => {
    const made = await makeToken(operator, ['host.view']);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '198.51.100.7'))).status, 200);
    advance(60_000);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '203.0.113.9'))).status, 200);
    advance(59 * 60_000);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '203.0.113.9'))).status, 200);
    advance(60 * 60_000);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '203.0.113.9'))).status, 200);
    const uses = (await entriesOf(made.token.id)).filter((e) => e.action === 'api_token.use');
    assert.deepEqual(
      uses.map((e) => [e.detail.reason, e.ip, e.detail.previousIp ?? null]),
      [
        ['first_use', '198.51.100.7', null],
        ['new_address', '203.0.113.9', '198.51.100.7'],
        ['idle', '203.0.113.9', null],
      ],
    );
  });

  test('every mutating request is audited with who, which token, where, what and the outcome', async () => {
    const made = await makeToken(owner, ['groups.manage', 'host.view']);
    const created = await t.request(
      '/api/v1/groups',
      bearer(made.secret, '192.0.2.44', { method: 'POST', json: { name: 'audited-by-token' } }),
    );
    assert.equal(created.status, 201, await created.clone().text());
    const group = ((await created.json()) as { group: { id: string } }).group;
    // Refused requests are audited too: a permission the token lacks, and a missing resource.
    const refused = await t.request(
      '/api/v1/join-tokens',
      bearer(made.secret, '192.0.2.44', { method: 'POST', json: {} }),
    );
    assert.equal(refused.status, 403);
    const missing = await t.request(
      '/api/v1/groups/00000000-0000-4000-8000-000000000000',
      bearer(made.secret, '192.0.2.44', { method: 'DELETE' }),
    );
    assert.equal(missing.status, 404);
    const requests = (await entriesOf(made.token.id)).filter((e) => e.action === 'api_token.request');
    assert.deepEqual(
      requests.map((e) => [e.actor, e.ip, e.detail.method, e.detail.path, e.detail.status, e.detail.name]),
      [
        [owner.userId, '192.0.2.44', 'POST', '/api/v1/groups', 201, made.token.name],
        [owner.userId, '192.0.2.44', 'POST', '/api/v1/join-tokens', 403, made.token.name],
        [
          owner.userId,
          '192.0.2.44',
          'DELETE',
          '/api/v1/groups/00000000-0000-4000-8000-000000000000',
          404,
          made.token.name,
        ],
      ],
    );
    for (const e of requests)
      assert.deepEqual(Object.keys(e.detail).sort(), ['method', 'name', 'path', 'status']);
    // The action's own entry is still there, by the token's user.
    const own = await t.request(`/api/v1/audit?target=group:${group.id}`, { as: owner });
    const ownEntries = ((await own.json()) as { entries: Entry[] }).entries;
    assert.ok(ownEntries.some((e) => e.action === 'group.create' && e.actor === owner.userId));
  });

  test('a revoked token presented again is audited as api_token.refused, at most once a minute', async () => {
    const made = await makeToken(operator, ['host.view']);
    const del = await t.request(`/api/v1/tokens/${made.token.id}`, { method: 'DELETE', as: operator });
    assert.equal(del.status, 200);
    for (let i = 0; i < 3; i++) {
      assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '203.0.113.66'))).status, 401);
    }
    advance(61_000);
    assert.equal((await t.request('/api/v1/hosts', bearer(made.secret, '203.0.113.66'))).status, 401);
    const refused = (await entriesOf(made.token.id)).filter((e) => e.action === 'api_token.refused');
    assert.equal(refused.length, 2);
    assert.equal(refused[0]!.ip, '203.0.113.66');
    assert.equal(refused[0]!.detail.reason, 'revoked');
    assert.equal(refused[0]!.actor, operator.userId);
  });
});
