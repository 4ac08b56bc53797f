// Proves two-factor sign-in and account security: TOTP enrollment with a QR code and a confirming
// code; sign-in owes the code before anything else; a code is accepted within ±30 s of skew and
// never twice; a recovery code works once; wrong codes are throttled like passwords; a role can be
// made to enroll; sessions are listed and revoked (by the user and by an admin); password change
// checks the current one and the policy and ends the other sessions; every change is audited.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generate } from 'otplib';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';

let t: TestApp;
let clock = new Date('2026-03-01T12:00:00Z');
let admin: SignedIn;
let secret = '';
let recoveryCodes: string[] = [];

const codeAt = (offsetSeconds = 0) =>
  generate({ secret, epoch: Math.floor(clock.getTime() / 1000) + offsetSeconds });
const advance = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

/** Signs in with the password only: the session still owes its second factor. */
async function passwordStep(username: string, ip?: string) {
  const { stage, ...who } = await t.login(username, TEST_PASSWORD, { ip });
  return { who, stage };
}

const second = (who: SignedIn, body: unknown, ip?: string) =>
  t.request('/api/v1/auth/two-factor', { method: 'POST', json: body, as: who, ip });

before(async () => {
  t = await openTestApp({ now: () => clock });
  admin = await t.signInAs('owner');
  await t.createUser('carol', 'operator');
});
after(async () => {
  await t.close();
});

describe('TOTP', () => {
  test('enrollment: a QR code (SVG data URL), then a code confirms it and returns 10 recovery codes', async () => {
    const carol = await t.login('carol');
    const wrongPassword = await t.request('/api/v1/two-factor/setup', {
      method: 'POST',
      json: { password: 'not the password' },
      as: carol,
    });
    assert.equal(wrongPassword.status, 401);
    const setup = await json<{ secret: string; uri: string; qr: string }>(
      await t.request('/api/v1/two-factor/setup', {
        method: 'POST',
        json: { password: TEST_PASSWORD },
        as: carol,
      }),
    );
    assert.match(setup.uri, /^otpauth:\/\/totp\/Keel:carol\?/);
    assert.match(setup.qr, /^data:image\/svg\+xml;base64,/);
    assert.match(Buffer.from(setup.qr.split(',')[1]!, 'base64').toString(), /<svg/);
    secret = setup.secret;
    const bad = await t.request('/api/v1/two-factor/confirm', {
      method: 'POST',
      json: { code: '000000' },
      as: carol,
    });
    assert.equal(bad.status, 401);
    const ok = await t.request('/api/v1/two-factor/confirm', {
      method: 'POST',
      json: { code: await codeAt() },
      as: carol,
    });
    assert.equal(ok.status, 200);
    recoveryCodes = (await json<{ recoveryCodes: string[] }>(ok)).recoveryCodes;
    assert.equal(recoveryCodes.length, 10);
    assert.equal(new Set(recoveryCodes).size, 10);
  });

  test('sign-in owes the code: nothing else is allowed until it is given; a code works once', async () => {
    advance(60);
    const { who, stage } = await passwordStep('carol');
    assert.equal(stage, 'second-factor');
    const early = await t.request('/api/v1/hosts', { as: who });
    assert.equal(early.status, 403);
    assert.equal((await json<{ error: { code: string } }>(early)).error.code, 'auth.two_factor_required');
    assert.equal((await t.request('/api/v1/tokens', { as: who })).status, 403);
    const code = await codeAt();
    const done = await second(who, { code });
    assert.equal(done.status, 200);
    assert.equal((await json<{ stage: string }>(done)).stage, 'ok');
    assert.match(done.headers.get('set-cookie') ?? '', /^keel_session=[^;]+; Max-Age=/);
    assert.equal((await t.request('/api/v1/hosts', { as: who })).status, 200);
    // The same code again, within its window: refused.
    const again = await passwordStep('carol');
    assert.equal((await second(again.who, { code })).status, 401);
  });

  test('clock skew: a code 30 s off either way is accepted, 90 s off is not', async () => {
    advance(300);
    const a = await passwordStep('carol');
    assert.equal((await second(a.who, { code: await codeAt(-30) })).status, 200);
    const b = await passwordStep('carol');
    assert.equal((await second(b.who, { code: await codeAt(30) })).status, 200);
    advance(300);
    const c = await passwordStep('carol');
    assert.equal((await second(c.who, { code: await codeAt(-90) })).status, 401);
    assert.equal((await second(c.who, { code: await codeAt(90) })).status, 401);
  });

  test('a recovery code works once', async () => {
    advance(900); // past the failures above
    const a = await passwordStep('carol');
    assert.equal((await second(a.who, { recoveryCode: recoveryCodes[0]!.toUpperCase() })).status, 200);
    const b = await passwordStep('carol');
    assert.equal((await second(b.who, { recoveryCode: recoveryCodes[0]! })).status, 401);
    const status = await json<{ recoveryCodesLeft: number }>(
      await t.request('/api/v1/two-factor', { as: a.who }),
    );
    assert.equal(status.recoveryCodesLeft, 9);
  });

  test('wrong codes are throttled with the passwords: 5 failures lock the name (429)', async () => {
    advance(900);
    const { who } = await passwordStep('carol');
    for (let i = 0; i < 5; i++) assert.equal((await second(who, { code: '000001' })).status, 401);
    const locked = await second(who, { code: await codeAt() });
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers.get('retry-after')) > 0);
    advance(16 * 60);
    // The pending session itself expired meanwhile (5 minutes to give the code): sign in again.
    assert.equal((await second(who, { code: await codeAt() })).status, 401);
    const fresh = await passwordStep('carol');
    assert.equal((await second(fresh.who, { code: await codeAt() })).status, 200);
  });
});

describe('policy, sessions, password', () => {
  test('a role made to use 2FA can only enroll after its password', async () => {
    const set = await t.request('/api/v1/two-factor/policy', {
      method: 'PUT',
      json: { roles: ['viewer'] },
      as: admin,
    });
    assert.equal(set.status, 200);
    await t.createUser('dave', 'viewer');
    const { who, stage } = await passwordStep('dave');
    assert.equal(stage, 'enroll');
    assert.equal((await t.request('/api/v1/hosts', { as: who })).status, 403);
    assert.equal((await t.request('/api/v1/sessions', { as: who })).status, 403);
    const setup = await t.request('/api/v1/two-factor/setup', {
      method: 'POST',
      json: { password: TEST_PASSWORD },
      as: who,
    });
    assert.equal(setup.status, 200);
    const daveSecret = (await json<{ secret: string }>(setup)).secret;
    const code = await generate({ secret: daveSecret, epoch: Math.floor(clock.getTime() / 1000) });
    assert.equal(
      (await t.request('/api/v1/two-factor/confirm', { method: 'POST', json: { code }, as: who })).status,
      200,
    );
    assert.equal((await t.request('/api/v1/hosts', { as: who })).status, 200);
    await t.request('/api/v1/two-factor/policy', { method: 'PUT', json: { roles: [] }, as: admin });
  });

  test('sessions: listed per user, revoked by the user and by an admin', async () => {
    await t.createUser('erin', 'viewer');
    const one = await t.login('erin');
    const two = await t.login('erin');
    const list = await json<{ sessions: { id: string; current: boolean }[] }>(
      await t.request('/api/v1/sessions', { as: one }),
    );
    assert.equal(list.sessions.length, 2);
    const other = list.sessions.find((s) => !s.current)!;
    assert.equal(
      (await t.request(`/api/v1/sessions/${other.id}`, { method: 'DELETE', as: one })).status,
      204,
    );
    assert.equal((await t.request('/api/v1/hosts', { as: two })).status, 401);
    const seen = await json<{ sessions: { id: string }[] }>(
      await t.request(`/api/v1/users/${one.userId}/sessions`, { as: admin }),
    );
    assert.equal(seen.sessions.length, 1);
    const kill = await t.request(`/api/v1/users/${one.userId}/sessions/${seen.sessions[0]!.id}`, {
      method: 'DELETE',
      as: admin,
    });
    assert.equal(kill.status, 204);
    assert.equal((await t.request('/api/v1/hosts', { as: one })).status, 401);
  });

  test('password change: the current one is checked, the policy applies, other sessions end', async () => {
    await t.createUser('frank', 'viewer');
    const a = await t.login('frank');
    const b = await t.login('frank');
    const change = (body: unknown) =>
      t.request('/api/v1/auth/password', { method: 'POST', json: body, as: a });
    assert.equal(
      (await change({ currentPassword: 'wrong', newPassword: 'a brand new passphrase' })).status,
      401,
    );
    const weak = await change({ currentPassword: TEST_PASSWORD, newPassword: 'qwerty123456' });
    assert.equal((await json<{ error: { code: string } }>(weak)).error.code, 'user.weak_password');
    assert.equal(
      (await change({ currentPassword: TEST_PASSWORD, newPassword: 'a brand new passphrase' })).status,
      204,
    );
    assert.equal((await t.request('/api/v1/hosts', { as: a })).status, 200);
    assert.equal((await t.request('/api/v1/hosts', { as: b })).status, 401);
    await t.login('frank', 'a brand new passphrase');
  });

  test('every 2FA, session and password change is in the audit log', async () => {
    for (const action of [
      'two_factor.setup',
      'two_factor.enable',
      'two_factor.policy',
      'auth.two_factor',
      'auth.two_factor_failed',
      'auth.lockout',
      'session.revoke',
      'user.password_change',
    ]) {
      const page = await json<{ entries: { action: string }[] }>(
        await t.request(`/api/v1/audit?action=${action}&limit=1`, { as: admin }),
      );
      assert.equal(page.entries[0]?.action, action);
    }
  });
});
