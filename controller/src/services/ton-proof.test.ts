// Proves the ton_proof check with real wallets: an ed25519 key, the real wallet v4r2 (v3r2, v5r1)
// contract code with that key in its data, the address that StateInit hashes to, and a proof signed
// as a TON Connect wallet signs it. A good proof passes with the raw and the user-friendly address;
// another domain, an old or a future timestamp, another key's signature, an address that is not the
// StateInit's, a key that is not the one in the data, an unknown contract and a friendly address
// with a broken checksum are refused with their wallet.* codes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { Address, beginCell, Cell, contractAddress, storeStateInit } from '@ton/core';
import { KeelError } from '@keel/shared';
import { parseTonAddress, tonProofSignedBytes, verifyTonProof, type TonProofInput } from './ton-proof.ts';
import {
  tonWallet,
  WALLET_V3R2_CODE,
  WALLET_V4R2_CODE,
  WALLET_V5R1_CODE,
} from '../../../test/helpers/ton-wallet.ts';

const DOMAIN = 'keel.example.com';
const NOW = new Date('2026-03-01T12:00:00Z');
const expect = { domain: DOMAIN, now: NOW, maxAgeMs: 5 * 60_000, clockSkewMs: 60_000 };
const code = (err: unknown) => (err instanceof KeelError ? err.code : String(err));
const refused = (input: TonProofInput, wanted: string) =>
  assert.throws(
    () => verifyTonProof(input, expect),
    (err) => code(err) === wanted,
  );

describe('ton_proof', () => {
  const w = tonWallet('v4r2');
  const good = w.prove({ domain: DOMAIN, timestamp: NOW.getTime() / 1000 - 10, payload: 'a'.repeat(32) });

  test('a proof by a real v4r2 wallet passes, raw or user-friendly address', { timeout: 5000 }, () => {
    const out = verifyTonProof(good, expect);
    assert.equal(out.address, `0:${w.address.hash.toString('hex')}`);
    assert.equal(out.wallet, 'v4r2');
    assert.equal(out.payload, 'a'.repeat(32));
    assert.equal(out.chainId, -239);
    for (const friendly of [
      w.address.toString({ bounceable: false, urlSafe: true }),
      w.address.toString({ bounceable: true, urlSafe: false }),
      w.address.toString({ bounceable: false, testOnly: true }),
    ]) {
      assert.equal(verifyTonProof({ ...good, address: friendly }, expect).address, out.address);
    }
  });

  test('v3r2 and v5r1 wallets pass too (the key read from their own data layout)', { timeout: 5000 }, () => {
    for (const version of ['v3r2', 'v5r1'] as const) {
      const other = tonWallet(version);
      const p = other.prove({ domain: DOMAIN, timestamp: NOW.getTime() / 1000, payload: 'n1' });
      assert.equal(verifyTonProof(p, expect).wallet, version);
      // Another key claimed: not the one in this layout's data.
      refused({ ...p, publicKey: w.publicKeyHex }, 'wallet.address_mismatch');
    }
  });

  test('the signed bytes follow the spec: another domain, time or payload changes them', () => {
    const a = tonProofSignedBytes(w.address, DOMAIN, 1, 'x');
    assert.equal(a.length, 32);
    assert.notDeepEqual(tonProofSignedBytes(w.address, 'keel.example.org', 1, 'x'), a);
    assert.notDeepEqual(tonProofSignedBytes(w.address, DOMAIN, 2, 'x'), a);
    assert.notDeepEqual(tonProofSignedBytes(w.address, DOMAIN, 1, 'y'), a);
  });

  test('a proof for another domain is refused', { timeout: 5000 }, () => {
    const p = w.prove({ domain: 'evil.example.com', timestamp: NOW.getTime() / 1000, payload: 'n' });
    refused(p, 'wallet.domain_mismatch');
    // The right domain written over a proof signed for another one: the signature fails.
    refused(
      { ...p, proof: { ...p.proof, domain: { lengthBytes: 16, value: DOMAIN } } },
      'wallet.bad_signature',
    );
    // A domain length that lies about the domain.
    refused(
      { ...good, proof: { ...good.proof, domain: { lengthBytes: 3, value: DOMAIN } } },
      'wallet.invalid_message',
    );
  });

  test('an old proof and one from the future are refused', { timeout: 5000 }, () => {
    const t = NOW.getTime() / 1000;
    refused(w.prove({ domain: DOMAIN, timestamp: t - 7 * 60, payload: 'n' }), 'wallet.expired');
    refused(w.prove({ domain: DOMAIN, timestamp: t + 5 * 60, payload: 'n' }), 'wallet.expired');
    // Inside the clock skew: accepted.
    verifyTonProof(w.prove({ domain: DOMAIN, timestamp: t + 30, payload: 'n' }), expect);
  });

  test('a signature by another key is refused', { timeout: 5000 }, () => {
    const other = ed25519.utils.randomSecretKey();
    const sig = ed25519.sign(
      tonProofSignedBytes(w.address, DOMAIN, good.proof.timestamp, good.proof.payload),
      other,
    );
    refused(
      { ...good, proof: { ...good.proof, signature: Buffer.from(sig).toString('base64') } },
      'wallet.bad_signature',
    );
    // Another payload under the good signature.
    refused({ ...good, proof: { ...good.proof, payload: 'b'.repeat(32) } }, 'wallet.bad_signature');
  });

  test(
    "an address that is not the StateInit's, or a key not in its data, is refused",
    { timeout: 5000 },
    () => {
      const other = tonWallet('v4r2');
      // Another wallet's address with this wallet's StateInit and signature.
      refused({ ...good, address: other.address.toRawString() }, 'wallet.address_mismatch');
      // Another wallet's StateInit (its address checks out) but signed by this key: the key is not its.
      const p = other.prove({ domain: DOMAIN, timestamp: good.proof.timestamp, payload: 'n' });
      const forged = w.prove({
        domain: DOMAIN,
        timestamp: good.proof.timestamp,
        payload: 'n',
        address: other.address,
      });
      refused(
        { ...forged, proof: { ...forged.proof, stateInit: p.proof.stateInit } },
        'wallet.address_mismatch',
      );
      // The right StateInit and address, but a public key claimed that is not the wallet's.
      refused({ ...good, publicKey: other.publicKeyHex }, 'wallet.address_mismatch');
    },
  );

  test('an unknown contract, a broken BOC and a bad checksum are refused', { timeout: 5000 }, () => {
    const data = beginCell().storeUint(0, 64).storeBuffer(Buffer.from(w.publicKeyHex, 'hex')).endCell();
    const init = { code: beginCell().storeUint(42, 32).endCell(), data };
    const address = contractAddress(0, init);
    const stateInit = beginCell().store(storeStateInit(init)).endCell().toBoc().toString('base64');
    const p = w.prove({ domain: DOMAIN, timestamp: good.proof.timestamp, payload: 'n', address });
    refused({ ...p, proof: { ...p.proof, stateInit } }, 'wallet.unsupported_wallet');
    refused({ ...good, proof: { ...good.proof, stateInit: 'AAAA' } }, 'wallet.invalid_message');
    const friendly = w.address.toString({ bounceable: false, urlSafe: true });
    const last = friendly.at(-1) === 'A' ? 'B' : 'A';
    assert.equal(parseTonAddress(friendly.slice(0, -1) + last), null);
    refused({ ...good, address: friendly.slice(0, -1) + last }, 'wallet.invalid_message');
    refused({ ...good, network: '1' }, 'wallet.invalid_message');
  });

  test('the fixtures are the real contracts (their code hashes)', () => {
    assert.equal(
      Cell.fromBoc(Buffer.from(WALLET_V4R2_CODE, 'base64'))[0]!.hash().toString('hex'),
      'feb5ff6820e2ff0d9483e7e0d62c817d846789fb4ae580c878866d959dabd5c0',
    );
    assert.equal(
      Cell.fromBoc(Buffer.from(WALLET_V3R2_CODE, 'base64'))[0]!.hash().toString('hex'),
      '84dafa449f98a6987789ba232358072bc0f76dc4524002a5d0918b9a75d2d599',
    );
    assert.equal(
      Cell.fromBoc(Buffer.from(WALLET_V5R1_CODE, 'base64'))[0]!.hash().toString('hex'),
      '20834b7b72b112147e1b2fb457b84e74d1a30f04f737d4f62a668e9552d2b72f',
    );
    assert.ok(Address.isRaw(w.address.toRawString()));
  });
});
