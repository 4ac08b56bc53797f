// Proves the console's reading of a pasted ton_proof: Keel's API shape, TON Connect's wallet object
// and the demo backends' snake_case all give the body POST /auth/wallet/ton/login takes; a proof
// missing its parts or naming another network is refused with a message that says what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTonProof, type TonProof } from './ton-proof.ts';

const expected: TonProof = {
  address: '0:' + 'ab'.repeat(32),
  network: '-239',
  publicKey: 'cd'.repeat(32),
  proof: {
    timestamp: 1772366400,
    domain: { lengthBytes: 16, value: 'keel.example.com' },
    payload: 'ef'.repeat(16),
    signature: 'c2ln',
    stateInit: 'te6cc',
  },
};
const { stateInit, ...signed } = expected.proof;

test('the three shapes read the same', () => {
  assert.deepEqual(parseTonProof(JSON.stringify(expected)), expected);
  const tonConnect = {
    device: { appName: 'Tonkeeper' },
    account: {
      address: expected.address,
      chain: '-239',
      walletStateInit: stateInit,
      publicKey: expected.publicKey,
    },
    connectItems: { tonProof: { name: 'ton_proof', proof: signed } },
  };
  assert.deepEqual(parseTonProof(JSON.stringify(tonConnect)), expected);
  const demo = {
    address: expected.address,
    network: '-239',
    public_key: expected.publicKey,
    proof: { ...signed, state_init: stateInit },
  };
  assert.deepEqual(parseTonProof(JSON.stringify(demo)), expected);
});

test('what is missing or wrong is named', () => {
  assert.throws(() => parseTonProof('not json'), /not JSON/);
  assert.throws(() => parseTonProof('[]'), /not a JSON object/);
  assert.throws(() => parseTonProof('{"address":"0:00"}'), /No ton_proof/);
  const noKey = { ...expected, publicKey: undefined };
  assert.throws(() => parseTonProof(JSON.stringify(noKey)), /no public key/);
  const noInit = { ...expected, proof: signed };
  assert.throws(() => parseTonProof(JSON.stringify(noInit)), /no wallet StateInit/);
  assert.throws(() => parseTonProof(JSON.stringify({ ...expected, network: '1' })), /-239/);
});
