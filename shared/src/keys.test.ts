// Proves the native key primitives match RFC vectors and tweetnacl, and that bad keys and
// signatures are rejected as `false`/null, never as exceptions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import {
  ephemeralKeyFromRaw,
  fromB64u,
  keyFingerprint,
  rawPrivateKey,
  sign,
  signingIdentityFromSeed,
  verify,
  x25519SharedSecret,
} from './keys.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('ed25519 matches RFC 8032 test vector 1', () => {
  const id = signingIdentityFromSeed(hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
  assert.equal(
    id.publicKey.toString('hex'),
    'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
  );
  const sig = sign(id.privateKey, Buffer.alloc(0));
  assert.equal(
    sig.toString('hex'),
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  );
  assert.equal(verify(id.publicKey, Buffer.alloc(0), sig), true);
});

test('X25519 matches RFC 7748 section 6.1', () => {
  const alice = ephemeralKeyFromRaw(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = ephemeralKeyFromRaw(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  assert.equal(
    alice.publicKey.toString('hex'),
    '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  );
  const shared = x25519SharedSecret(alice.privateKey, bob.publicKey);
  assert.equal(shared?.toString('hex'), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
});

test('native ed25519 and X25519 agree with tweetnacl on random inputs', () => {
  for (let i = 0; i < 20; i++) {
    const seed = randomBytes(32);
    const message = randomBytes(1 + i * 7);
    const id = signingIdentityFromSeed(seed);
    const naclPair = nacl.sign.keyPair.fromSeed(seed);
    assert.deepEqual(Buffer.from(naclPair.publicKey), id.publicKey);
    const nativeSig = sign(id.privateKey, message);
    assert.deepEqual(Buffer.from(nacl.sign.detached(message, naclPair.secretKey)), nativeSig);
    assert.equal(nacl.sign.detached.verify(message, nativeSig, naclPair.publicKey), true);

    const a = ephemeralKeyFromRaw(randomBytes(32));
    const b = ephemeralKeyFromRaw(randomBytes(32));
    assert.deepEqual(Buffer.from(nacl.scalarMult.base(rawPrivateKey(a.privateKey))), a.publicKey);
    assert.deepEqual(
      Buffer.from(nacl.scalarMult(rawPrivateKey(a.privateKey), b.publicKey)),
      x25519SharedSecret(a.privateKey, b.publicKey),
    );
  }
});

test('verify returns false for truncated, over-long and all-zero inputs without throwing', () => {
  const id = signingIdentityFromSeed(randomBytes(32));
  const msg = Buffer.from('transcript');
  const sig = sign(id.privateKey, msg);
  assert.equal(verify(id.publicKey, msg, sig.subarray(0, 63)), false);
  assert.equal(verify(id.publicKey, msg, Buffer.concat([sig, Buffer.from([0])])), false);
  assert.equal(verify(id.publicKey, msg, Buffer.alloc(0)), false);
  assert.equal(verify(Buffer.alloc(32), msg, sig), false);
  assert.equal(verify(Buffer.alloc(32), msg, Buffer.alloc(64)), false);
  assert.equal(verify(id.publicKey.subarray(0, 31), msg, sig), false);
  assert.equal(verify(Buffer.alloc(33, 1), msg, sig), false);
  const flipped = Buffer.from(sig);
  flipped[10]! ^= 1;
  assert.equal(verify(id.publicKey, msg, flipped), false);
});

test('X25519 rejects all-zero and low-order public keys', () => {
  const me = ephemeralKeyFromRaw(randomBytes(32));
  const lowOrder = [
    Buffer.alloc(32),
    hex('0100000000000000000000000000000000000000000000000000000000000000'),
    hex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
    hex('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157'),
    hex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'),
  ];
  for (const key of lowOrder) assert.equal(x25519SharedSecret(me.privateKey, key), null, key.toString('hex'));
  assert.equal(x25519SharedSecret(me.privateKey, Buffer.alloc(31, 9)), null);
});

test('fingerprint and base64url decoding are strict', () => {
  const key = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  assert.match(keyFingerprint(key), /^sha256:[A-Za-z0-9_-]{43}$/);
  assert.equal(fromB64u(key.toString('base64url'), 32)?.equals(key), true);
  assert.equal(fromB64u(key.toString('base64url') + 'A', 32), null);
  assert.equal(fromB64u('+/'.padEnd(43, 'A'), 32), null);
  assert.equal(fromB64u(key.toString('base64url') + '=', 32), null);
  assert.equal(fromB64u('!!!', 32), null);
});
