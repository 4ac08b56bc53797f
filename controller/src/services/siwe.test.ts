// Proves the EIP-4361 message parser and the personal_sign recovery: a published signature vector
// recovers its address, a message round-trips through format and parse (with and without its
// optional fields), and anything but exactly one message (wrong order, extra lines, a non-checksum
// address, a short nonce, a bad time) is refused as wallet.invalid_message.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { KeelError } from '@keel/shared';
import {
  addressOfSecretKey,
  formatSiweMessage,
  parseSiweMessage,
  recoverPersonalSigner,
  signPersonalMessage,
  toChecksumAddress,
  type SiweMessage,
} from './siwe.ts';

// web3.js documentation's eth.accounts.sign example: an independent vector for EIP-191 + recovery.
const VECTOR_KEY = Buffer.from('4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318', 'hex');
const VECTOR_ADDRESS = '0x2c7536E3605D9C16a7a3D7b1898e529396a65c23';
const VECTOR_SIGNATURE =
  '0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c';

const invalid = (err: unknown) => err instanceof KeelError && err.code === 'wallet.invalid_message';

const base: SiweMessage = {
  domain: 'keel.example.com',
  address: VECTOR_ADDRESS,
  statement: 'Sign in to Keel at keel.example.com.',
  uri: 'https://keel.example.com',
  version: '1',
  chainId: 1,
  nonce: '0123456789abcdef0123456789abcdef',
  issuedAt: '2026-03-01T12:00:00.000Z',
};

describe('personal_sign', () => {
  test(
    'a published vector: the key gives the address, signs to the same bytes, and recovers',
    { timeout: 5000 },
    () => {
      assert.equal(toChecksumAddress(addressOfSecretKey(VECTOR_KEY)), VECTOR_ADDRESS);
      assert.equal(signPersonalMessage('Some data', VECTOR_KEY), VECTOR_SIGNATURE);
      assert.equal(recoverPersonalSigner('Some data', VECTOR_SIGNATURE), VECTOR_ADDRESS.toLowerCase());
      // v as 0/1 (some wallets) recovers the same.
      const v01 = VECTOR_SIGNATURE.slice(0, -2) + '01';
      assert.equal(recoverPersonalSigner('Some data', v01), VECTOR_ADDRESS.toLowerCase());
    },
  );

  test(
    'another message, a flipped byte or a malformed signature does not recover the signer',
    { timeout: 5000 },
    () => {
      assert.notEqual(recoverPersonalSigner('Some datb', VECTOR_SIGNATURE), VECTOR_ADDRESS.toLowerCase());
      assert.equal(recoverPersonalSigner('Some data', VECTOR_SIGNATURE.slice(0, -2) + '05'), null);
      assert.equal(recoverPersonalSigner('Some data', '0x1234'), null);
      const key = secp256k1.utils.randomSecretKey();
      const sig = signPersonalMessage('hello', key);
      assert.equal(recoverPersonalSigner('hello', sig), addressOfSecretKey(key));
    },
  );
});

describe('EIP-4361 message', () => {
  test('format and parse round-trip, with every optional field and with none', { timeout: 5000 }, () => {
    const full: SiweMessage = {
      ...base,
      scheme: 'https',
      expirationTime: '2026-03-01T12:05:00Z',
      notBefore: '2026-03-01T11:59:00Z',
      requestId: 'req-1',
      resources: ['https://keel.example.com/a', 'ipfs://bafy'],
    };
    assert.deepEqual(parseSiweMessage(formatSiweMessage(full)), full);
    const bare: SiweMessage = { ...base };
    delete bare.statement;
    const text = formatSiweMessage(bare);
    assert.match(text, /account:\n0x[0-9a-fA-F]{40}\n\n\nURI: /);
    assert.deepEqual(parseSiweMessage(text), bare);
  });

  test('the EIP example text parses', { timeout: 5000 }, () => {
    const text = [
      'service.invalid wants you to sign in with your Ethereum account:',
      '0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2',
      '',
      'I accept the ServiceOrg Terms of Service: https://service.invalid/tos',
      '',
      'URI: https://service.invalid/login',
      'Version: 1',
      'Chain ID: 1',
      'Nonce: 32891756',
      'Issued At: 2021-09-30T16:25:24Z',
      'Resources:',
      '- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/',
      '- https://example.com/my-web2-claim.json',
    ].join('\n');
    const m = parseSiweMessage(text);
    assert.equal(m.domain, 'service.invalid');
    assert.equal(m.nonce, '32891756');
    assert.equal(m.resources?.length, 2);
  });

  test('anything else is refused', { timeout: 5000 }, () => {
    const good = formatSiweMessage(base);
    const cases: [string, string][] = [
      ['extra line at the end', `${good}\nEvil: yes`],
      ['lower-case (non-checksum) address', good.replace(VECTOR_ADDRESS, VECTOR_ADDRESS.toLowerCase())],
      ['wrong checksum', good.replace('0x2c7536E3', '0x2C7536E3')],
      ['fields out of order', good.replace('Version: 1\nChain ID: 1', 'Chain ID: 1\nVersion: 1')],
      ['short nonce', good.replace(base.nonce, 'abc123')],
      ['nonce with punctuation', good.replace(base.nonce, 'abcdefgh-123')],
      ['bad time', good.replace(base.issuedAt, 'yesterday')],
      ['version 2', good.replace('Version: 1', 'Version: 2')],
      ['chain id 0', good.replace('Chain ID: 1', 'Chain ID: 0')],
      ['no header', good.replace(' wants you to sign in', ' would like you to sign in')],
      ['domain with a path', good.replace('keel.example.com wants', 'keel.example.com/x wants')],
      ['CRLF line ends', good.replace(/\n/g, '\r\n')],
      ['missing blank line', good.replace(`${VECTOR_ADDRESS}\n\n`, `${VECTOR_ADDRESS}\n`)],
      ['URI not a URI', good.replace('URI: https://keel.example.com', 'URI: not a uri')],
    ];
    for (const [why, text] of cases) assert.throws(() => parseSiweMessage(text), invalid, why);
  });
});
