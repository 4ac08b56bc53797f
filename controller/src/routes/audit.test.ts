// Proves the audit routes: admins read the trail newest first with the acting user's name, page
// through it with `nextBefore`, filter by action prefix and target; a row changed in the database
// is found by /verify; lower roles and anonymous callers are refused; bad filters get a 400.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openTestApp, type SignedIn, type TestApp } from '../app-fixture.ts';

interface Entry {
  id: number;
  at: string;
  actor: string;
  actorName: string | null;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}
interface Page {
  entries: Entry[];
  nextBefore: number | null;
}

let t: TestApp;
let admin: SignedIn;
let operator: SignedIn;
let tokenId: string;

before(async () => {
  t = await openTestApp();
  admin = await t.signInAs('admin');
  operator = await t.signInAs('operator');
  const res = await t.request('/api/v1/join-tokens', { method: 'POST', as: admin, json: { note: 'audit' } });
  tokenId = ((await res.json()) as { token: { id: string } }).token.id;
});
after(async () => {
  await t.close();
});

async function page(query: string, as = admin): Promise<Page> {
  const res = await t.request(`/api/v1/audit${query}`, { as });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as Page;
}

describe('audit', () => {
  test('newest first, with the acting user named', async () => {
    const { entries } = await page('');
    assert.ok(entries.length >= 4);
    const ids = entries.map((e) => e.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => b - a),
    );
    const created = entries.find((e) => e.action === 'join_token.create');
    assert.equal(created?.actor, admin.userId);
    assert.match(created?.actorName ?? '', /^admin-/);
    assert.equal(created?.target, `join_token:${tokenId}`);
    assert.ok(entries.some((e) => e.action === 'auth.login' && e.actor === operator.userId));
  });

  test('pages with nextBefore until the end, each entry once', async () => {
    const all = (await page('?limit=200')).entries.map((e) => e.id);
    const seen: number[] = [];
    let before: number | null = null;
    for (let i = 0; i < 100; i++) {
      const p: Page = await page(`?limit=2${before === null ? '' : `&before=${before}`}`);
      seen.push(...p.entries.map((e) => e.id));
      if (p.nextBefore === null) break;
      before = p.nextBefore;
    }
    assert.deepEqual(seen, all);
  });

  test('filters by action prefix and by target', async () => {
    const tokens = await page('?action=join_token.');
    assert.ok(tokens.entries.length >= 1);
    assert.ok(tokens.entries.every((e) => e.action.startsWith('join_token.')));
    // One action exactly (a failed sign-in is `auth.login_failed`, not `auth.login`)...
    await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'nobody', password: 'x'.repeat(12) },
    });
    const logins = await page('?action=auth.login');
    assert.ok(logins.entries.length >= 2);
    assert.ok(logins.entries.every((e) => e.action === 'auth.login'));
    // ...or a family.
    const auth = await page('?action=auth.');
    assert.ok(auth.entries.some((e) => e.action === 'auth.login_failed'));
    assert.ok(auth.entries.every((e) => e.action.startsWith('auth.')));
    const one = await page(`?target=${encodeURIComponent(`join_token:${tokenId}`)}`);
    assert.deepEqual(
      one.entries.map((e) => e.action),
      ['join_token.create'],
    );
    // `_` and `%` are not wildcards.
    assert.equal((await page('?action=join_toke_')).entries.length, 0);
  });

  test('bad filters are refused with request.invalid', async () => {
    for (const q of ['?action=DROP%20TABLE', '?limit=0', '?limit=201', '?before=-1']) {
      const res = await t.request(`/api/v1/audit${q}`, { as: admin });
      assert.equal(res.status, 400, q);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'request.invalid');
    }
  });

  test('a numeric query value that is not a number says so and quotes it (not "received NaN")', async () => {
    const cases: [string, RegExp][] = [
      ['?before=abc', /^query\.before: must be a number \(got "abc"\)$/],
      ['?limit=1.5', /^query\.limit: must be a whole number \(got "1\.5"\)$/],
      [
        '?limit=x&before=y',
        /query\.before: must be a number \(got "y"\); query\.limit: must be a number|query\.limit: must be a number \(got "x"\); query\.before/,
      ],
    ];
    for (const [q, message] of cases) {
      const res = await t.request(`/api/v1/audit${q}`, { as: admin });
      assert.equal(res.status, 400, q);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'request.invalid');
      assert.match(body.error.message, message);
      assert.doesNotMatch(body.error.message, /NaN/);
    }
  });

  test('operators and anonymous callers are refused', async () => {
    assert.equal((await t.request('/api/v1/audit', { as: operator })).status, 403);
    assert.equal((await t.request('/api/v1/audit/verify', { as: operator })).status, 403);
    assert.equal((await t.request('/api/v1/audit')).status, 401);
  });

  test('verify passes on an untouched chain and names the first row changed in the database', async () => {
    const res = await t.request('/api/v1/audit/verify', { as: admin });
    const clean = (await res.json()) as { ok: boolean; rows: number };
    assert.equal(clean.ok, true);
    assert.ok(clean.rows >= 4);
    const target = (await page('?action=join_token.create')).entries[0]!;
    await t.db.execute(
      sql`update audit_log set detail = ${JSON.stringify({ note: 'edited' })}::jsonb where id = ${target.id}`,
    );
    const broken = (await (await t.request('/api/v1/audit/verify', { as: admin })).json()) as {
      ok: boolean;
      brokenAt: number;
      reason: string;
    };
    assert.equal(broken.ok, false);
    assert.equal(broken.brokenAt, target.id);
    assert.match(broken.reason, /hash/);
  });
});
