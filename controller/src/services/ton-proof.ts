// TON wallet sign-in: checks a TON Connect `ton_proof` locally (no network, no TON Connect SDK).
// What the wallet signed (TON Connect spec, "ton_proof"):
//   message = "ton-proof-item-v2/" ++ workchain (int32 BE) ++ address hash (32 bytes)
//             ++ domain length (uint32 LE) ++ domain ++ timestamp (uint64 LE) ++ payload
//   signed  = ed25519(sha256(0xffff ++ "ton-connect" ++ sha256(message)))
// The signature alone proves the key, not the address: a TON wallet's address is the hash of its
// StateInit (code + data holding the key). So the proof carries the wallet's StateInit (a base64
// BOC); its representation hash (@ton/core) must be the address, its code a known wallet contract
// (v3r2, v4r2, v5r1, by code hash), and the key in its data the key that signed. Then the address
// is the signer's. The nonce (payload) is checked by the caller (wallets.ts), which uses it up.
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Address, Cell, CellType, contractAddress, loadStateInit } from '@ton/core';
import { KeelError } from '@keel/shared';

/** A proof as a client sends it (TON Connect's account and `ton_proof` item, camelCase). */
export interface TonProofInput {
  /** The wallet address: raw (`0:<64 hex>`) or user-friendly (base64/base64url with its CRC16). */
  address: string;
  /** TON Connect's `account.chain`: `-239` (mainnet) or `-3` (testnet). Not signed; kept as a label. */
  network?: string;
  /** The wallet's ed25519 public key (64 hex digits), TON Connect's `account.publicKey`. */
  publicKey: string;
  proof: {
    /** Seconds since the epoch, when the wallet signed. */
    timestamp: number;
    domain: { lengthBytes?: number; value: string };
    /** What the controller handed out: a sign-in nonce. */
    payload: string;
    /** base64, 64 bytes. */
    signature: string;
    /** The wallet's StateInit, a base64 BOC (TON Connect's `account.walletStateInit`). */
    stateInit: string;
  };
}

/** Known wallet contracts by code hash, and where their data keeps the public key. */
const WALLETS: Record<string, { name: 'v3r2' | 'v4r2' | 'v5r1'; keyOffsetBits: number }> = {
  // data: seqno (32) wallet_id (32) public_key (256)
  '84dafa449f98a6987789ba232358072bc0f76dc4524002a5d0918b9a75d2d599': { name: 'v3r2', keyOffsetBits: 64 },
  // data: seqno (32) wallet_id (32) public_key (256) plugins (dict)
  feb5ff6820e2ff0d9483e7e0d62c817d846789fb4ae580c878866d959dabd5c0: { name: 'v4r2', keyOffsetBits: 64 },
  // data: is_signature_allowed (1) seqno (32) wallet_id (32) public_key (256) extensions (dict)
  '20834b7b72b112147e1b2fb457b84e74d1a30f04f737d4f62a668e9552d2b72f': { name: 'v5r1', keyOffsetBits: 65 },
};

/** TON Connect network ids, stored as the wallet's chain id. */
export const TON_MAINNET = -239;
export const TON_TESTNET = -3;

export interface TonProofExpectations {
  /** The controller's public host (with its port, if any): the proof's domain must be it. */
  domain: string;
  now: Date;
  /** How old a proof may be (the nonce lifetime). */
  maxAgeMs: number;
  /** Clock difference allowed (a proof from a little in the future). */
  clockSkewMs: number;
}

export interface VerifiedTonProof {
  /** Raw form, lower case: `<workchain>:<64 hex>`. */
  address: string;
  publicKey: string;
  wallet: 'v3r2' | 'v4r2' | 'v5r1';
  chainId: number;
  payload: string;
}

const invalid = (why: string) => new KeelError('wallet.invalid_message', `Not a valid ton_proof: ${why}.`);

/** The address a proof claims, in raw form (lower case), or null when it is not an address. */
export function parseTonAddress(text: string): Address | null {
  try {
    if (Address.isRaw(text)) return Address.parseRaw(text);
    // parseFriendly checks the CRC16 and throws on a mismatch.
    if (Address.isFriendly(text)) return Address.parseFriendly(text).address;
  } catch {
    return null;
  }
  return null;
}

/** `<workchain>:<64 hex>`, the form wallets are stored under. */
export const rawTonAddress = (a: Address): string => `${a.workChain}:${a.hash.toString('hex')}`;

/** The bytes a wallet signs for a proof (the sha256 of which ed25519 signs). */
export function tonProofSignedBytes(
  address: Address,
  domain: string,
  timestamp: number,
  payload: string,
): Uint8Array {
  const domainBytes = Buffer.from(domain, 'utf8');
  const wc = Buffer.alloc(4);
  wc.writeInt32BE(address.workChain);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(domainBytes.length);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64LE(BigInt(timestamp));
  const message = Buffer.concat([
    Buffer.from('ton-proof-item-v2/', 'utf8'),
    wc,
    address.hash,
    len,
    domainBytes,
    ts,
    Buffer.from(payload, 'utf8'),
  ]);
  const full = Buffer.concat([
    Buffer.from([0xff, 0xff]),
    Buffer.from('ton-connect', 'utf8'),
    sha256(message),
  ]);
  return sha256(full);
}

/** The code hash a StateInit's code stands for (a library cell stands for the library's code). */
function codeHash(code: Cell): string {
  if (code.isExotic && code.type === CellType.Library) {
    const s = code.beginParse(true);
    s.skip(8);
    return s.loadBuffer(32).toString('hex');
  }
  return code.hash().toString('hex');
}

/**
 * Checks a proof: shape, domain, time, StateInit against the address and key, and the signature.
 * Answers the wallet; throws `wallet.invalid_message`, `wallet.domain_mismatch`, `wallet.expired`,
 * `wallet.unsupported_wallet`, `wallet.address_mismatch` or `wallet.bad_signature`. The payload is
 * returned unchecked: the caller must use it up as a nonce.
 */
export function verifyTonProof(input: TonProofInput, expect: TonProofExpectations): VerifiedTonProof {
  const address = parseTonAddress(input.address);
  if (!address) throw invalid('the address is neither raw nor user-friendly with a good checksum');
  if (!/^[0-9a-fA-F]{64}$/.test(input.publicKey)) throw invalid('the public key is not 64 hex digits');
  const publicKey = Buffer.from(input.publicKey, 'hex');
  const { proof } = input;
  const chainId =
    input.network === undefined || input.network === String(TON_MAINNET)
      ? TON_MAINNET
      : input.network === String(TON_TESTNET)
        ? TON_TESTNET
        : null;
  if (chainId === null) throw invalid('the network is neither -239 (mainnet) nor -3 (testnet)');
  if (!Number.isSafeInteger(proof.timestamp) || proof.timestamp < 0) throw invalid('bad timestamp');
  const signature = Buffer.from(proof.signature, 'base64');
  if (signature.length !== 64) throw invalid('the signature is not 64 bytes of base64');

  const domain = proof.domain.value;
  if (proof.domain.lengthBytes !== undefined && proof.domain.lengthBytes !== Buffer.byteLength(domain)) {
    throw invalid('the domain length does not match the domain');
  }
  if (domain.toLowerCase() !== expect.domain.toLowerCase()) {
    throw new KeelError('wallet.domain_mismatch', `The proof is for ${domain}, not ${expect.domain}.`);
  }
  const t = expect.now.getTime();
  const signedAt = proof.timestamp * 1000;
  if (signedAt > t + expect.clockSkewMs) {
    throw new KeelError('wallet.expired', 'The proof was signed in the future.');
  }
  if (signedAt < t - expect.maxAgeMs - expect.clockSkewMs) {
    throw new KeelError('wallet.expired', 'The proof was signed too long ago.');
  }

  let init: { code: Cell; data: Cell };
  try {
    const cells = Cell.fromBoc(Buffer.from(proof.stateInit, 'base64'));
    if (cells.length !== 1) throw new Error('one root cell expected');
    const state = loadStateInit(cells[0]!.beginParse());
    if (!state.code || !state.data) throw new Error('code and data expected');
    init = { code: state.code, data: state.data };
  } catch {
    throw invalid('the StateInit is not a BOC of a StateInit with code and data');
  }
  if (!contractAddress(address.workChain, init).hash.equals(address.hash)) {
    throw new KeelError('wallet.address_mismatch', 'The address is not the hash of the StateInit given.');
  }
  const known = WALLETS[codeHash(init.code)];
  if (!known) throw new KeelError('wallet.unsupported_wallet');
  let keyInData: Buffer;
  try {
    const s = init.data.beginParse();
    s.skip(known.keyOffsetBits);
    keyInData = s.loadBuffer(32);
  } catch {
    throw invalid(`the ${known.name} data cell is too short`);
  }
  if (!keyInData.equals(publicKey)) {
    throw new KeelError('wallet.address_mismatch', "The public key is not the one in the wallet's data.");
  }

  const signed = tonProofSignedBytes(address, domain, proof.timestamp, proof.payload);
  let ok = false;
  try {
    ok = ed25519.verify(signature, signed, publicKey);
  } catch {
    ok = false;
  }
  if (!ok) throw new KeelError('wallet.bad_signature');
  return {
    address: rawTonAddress(address),
    publicKey: input.publicKey.toLowerCase(),
    wallet: known.name,
    chainId,
    payload: proof.payload,
  };
}
