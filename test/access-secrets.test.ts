// Proves TOTP secrets are sealed at rest under the master key: the database row never holds the
// secret the user scanned, sign-in with a code still works, a legacy plaintext row (written before
// sealing) keeps working and is sealed by the start-up pass, and a sealed secret copied into
// another user's row does not open there.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { generate, generateSecret } from 'otplib';
import { openTestApp, TEST_PASSWORD, type TestApp } from '../controller/src/app-fixture.ts';
import { users } from '../controller/src/db/schema/users.ts';
import { SEALED_PREFIX } from '../controller/src/secrets.ts';

let t: TestApp;
const clock = new Date('2026-03-01T12:00:00Z');
const codeFor = (secret: string, offset = 0) =>
  generate({ secret, epoch: Math.floor(clock.getTime() / 1000) + offset });

async function storedSecret(userId: string): Promise<string | null> {
  const [row] = await t.db.select({ s: users.totpSecret }).from(users).where(eq(users.id, userId));
  return row?.s ?? null;
}

/** Password step then the code: 200 when the second factor is accepted. */
async function signInWithCode(username: string, code: string): Promise<number> {
  const who = await t.login(username);
  assert.equal(who.stage, 'second-factor');
  const second = await t.request('/api/v1/auth/two-factor', { method: 'POST', json: { code }, as: who });
  return second.status;
}

before(async () => {
  t = await openTestApp({ now: () => clock });
});
after(async () => {
  await t.close();
});

test(
  'an enrolled secret is stored sealed, never as the secret shown, and sign-in works',
  { timeout: 30_000 },
  async () => {
    const dora = await t.createUser('dora', 'operator');
    const who = await t.login('dora');
    const setup = (await (
      await t.request('/api/v1/two-factor/setup', {
        method: 'POST',
        json: { password: TEST_PASSWORD },
        as: who,
      })
    ).json()) as { secret: string };
    const pending = await storedSecret(dora.id);
    assert.ok(pending?.startsWith(SEALED_PREFIX), 'sealed while pending');
    assert.ok(!pending?.includes(setup.secret));
    const confirm = await t.request('/api/v1/two-factor/confirm', {
      method: 'POST',
      json: { code: await codeFor(setup.secret) },
      as: who,
    });
    assert.equal(confirm.status, 200);
    const stored = await storedSecret(dora.id);
    assert.ok(stored?.startsWith(`${SEALED_PREFIX}${t.services.secrets.keyId}:`));
    assert.equal(await signInWithCode('dora', await codeFor(setup.secret, 30)), 200);
    assert.equal(await t.services.twoFactor.sealStoredSecrets(), 0, 'nothing left to seal');
  },
);

test(
  'a legacy plaintext secret keeps working and the start-up pass seals it',
  { timeout: 30_000 },
  async () => {
    const ed = await t.createUser('ed', 'viewer');
    const secret = generateSecret();
    await t.db
      .update(users)
      .set({ totpSecret: secret, totpEnabledAt: clock, totpLastStep: null })
      .where(eq(users.id, ed.id));
    assert.equal(await signInWithCode('ed', await codeFor(secret)), 200, 'plaintext still read');
    assert.equal(await t.services.twoFactor.sealStoredSecrets(), 1);
    const stored = await storedSecret(ed.id);
    assert.ok(stored?.startsWith(SEALED_PREFIX) && !stored.includes(secret));
    assert.equal(await signInWithCode('ed', await codeFor(secret, 30)), 200, 'sealed row signs in');
  },
);

test("a sealed secret copied into another user's row does not open there", { timeout: 30_000 }, async () => {
  const [dora] = await t.db.select().from(users).where(eq(users.username, 'dora'));
  const fay = await t.createUser('fay', 'viewer');
  await t.db
    .update(users)
    .set({ totpSecret: dora!.totpSecret, totpEnabledAt: clock })
    .where(eq(users.id, fay.id));
  const who = await t.login('fay');
  const second = await t.request('/api/v1/auth/two-factor', {
    method: 'POST',
    json: { code: '123456' },
    as: who,
  });
  assert.equal(second.status, 500);
  assert.equal(((await second.json()) as { error: { code: string } }).error.code, 'secret.unreadable');
});
