// Proves wallet sign-in (EIP-4361) end to end through the API with real secp256k1 keys made in the
// test: off by default; an admin turns it on (audited); a user links a wallet with their password
// and a signed linking message; that wallet signs in; a replayed nonce, a wrong domain/URI/chain,
// an expired message or nonce, a signature by another key, a nonce issued for linking, a malformed
// message and an unlinked address are refused; failures are throttled like passwords; a user with
// 2FA still owes the code; unlinking (by the user or an admin) stops it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { generate } from 'otplib';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import {
  addressOfSecretKey,
  formatSiweMessage,
  signPersonalMessage,
  toChecksumAddress,
  type SiweMessage,
} from '../controller/src/services/siwe.ts';

let t: TestApp;
let clock = new Date('2026-03-01T12:00:00Z');
const advance = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));
let admin: SignedIn;
let alice: SignedIn;
const aliceKey = secp256k1.utils.randomSecretKey();
const otherKey = secp256k1.utils.randomSecretKey();
const strangerKey = secp256k1.utils.randomSecretKey();
const addressOf = (key: Uint8Array) => toChecksumAddress(addressOfSecretKey(key));

interface Challenge {
  nonce: string;
  domain: string;
  uri: string;
  chainIds: number[];
  statement: string;
}

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}
async function errorCode(res: Response): Promise<string> {
  return (await json<{ error: { code: string } }>(res)).error.code;
}

/** The message a wallet would be asked to sign for `challenge`, with `changes` applied. */
function messageFor(challenge: Challenge, key: Uint8Array, changes: Partial<SiweMessage> = {}): string {
  return formatSiweMessage({
    domain: challenge.domain,
    address: addressOf(key),
    statement: challenge.statement,
    uri: challenge.uri,
    version: '1',
    chainId: challenge.chainIds[0]!,
    nonce: challenge.nonce,
    issuedAt: clock.toISOString(),
    ...changes,
  });
}

async function loginChallenge(ip?: string): Promise<Challenge> {
  const res = await t.request('/api/v1/auth/wallet/challenge', { method: 'POST', ip });
  assert.equal(res.status, 200);
  return json<Challenge>(res);
}

function walletLogin(message: string, signature: string, ip?: string) {
  return t.request('/api/v1/auth/wallet/login', { method: 'POST', json: { message, signature }, ip });
}

/** Signs in with `key`'s wallet over a fresh nonce, `changes` applied to the message. */
async function signInWith(key: Uint8Array, changes: Partial<SiweMessage> = {}, signer = key, ip?: string) {
  const message = messageFor(await loginChallenge(ip), key, changes);
  return walletLogin(message, signPersonalMessage(message, signer), ip);
}

async function link(who: SignedIn, key: Uint8Array, password = TEST_PASSWORD) {
  const challenge = await json<Challenge>(
    await t.request('/api/v1/wallets/challenge', { method: 'POST', as: who }),
  );
  const message = messageFor(challenge, key);
  return t.request('/api/v1/wallets', {
    method: 'POST',
    as: who,
    json: { message, signature: signPersonalMessage(message, key), password },
  });
}

before(async () => {
  t = await openTestApp({ now: () => clock, publicUrl: 'https://keel.example.com' });
  admin = await t.signInAs('owner');
  await t.createUser('alice', 'operator');
  await t.createUser('bob', 'viewer');
  alice = await t.login('alice');
});
after(async () => {
  await t.close();
});

describe('policy', () => {
  test('off by default: no nonce, no linking, no sign-in', { timeout: 30_000 }, async () => {
    assert.deepEqual(await json(await t.request('/api/v1/auth/wallet')), { enabled: false, chainIds: [1] });
    const res = await t.request('/api/v1/auth/wallet/challenge', { method: 'POST' });
    assert.equal(res.status, 403);
    assert.equal(await errorCode(res), 'wallet.disabled');
    assert.equal((await t.request('/api/v1/wallets/challenge', { method: 'POST', as: alice })).status, 403);
  });

  test('only an admin turns it on, and that is audited', { timeout: 30_000 }, async () => {
    const body = { enabled: true, chainIds: [1, 10] };
    assert.equal(
      (await t.request('/api/v1/wallets/policy', { method: 'PUT', as: alice, json: body })).status,
      403,
    );
    const res = await t.request('/api/v1/wallets/policy', { method: 'PUT', as: admin, json: body });
    assert.equal(res.status, 200);
    assert.deepEqual(await json(await t.request('/api/v1/auth/wallet')), body);
    const audit = await json<{ entries: { action: string; details: unknown }[] }>(
      await t.request('/api/v1/audit?action=wallet.policy', { as: admin }),
    );
    assert.ok(audit.entries.some((e) => e.action === 'wallet.policy'));
  });
});

describe('linking', () => {
  test(
    'a nonce names this controller: its host as domain, its origin as URI',
    { timeout: 30_000 },
    async () => {
      const c = await loginChallenge();
      assert.equal(c.domain, 'keel.example.com');
      assert.equal(c.uri, 'https://keel.example.com');
      assert.match(c.nonce, /^[0-9a-f]{32}$/);
    },
  );

  test('needs the password; then the wallet is linked, listed and audited', { timeout: 30_000 }, async () => {
    const wrong = await link(alice, aliceKey, 'not the password');
    assert.equal(wrong.status, 401);
    assert.equal(await errorCode(wrong), 'auth.invalid_credentials');
    const res = await link(alice, aliceKey);
    assert.equal(res.status, 201);
    const wallet = await json<{ address: string; chainId: number }>(res);
    assert.equal(wallet.address, addressOfSecretKey(aliceKey));
    assert.equal(wallet.chainId, 1);
    const list = await json<{ wallets: { address: string }[] }>(
      await t.request('/api/v1/wallets', { as: alice }),
    );
    assert.deepEqual(
      list.wallets.map((w) => w.address),
      [addressOfSecretKey(aliceKey)],
    );
    const audit = await json<{ entries: { action: string; detail: { address?: string } }[] }>(
      await t.request('/api/v1/audit?action=wallet.link', { as: admin }),
    );
    assert.equal(audit.entries[0]?.detail.address, addressOfSecretKey(aliceKey));
  });

  test('a wallet linked to one user cannot be linked to another', { timeout: 30_000 }, async () => {
    const bob = await t.login('bob');
    const res = await link(bob, aliceKey);
    assert.equal(res.status, 409);
    assert.equal(await errorCode(res), 'wallet.linked');
  });

  test(
    "a linking nonce is bound to its user: another user's nonce is refused",
    { timeout: 30_000 },
    async () => {
      const bob = await t.login('bob');
      const challenge = await json<Challenge>(
        await t.request('/api/v1/wallets/challenge', { method: 'POST', as: alice }),
      );
      const message = messageFor(challenge, otherKey);
      const res = await t.request('/api/v1/wallets', {
        method: 'POST',
        as: bob,
        json: { message, signature: signPersonalMessage(message, otherKey), password: TEST_PASSWORD },
      });
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'wallet.nonce_invalid');
    },
  );
});

describe('sign-in', () => {
  test('a valid signed message signs in the linked user, once per nonce', { timeout: 30_000 }, async () => {
    const challenge = await loginChallenge();
    const message = messageFor(challenge, aliceKey);
    const signature = signPersonalMessage(message, aliceKey);
    const res = await walletLogin(message, signature);
    assert.equal(res.status, 200);
    const body = await json<{ user: { username: string }; stage: string; csrfToken: string }>(res);
    assert.equal(body.user.username, 'alice');
    assert.equal(body.stage, 'ok');
    const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
    const session = await t.request('/api/v1/auth/session', { headers: { cookie } });
    assert.equal(session.status, 200);
    // Replayed: the same message and signature again.
    const replay = await walletLogin(message, signature);
    assert.equal(replay.status, 401);
    assert.equal(await errorCode(replay), 'wallet.nonce_invalid');
    const audit = await json<{ entries: { action: string; detail: { method?: string } }[] }>(
      await t.request('/api/v1/audit?action=auth.login', { as: admin }),
    );
    assert.ok(audit.entries.some((e) => e.detail.method === 'wallet'));
    const list = await json<{ wallets: { lastUsedAt: string | null }[] }>(
      await t.request('/api/v1/wallets', { as: alice }),
    );
    assert.equal(list.wallets[0]?.lastUsedAt, clock.toISOString());
  });

  test(
    'naming the wallet gets the whole message to sign (what the console does)',
    { timeout: 30_000 },
    async () => {
      advance(900);
      const address = addressOfSecretKey(aliceKey); // lower case, as wallets often answer
      const res = await t.request('/api/v1/auth/wallet/challenge', {
        method: 'POST',
        json: { address, chainId: 10 },
        ip: '198.51.100.20',
      });
      const challenge = await json<Challenge & { message: string }>(res);
      assert.match(challenge.message, new RegExp(`\n${addressOf(aliceKey)}\n`), 'checksummed');
      assert.match(challenge.message, /\nChain ID: 10\n/);
      assert.match(challenge.message, new RegExp(`\nNonce: ${challenge.nonce}\n`));
      const ok = await walletLogin(
        challenge.message,
        signPersonalMessage(challenge.message, aliceKey),
        '198.51.100.20',
      );
      assert.equal(ok.status, 200);
      const refused = await t.request('/api/v1/auth/wallet/challenge', {
        method: 'POST',
        json: { address, chainId: 5 },
        ip: '198.51.100.20',
      });
      assert.equal(await errorCode(refused), 'wallet.chain_not_allowed');
    },
  );

  test('a message for another domain, URI, scheme or chain is refused', { timeout: 30_000 }, async () => {
    advance(900); // past the replay's failure above
    const cases: [Partial<SiweMessage>, string][] = [
      [{ domain: 'evil.example.com' }, 'wallet.domain_mismatch'],
      [{ domain: 'keel.example.com:8443' }, 'wallet.domain_mismatch'],
      [{ uri: 'https://evil.example.com/login' }, 'wallet.domain_mismatch'],
      [{ scheme: 'http' }, 'wallet.domain_mismatch'],
      [{ chainId: 5 }, 'wallet.chain_not_allowed'],
    ];
    for (const [changes, code] of cases) {
      const res = await signInWith(aliceKey, changes, aliceKey, '198.51.100.1');
      assert.equal(res.status, 401, JSON.stringify(changes));
      assert.equal(await errorCode(res), code, JSON.stringify(changes));
    }
    advance(900); // past the wallet's 5 failures above
    const ok = await signInWith(aliceKey, { chainId: 10, scheme: 'https' }, aliceKey, '198.51.100.2');
    assert.equal(ok.status, 200, 'an allowed chain and the right scheme pass');
  });

  test(
    'an expired message, one issued too long ago or in the future, and an expired nonce are refused',
    { timeout: 30_000 },
    async () => {
      advance(900);
      const past = new Date(clock.getTime() - 1000).toISOString();
      let res = await signInWith(aliceKey, { expirationTime: past }, aliceKey, '198.51.100.3');
      assert.equal(await errorCode(res), 'wallet.expired');
      res = await signInWith(
        aliceKey,
        { issuedAt: new Date(clock.getTime() - 3_600_000).toISOString() },
        aliceKey,
        '198.51.100.3',
      );
      assert.equal(await errorCode(res), 'wallet.expired');
      res = await signInWith(
        aliceKey,
        { issuedAt: new Date(clock.getTime() + 600_000).toISOString() },
        aliceKey,
        '198.51.100.3',
      );
      assert.equal(await errorCode(res), 'wallet.expired');
      res = await signInWith(
        aliceKey,
        { notBefore: new Date(clock.getTime() + 600_000).toISOString() },
        aliceKey,
        '198.51.100.3',
      );
      assert.equal(await errorCode(res), 'wallet.expired');
      // A nonce 6 minutes old, in a message issued just now.
      advance(900);
      const challenge = await loginChallenge('198.51.100.4');
      advance(360);
      const message = messageFor(challenge, aliceKey);
      res = await walletLogin(message, signPersonalMessage(message, aliceKey), '198.51.100.4');
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'wallet.nonce_invalid');
    },
  );

  test(
    'a signature by another key, a linking nonce, a malformed message and an unlinked wallet are refused',
    { timeout: 30_000 },
    async () => {
      advance(900);
      let res = await signInWith(aliceKey, {}, otherKey, '198.51.100.5');
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'wallet.bad_signature');
      // A nonce handed out for linking cannot sign in.
      const linking = await json<Challenge>(
        await t.request('/api/v1/wallets/challenge', { method: 'POST', as: alice }),
      );
      const message = messageFor(linking, aliceKey);
      res = await walletLogin(message, signPersonalMessage(message, aliceKey), '198.51.100.5');
      assert.equal(await errorCode(res), 'wallet.nonce_invalid');
      res = await walletLogin('hello', signPersonalMessage('hello', aliceKey), '198.51.100.5');
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'wallet.invalid_message');
      res = await signInWith(strangerKey, {}, strangerKey, '198.51.100.6');
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'wallet.not_linked');
      const failed = await json<{ entries: { detail: { wallet?: string; reason?: string } }[] }>(
        await t.request('/api/v1/audit?action=auth.login_failed', { as: admin }),
      );
      assert.ok(failed.entries.some((e) => e.detail.reason === 'wallet.not_linked'));
    },
  );

  test(
    'failures are throttled like passwords: 5 for one wallet lock it (429), the owner signs in after the window',
    { timeout: 30_000 },
    async () => {
      advance(900);
      for (let i = 0; i < 5; i++) {
        const res = await signInWith(aliceKey, {}, otherKey, `203.0.113.${i + 1}`);
        assert.equal(res.status, 401);
      }
      const locked = await signInWith(aliceKey, {}, aliceKey, '203.0.113.50');
      assert.equal(locked.status, 429);
      assert.ok(Number(locked.headers.get('retry-after')) > 0);
      advance(901);
      assert.equal((await signInWith(aliceKey, {}, aliceKey, '203.0.113.50')).status, 200);
    },
  );

  test('nonces outstanding per client address are bounded', { timeout: 30_000 }, async () => {
    advance(900);
    let last = 200;
    for (let i = 0; i < 21; i++) {
      last = (await t.request('/api/v1/auth/wallet/challenge', { method: 'POST', ip: '192.0.2.99' })).status;
    }
    assert.equal(last, 429);
    advance(301); // they expire
    assert.equal(
      (await t.request('/api/v1/auth/wallet/challenge', { method: 'POST', ip: '192.0.2.99' })).status,
      200,
    );
  });

  test(
    'a user with two-factor sign-in on still owes the code after a wallet sign-in',
    { timeout: 30_000 },
    async () => {
      advance(900);
      const setup = await json<{ secret: string }>(
        await t.request('/api/v1/two-factor/setup', {
          method: 'POST',
          json: { password: TEST_PASSWORD },
          as: alice,
        }),
      );
      const code = await generate({ secret: setup.secret, epoch: Math.floor(clock.getTime() / 1000) });
      assert.equal(
        (await t.request('/api/v1/two-factor/confirm', { method: 'POST', json: { code }, as: alice })).status,
        200,
      );
      advance(60);
      const res = await signInWith(aliceKey, {}, aliceKey, '198.51.100.7');
      assert.equal(res.status, 200);
      const body = await json<{ stage: string; csrfToken: string; user: { id: string } }>(res);
      assert.equal(body.stage, 'second-factor');
      const who = {
        cookie: res.headers.get('set-cookie')!.split(';')[0]!,
        csrfToken: body.csrfToken,
        userId: body.user.id,
      };
      assert.equal((await t.request('/api/v1/hosts', { as: who })).status, 403);
      const next = await generate({ secret: setup.secret, epoch: Math.floor(clock.getTime() / 1000) });
      assert.equal(
        (await t.request('/api/v1/auth/two-factor', { method: 'POST', json: { code: next }, as: who }))
          .status,
        200,
      );
      assert.equal((await t.request('/api/v1/hosts', { as: who })).status, 200);
    },
  );
});

describe('unlinking', () => {
  test(
    'the user unlinks; then the wallet no longer signs in; an admin can unlink too',
    { timeout: 30_000 },
    async () => {
      advance(900);
      const bob = await t.login('bob');
      assert.equal((await link(bob, otherKey)).status, 201);
      // Bob cannot unlink Alice's wallet through his own route.
      const notHis = await t.request(`/api/v1/wallets/${addressOf(aliceKey)}`, { method: 'DELETE', as: bob });
      assert.equal(notHis.status, 404);
      // Alice's session from before her 2FA enrollment is still signed in.
      assert.equal(
        (await t.request(`/api/v1/wallets/${addressOf(aliceKey)}`, { method: 'DELETE', as: alice })).status,
        204,
      );
      const res = await signInWith(aliceKey, {}, aliceKey, '198.51.100.8');
      assert.equal(await errorCode(res), 'wallet.not_linked');
      // An admin unlinks Bob's wallet.
      const list = await json<{ wallets: { address: string }[] }>(
        await t.request(`/api/v1/wallets/users/${bob.userId}`, { as: admin }),
      );
      assert.equal(list.wallets.length, 1);
      assert.equal(
        (
          await t.request(`/api/v1/wallets/users/${bob.userId}/${list.wallets[0]!.address}`, {
            method: 'DELETE',
            as: admin,
          })
        ).status,
        204,
      );
      assert.equal(
        await errorCode(await signInWith(otherKey, {}, otherKey, '198.51.100.9')),
        'wallet.not_linked',
      );
      const audit = await json<{ entries: { action: string }[] }>(
        await t.request('/api/v1/audit?action=wallet.unlink', { as: admin }),
      );
      assert.equal(audit.entries.length, 2);
    },
  );
});
