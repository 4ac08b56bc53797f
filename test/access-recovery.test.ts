// Proves re-issuing recovery codes: a signed-in user with 2FA gets a fresh set for their password or a current code, the old codes stop working at once and the new ones sign in; a wrong password or code, no 2FA, or an API token are refused; the audit entry never holds the codes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generate } from 'otplib';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';

let t: TestApp;
let clock = new Date('2026-04-01T12:00:00Z');
let dave: SignedIn;
let secret = '';
let first: string[] = [];

const codeAt = () => generate({ secret, epoch: Math.floor(clock.getTime() / 1000) });
const advance = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));
const regenerate = (who: SignedIn, json: unknown) =>
  t.request('/api/v1/two-factor/recovery-codes', { method: 'POST', json, as: who });

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

/** Password, then a recovery code: the HTTP status of the second step. */
async function signInWithRecovery(recoveryCode: string): Promise<number> {
  const who = await t.login('dave');
  assert.equal(who.stage, 'second-factor');
  const second = await t.request('/api/v1/auth/two-factor', {
    method: 'POST',
    json: { recoveryCode },
    as: who,
  });
  return second.status;
}

before(async () => {
  t = await openTestApp({ now: () => clock });
  await t.createUser('dave', 'operator');
  dave = await t.login('dave');
});
after(async () => {
  await t.close();
});

test('without 2FA on there is nothing to re-issue (409 two_factor.not_enrolled)', async () => {
  const res = await regenerate(dave, { password: TEST_PASSWORD });
  assert.equal(res.status, 409);
  assert.equal(await errorCode(res), 'two_factor.not_enrolled');
});

test('enrolled: a wrong password or code is refused and the old codes still work', async () => {
  const setup = await t.request('/api/v1/two-factor/setup', {
    method: 'POST',
    json: { password: TEST_PASSWORD },
    as: dave,
  });
  secret = ((await setup.json()) as { secret: string }).secret;
  const ok = await t.request('/api/v1/two-factor/confirm', {
    method: 'POST',
    json: { code: await codeAt() },
    as: dave,
  });
  assert.equal(ok.status, 200);
  first = ((await ok.json()) as { recoveryCodes: string[] }).recoveryCodes;
  assert.equal(first.length, 10);

  const wrong = await regenerate(dave, { password: 'not the password at all' });
  assert.equal(wrong.status, 401);
  assert.equal(await errorCode(wrong), 'auth.invalid_credentials');
  advance(60);
  const badCode = await regenerate(dave, { code: '000000' });
  assert.equal(badCode.status, 401);
  assert.equal(await errorCode(badCode), 'auth.invalid_code');
  // Neither proof, or both: a validation error, not a re-issue.
  assert.equal((await regenerate(dave, {})).status, 400);
  assert.equal((await regenerate(dave, { password: TEST_PASSWORD, code: await codeAt() })).status, 400);
  assert.equal(await signInWithRecovery(first[0]!), 200);
});

test('with the password: a fresh set; the old codes are refused at once, a new one signs in once', async () => {
  const res = await regenerate(dave, { password: TEST_PASSWORD });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const fresh = ((await res.json()) as { recoveryCodes: string[] }).recoveryCodes;
  assert.equal(fresh.length, 10);
  assert.equal(new Set(fresh).size, 10);
  for (const c of fresh) assert.match(c, /^[a-z0-9]{5}-[a-z0-9]{5}$/);
  assert.ok(fresh.every((c) => !first.includes(c)));
  assert.equal(await signInWithRecovery(first[1]!), 401, 'an old unused code');
  assert.equal(await signInWithRecovery(fresh[0]!), 200, 'a new code');
  assert.equal(await signInWithRecovery(fresh[0]!), 401, 'the new code a second time');
  const status = (await (await t.request('/api/v1/two-factor', { as: dave })).json()) as {
    recoveryCodesLeft: number;
  };
  assert.equal(status.recoveryCodesLeft, 9);
  first = fresh;
});

test('with a current code instead: also a fresh set; that code cannot be used again', async () => {
  advance(120);
  const code = await codeAt();
  const res = await regenerate(dave, { code });
  assert.equal(res.status, 200);
  const fresh = ((await res.json()) as { recoveryCodes: string[] }).recoveryCodes;
  assert.equal(await signInWithRecovery(first[1]!), 401, 'the set before is gone');
  const replay = await regenerate(dave, { code });
  assert.equal(replay.status, 401);
  assert.equal(await signInWithRecovery(fresh[2]!), 200);
});

test('audited without the codes; an API token cannot re-issue', async () => {
  const owner = await t.signInAs('owner');
  const res = await t.request('/api/v1/audit/export?format=jsonl&action=two_factor.recovery_codes', {
    as: owner,
  });
  assert.equal(res.status, 200);
  const text = await res.text();
  const lines = text.trim().split('\n').filter(Boolean);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /"proof":"password"/);
  assert.match(lines[1]!, /"proof":"totp"/);
  assert.ok(!/[a-z0-9]{5}-[a-z0-9]{5}/.test(text), 'no recovery code in the audit log');

  const made = await t.request('/api/v1/tokens', {
    method: 'POST',
    json: { name: 'automation', permissions: ['host.view'] },
    as: dave,
  });
  assert.equal(made.status, 201, await made.clone().text());
  const token = ((await made.json()) as { secret: string }).secret;
  const viaToken = await t.request('/api/v1/two-factor/recovery-codes', {
    method: 'POST',
    json: { password: TEST_PASSWORD },
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(viaToken.status, 403);
});
