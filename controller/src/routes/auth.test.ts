// Proves sign-in over HTTP: session cookie flags, CSRF and Origin checks, lockout after 5 failures,
// the per-address limit, sign-out, and the JSON error shapes for 400/401/404.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, TEST_PASSWORD, type TestApp } from '../app-fixture.ts';

let t: TestApp;
before(async () => {
  t = await openTestApp();
});
after(async () => {
  await t.close();
});

describe('POST /api/v1/auth/login', () => {
  test('signs in, sets an HttpOnly SameSite=Strict cookie and returns the CSRF token', async () => {
    await t.createUser('alice', 'admin');
    const res = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'alice', password: TEST_PASSWORD },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { user: { username: string; role: string }; csrfToken: string };
    assert.equal(body.user.username, 'alice');
    assert.equal(body.user.role, 'admin');
    assert.ok(body.csrfToken.length >= 32);
    const cookie = res.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^keel_session=[A-Za-z0-9_-]{43};/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.match(cookie, /Path=\//);
    assert.doesNotMatch(cookie, /Secure/, 'plain http public URL: no Secure flag');
    assert.equal(res.headers.get('cache-control'), 'no-store');
  });

  test('usernames are matched case-insensitively', async () => {
    await t.login('ALICE');
  });

  test('wrong password and unknown user give the same 401', async () => {
    await t.createUser('bob', 'viewer');
    const wrong = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'bob', password: 'nope' },
    });
    const unknown = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'nobody', password: 'nope' },
    });
    for (const res of [wrong, unknown]) {
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), {
        error: { code: 'auth.invalid_credentials', message: 'Wrong username or password.' },
      });
      assert.equal(res.headers.get('set-cookie'), null);
    }
  });

  test('locks a username for 15 minutes after 5 failures, even for the right password', async () => {
    await t.createUser('carol', 'viewer');
    for (let i = 0; i < 5; i++) {
      const res = await t.request('/api/v1/auth/login', {
        method: 'POST',
        json: { username: 'carol', password: `wrong-${i}` },
        ip: `198.51.100.${i}`,
      });
      assert.equal(res.status, 401);
    }
    const locked = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'carol', password: TEST_PASSWORD },
      ip: '198.51.100.77',
    });
    assert.equal(locked.status, 429);
    assert.equal(((await locked.json()) as { error: { code: string } }).error.code, 'auth.locked');
  });

  test('unknown usernames lock the same way, so lockout does not reveal which names exist', async () => {
    let last = 0;
    for (let i = 0; i < 6; i++) {
      const res = await t.request('/api/v1/auth/login', {
        method: 'POST',
        json: { username: 'ghost', password: 'x' },
        ip: `203.0.113.${i}`,
      });
      last = res.status;
    }
    assert.equal(last, 429);
  });

  test('limits failures per client address across usernames', async () => {
    await t.createUser('dave', 'viewer');
    let status = 0;
    for (let i = 0; i < 21; i++) {
      const res = await t.request('/api/v1/auth/login', {
        method: 'POST',
        json: { username: `someone-${i}`, password: 'x' },
        ip: '192.0.2.99',
      });
      status = res.status;
    }
    assert.equal(status, 429);
    // The right password from that address is refused too; from another address it works.
    const blocked = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'dave', password: TEST_PASSWORD },
      ip: '192.0.2.99',
    });
    assert.equal(blocked.status, 429);
    const elsewhere = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'dave', password: TEST_PASSWORD },
      ip: '192.0.2.100',
    });
    assert.equal(elsewhere.status, 200);
  });

  test('a malformed body is 400 request.invalid with a message naming the field', async () => {
    const res = await t.request('/api/v1/auth/login', { method: 'POST', json: { username: 'x' } });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'request.invalid');
    assert.match(body.error.message, /body\.password/);
    const notJson = await t.request('/api/v1/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{not json',
    });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { error: { code: string } }).error.code, 'request.invalid');
  });

  test('a body that is not JSON is 415 request.unsupported_media_type', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'text/plain;charset=UTF-8']) {
      const res = await t.request('/api/v1/auth/login', {
        method: 'POST',
        headers: { 'content-type': type },
        body: JSON.stringify({ username: 'x', password: 'y' }),
      });
      assert.equal(res.status, 415, type);
      assert.equal(
        ((await res.json()) as { error: { code: string } }).error.code,
        'request.unsupported_media_type',
      );
    }
  });

  test('a cross-origin login is refused', async () => {
    await t.createUser('erin', 'viewer');
    const res = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'erin', password: TEST_PASSWORD },
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'auth.csrf');
  });

  test('never logs the password, the session secret or the CSRF token', async () => {
    await t.createUser('frank', 'viewer');
    const me = await t.login('frank');
    const logs = t.logLines.join('');
    assert.ok(!logs.includes(TEST_PASSWORD));
    assert.ok(!logs.includes(me.cookie.split('=')[1]!));
    assert.ok(!logs.includes(me.csrfToken));
  });
});

describe('sessions', () => {
  test('GET /auth/session returns the user and CSRF token; 401 auth.required without a cookie', async () => {
    const me = await t.signInAs('operator');
    const res = await t.request('/api/v1/auth/session', { as: me });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { user: { id: string; role: string }; csrfToken: string };
    assert.equal(body.user.id, me.userId);
    assert.equal(body.user.role, 'operator');
    assert.equal(body.csrfToken, me.csrfToken);

    const anon = await t.request('/api/v1/auth/session');
    assert.equal(anon.status, 401);
    assert.deepEqual(await anon.json(), { error: { code: 'auth.required', message: 'Sign in first.' } });
    const forged = await t.request('/api/v1/auth/session', { headers: { cookie: 'keel_session=forged' } });
    assert.equal(forged.status, 401);
  });

  test('logout needs the CSRF token, then ends the session', async () => {
    const me = await t.signInAs('viewer');
    const noToken = await t.request('/api/v1/auth/logout', {
      method: 'POST',
      headers: { cookie: me.cookie, 'x-csrf-token': '' },
    });
    assert.equal(noToken.status, 403);
    assert.equal(((await noToken.json()) as { error: { code: string } }).error.code, 'auth.csrf');

    const res = await t.request('/api/v1/auth/logout', { method: 'POST', as: me });
    assert.equal(res.status, 204);
    assert.match(res.headers.get('set-cookie') ?? '', /keel_session=;.*Max-Age=0/);
    const after = await t.request('/api/v1/auth/session', { as: me });
    assert.equal(after.status, 401);
  });

  test('mutations need the session CSRF token and a same-origin Origin', async () => {
    const me = await t.signInAs('admin');
    const noHeader = await t.request('/api/v1/join-tokens', {
      method: 'POST',
      json: {},
      headers: { cookie: me.cookie, 'x-csrf-token': '' },
    });
    assert.equal(noHeader.status, 403);
    const wrong = await t.request('/api/v1/join-tokens', {
      method: 'POST',
      json: {},
      headers: { cookie: me.cookie, 'x-csrf-token': 'x'.repeat(43) },
    });
    assert.equal(wrong.status, 403);
    const crossOrigin = await t.request('/api/v1/join-tokens', {
      method: 'POST',
      json: {},
      as: me,
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(crossOrigin.status, 403);
    assert.equal(((await crossOrigin.json()) as { error: { code: string } }).error.code, 'auth.csrf');
    const sameOrigin = await t.request('/api/v1/join-tokens', {
      method: 'POST',
      json: {},
      as: me,
      headers: { origin: t.origin },
    });
    assert.equal(sameOrigin.status, 201);
    // Reads need no CSRF token.
    const read = await t.request('/api/v1/join-tokens', { headers: { cookie: me.cookie } });
    assert.equal(read.status, 200);
  });

  test('the cookie is Secure when the public URL is https', async () => {
    const secure = await openTestApp({ publicUrl: 'https://keel.example.com' });
    try {
      await secure.createUser('grace', 'viewer');
      const res = await secure.request('/api/v1/auth/login', {
        method: 'POST',
        json: { username: 'grace', password: TEST_PASSWORD },
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('set-cookie') ?? '', /; Secure/);
    } finally {
      await secure.close();
    }
  });
});

describe('error shapes', () => {
  test('unknown API paths are 404 JSON', async () => {
    for (const p of ['/api/v1/nope', '/api/v2/hosts', '/api']) {
      const res = await t.request(p);
      assert.equal(res.status, 404, p);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'not_found');
      assert.equal(typeof body.error.message, 'string');
    }
  });

  test('a malformed host id is 400 request.invalid', async () => {
    const me = await t.signInAs('viewer');
    const res = await t.request('/api/v1/hosts/not-a-uuid', { as: me });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'request.invalid');
    assert.match(body.error.message, /param\.id/);
  });

  test('an oversized body is 413 request.too_large', async () => {
    const res = await t.request('/api/v1/auth/login', {
      method: 'POST',
      json: { username: 'x', password: 'y'.repeat(100_000) },
    });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'request.too_large');
  });
});

describe('session lifetime', () => {
  test('a session slides 12 h at a time while used, but ends 7 days after sign-in', async () => {
    let clock = Date.parse('2026-01-05T08:00:00Z');
    const app = await openTestApp({ now: () => new Date(clock) });
    try {
      await app.createUser('dora', 'viewer');
      const me = await app.login('dora');
      const hour = 3_600_000;
      const session = () => app.request('/api/v1/auth/session', { as: me });
      // Idle for 13 h: expired (12 h sliding window).
      const idle = await app.login('dora');
      clock += 13 * hour;
      assert.equal((await app.request('/api/v1/auth/session', { as: idle })).status, 401);
      clock -= 13 * hour;
      // Used every 11 h: alive for days...
      for (let h = 11; h < 7 * 24; h += 11) {
        clock += 11 * hour;
        assert.equal((await session()).status, 200, `after ${h} h`);
      }
      // ...until 7 days after sign-in, however busy.
      clock = Date.parse('2026-01-05T08:00:00Z') + 7 * 24 * hour + 1000;
      assert.equal((await session()).status, 401);
    } finally {
      await app.close();
    }
  });
});
