// Proves TON wallet sign-in (ton_proof) end to end through the API, with real ed25519 keys and real
// wallet v4r2 StateInits made in the test: a user links a TON wallet with their password and a
// proof over a linking nonce (audited); that wallet signs in, with its raw or user-friendly address;
// a replayed or unknown nonce, a proof for another domain, an expired or future timestamp, a
// signature by another key, an address that is not the StateInit's, a login nonce used to link and
// an unlinked wallet are refused with their wallet.* codes (and audited as failed sign-ins);
// unlinking stops it. The Ethereum side is test/access-wallet.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import type { TonProofInput } from '../controller/src/services/ton-proof.ts';
import { tonWallet } from './helpers/ton-wallet.ts';

const DOMAIN = 'keel.example.com';
let t: TestApp;
let clock = new Date('2026-03-01T12:00:00Z');
const advance = (seconds: number) => (clock = new Date(clock.getTime() + seconds * 1000));
const seconds = () => Math.floor(clock.getTime() / 1000);
let admin: SignedIn;
let alice: SignedIn;
const aliceWallet = tonWallet('v4r2');
const otherWallet = tonWallet('v4r2');
const rawOf = (w: typeof aliceWallet) => w.address.toRawString();

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}
async function errorCode(res: Response): Promise<string> {
  return (await json<{ error: { code: string } }>(res)).error.code;
}

async function loginNonce(ip: string): Promise<string> {
  const res = await t.request('/api/v1/auth/wallet/challenge', { method: 'POST', ip });
  assert.equal(res.status, 200);
  return (await json<{ nonce: string }>(res)).nonce;
}
function tonLogin(proof: TonProofInput, ip: string) {
  return t.request('/api/v1/auth/wallet/ton/login', { method: 'POST', json: proof, ip });
}
async function linkNonce(who: SignedIn): Promise<string> {
  const res = await t.request('/api/v1/wallets/challenge', { method: 'POST', as: who });
  assert.equal(res.status, 200);
  return (await json<{ nonce: string }>(res)).nonce;
}
function linkTon(who: SignedIn, proof: TonProofInput, password = TEST_PASSWORD) {
  return t.request('/api/v1/wallets/ton', { method: 'POST', as: who, json: { ...proof, password } });
}

before(async () => {
  t = await openTestApp({ now: () => clock, publicUrl: `https://${DOMAIN}` });
  admin = await t.signInAs('owner');
  await t.createUser('alice', 'operator');
  alice = await t.login('alice');
  const res = await t.request('/api/v1/wallets/policy', {
    method: 'PUT',
    as: admin,
    json: { enabled: true, chainIds: [1] },
  });
  assert.equal(res.status, 200);
});
after(async () => {
  await t.close();
});

describe('TON wallet', () => {
  test(
    'linking needs the password and a proof over a linking nonce; audited',
    { timeout: 30_000 },
    async () => {
      // A login nonce does not link.
      let proof = aliceWallet.prove({
        domain: DOMAIN,
        timestamp: seconds(),
        payload: await loginNonce('198.51.100.9'),
      });
      let res = await linkTon(alice, proof);
      assert.equal(res.status, 401);
      assert.equal(await errorCode(res), 'wallet.nonce_invalid');
      proof = aliceWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: await linkNonce(alice) });
      res = await linkTon(alice, proof, 'not the password');
      assert.equal(await errorCode(res), 'auth.invalid_credentials');
      proof = aliceWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: await linkNonce(alice) });
      res = await linkTon(alice, proof);
      assert.equal(res.status, 201);
      const wallet = await json<{ kind: string; address: string; chainId: number }>(res);
      assert.deepEqual(
        { kind: wallet.kind, address: wallet.address, chainId: wallet.chainId },
        { kind: 'ton', address: rawOf(aliceWallet), chainId: -239 },
      );
      const list = await json<{ wallets: { kind: string; address: string }[] }>(
        await t.request('/api/v1/wallets', { as: alice }),
      );
      assert.deepEqual(
        list.wallets.map((w) => w.address),
        [rawOf(aliceWallet)],
      );
      const audit = await json<{ entries: { detail: { kind?: string; address?: string } }[] }>(
        await t.request('/api/v1/audit?action=wallet.link', { as: admin }),
      );
      assert.deepEqual(audit.entries[0]?.detail.kind, 'ton');
      assert.equal(audit.entries[0]?.detail.address, rawOf(aliceWallet));
    },
  );

  test(
    'a valid proof signs in, once per nonce, raw or user-friendly address',
    { timeout: 30_000 },
    async () => {
      const proof = aliceWallet.prove({
        domain: DOMAIN,
        timestamp: seconds(),
        payload: await loginNonce('198.51.100.10'),
      });
      const res = await tonLogin(proof, '198.51.100.10');
      assert.equal(res.status, 200);
      const body = await json<{ user: { username: string }; stage: string }>(res);
      assert.equal(body.user.username, 'alice');
      assert.equal(body.stage, 'ok');
      const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
      assert.equal((await t.request('/api/v1/auth/session', { headers: { cookie } })).status, 200);
      const replay = await tonLogin(proof, '198.51.100.10');
      assert.equal(replay.status, 401);
      assert.equal(await errorCode(replay), 'wallet.nonce_invalid');
      const friendly = aliceWallet.prove({
        domain: DOMAIN,
        timestamp: seconds(),
        payload: await loginNonce('198.51.100.11'),
      });
      friendly.address = aliceWallet.address.toString({ bounceable: false, urlSafe: true });
      assert.equal((await tonLogin(friendly, '198.51.100.11')).status, 200);
      const audit = await json<{ entries: { detail: { method?: string; address?: string } }[] }>(
        await t.request('/api/v1/audit?action=auth.login', { as: admin }),
      );
      assert.ok(
        audit.entries.some((e) => e.detail.method === 'wallet' && e.detail.address === rawOf(aliceWallet)),
      );
    },
  );

  test(
    'a wrong domain, an old or future timestamp and an unknown nonce are refused',
    { timeout: 30_000 },
    async () => {
      advance(900); // past the replay's failure above
      const cases: [string, (nonce: string) => TonProofInput, string][] = [
        [
          'another domain',
          (n) => aliceWallet.prove({ domain: 'evil.example.com', timestamp: seconds(), payload: n }),
          'wallet.domain_mismatch',
        ],
        [
          'signed 10 minutes ago',
          (n) => aliceWallet.prove({ domain: DOMAIN, timestamp: seconds() - 600, payload: n }),
          'wallet.expired',
        ],
        [
          'signed 10 minutes ahead',
          (n) => aliceWallet.prove({ domain: DOMAIN, timestamp: seconds() + 600, payload: n }),
          'wallet.expired',
        ],
        [
          'a nonce never issued',
          () => aliceWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: 'f'.repeat(32) }),
          'wallet.nonce_invalid',
        ],
      ];
      for (const [what, make, code] of cases) {
        const res = await tonLogin(make(await loginNonce('198.51.100.12')), '198.51.100.12');
        assert.equal(res.status, 401, what);
        assert.equal(await errorCode(res), code, what);
      }
      const audit = await json<{ entries: { detail: { wallet?: string; reason?: string } }[] }>(
        await t.request('/api/v1/audit?action=auth.login_failed', { as: admin }),
      );
      assert.ok(
        audit.entries.some(
          (e) => e.detail.wallet === rawOf(aliceWallet) && e.detail.reason === 'wallet.domain_mismatch',
        ),
      );
    },
  );

  test(
    "another key's signature and an address not the StateInit's are refused",
    { timeout: 30_000 },
    async () => {
      advance(900);
      // Signed by another wallet's key, claiming alice's wallet (its StateInit and key).
      const forged = otherWallet.prove({
        domain: DOMAIN,
        timestamp: seconds(),
        payload: await loginNonce('198.51.100.13'),
        address: aliceWallet.address,
      });
      let res = await tonLogin(
        {
          ...forged,
          publicKey: aliceWallet.publicKeyHex,
          proof: { ...forged.proof, stateInit: aliceWallet.stateInit },
        },
        '198.51.100.13',
      );
      assert.equal(await errorCode(res), 'wallet.bad_signature');
      // The other wallet's own StateInit and key, but alice's address.
      res = await tonLogin({ ...forged }, '198.51.100.13');
      assert.equal(await errorCode(res), 'wallet.address_mismatch');
      // A refused proof does not use its nonce up: alice's own proof over the same nonce signs in.
      const ok = aliceWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: forged.proof.payload });
      assert.equal((await tonLogin(ok, '198.51.100.13')).status, 200);
    },
  );

  test('an unlinked wallet is refused; unlinking stops sign-in (audited)', { timeout: 30_000 }, async () => {
    advance(900);
    let res = await tonLogin(
      otherWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: await loginNonce('198.51.100.15') }),
      '198.51.100.15',
    );
    assert.equal(await errorCode(res), 'wallet.not_linked');
    res = await t.request(`/api/v1/wallets/${rawOf(aliceWallet)}`, { method: 'DELETE', as: alice });
    assert.equal(res.status, 204);
    res = await tonLogin(
      aliceWallet.prove({ domain: DOMAIN, timestamp: seconds(), payload: await loginNonce('198.51.100.16') }),
      '198.51.100.16',
    );
    assert.equal(await errorCode(res), 'wallet.not_linked');
    const audit = await json<{ entries: { detail: { address?: string } }[] }>(
      await t.request('/api/v1/audit?action=wallet.unlink', { as: admin }),
    );
    assert.equal(audit.entries[0]?.detail.address, rawOf(aliceWallet));
  });
});
