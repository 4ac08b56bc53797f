// Sign-In with Ethereum (EIP-4361): the message format and the personal_sign (EIP-191) signature.
// Parsing follows the EIP's ABNF strictly — one field per line, in order, nothing else — because a
// lenient parser is where such schemes break (two messages that read differently to the wallet
// and to the server). The signature is checked with @noble/curves (secp256k1 public key
// recovery) and @noble/hashes (keccak-256), audited libraries; the `siwe` package would pull in
// ethers or viem for the same two operations. Contract wallets (EIP-1271) are not supported: they
// need an RPC call to the chain, and Keel verifies locally.
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { KeelError } from '@keel/shared';

/** The fields of an EIP-4361 message. */
export interface SiweMessage {
  /** `[scheme://]host[:port]` as written (the scheme is optional in the EIP). */
  scheme?: string;
  domain: string;
  /** EIP-55 checksummed address as written. */
  address: string;
  statement?: string;
  uri: string;
  version: string;
  chainId: number;
  nonce: string;
  issuedAt: string;
  expirationTime?: string;
  notBefore?: string;
  requestId?: string;
  resources?: string[];
}

const HEADER = ' wants you to sign in with your Ethereum account:';
// RFC 3339 date-time, as the EIP requires for its three time fields.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

function invalid(why: string): KeelError {
  return new KeelError('wallet.invalid_message', `Not an EIP-4361 message: ${why}.`);
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** The EIP-55 mixed-case checksum form of a 20-byte hex address. */
export function toChecksumAddress(address: string): string {
  const lower = address.toLowerCase().replace(/^0x/, '');
  const hash = hex(keccak_256(new TextEncoder().encode(lower)));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i]!, 16) >= 8 ? lower[i]!.toUpperCase() : lower[i]!;
  return out;
}

/** The address (lower case) a public key (65-byte uncompressed) controls. */
export function addressOfPublicKey(uncompressed: Uint8Array): string {
  return `0x${hex(keccak_256(uncompressed.subarray(1)).subarray(12))}`;
}

/**
 * Parses an EIP-4361 message; throws `wallet.invalid_message` for anything that is not exactly one.
 *
 * @example parseSiweMessage(text).nonce
 */
export function parseSiweMessage(text: string): SiweMessage {
  if (text.length > 8192) throw invalid('too long');
  const lines = text.split('\n');
  let i = 0;
  const next = () => lines[i++];
  const header = next() ?? '';
  if (!header.endsWith(HEADER)) throw invalid('the first line is not "<domain> wants you to sign in…"');
  let authority = header.slice(0, -HEADER.length);
  let scheme: string | undefined;
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//i.exec(authority);
  if (schemeMatch) {
    scheme = schemeMatch[1]!.toLowerCase();
    authority = authority.slice(schemeMatch[0].length);
  }
  if (!/^[a-z0-9.-]+(:\d{1,5})?$/i.test(authority)) throw invalid('the domain is not a host[:port]');
  const address = next() ?? '';
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw invalid('the second line is not an address');
  if (address !== toChecksumAddress(address)) throw invalid('the address is not in its EIP-55 checksum form');
  if (next() !== '') throw invalid('no empty line after the address');
  let statement: string | undefined;
  if (lines[i] !== '') {
    statement = next()!;
    if (statement.startsWith('URI: ')) throw invalid('no empty line before the fields');
  }
  if (next() !== '') throw invalid('no empty line before the fields');

  const field = (name: string, optional: boolean): string | undefined => {
    const line = lines[i];
    if (line?.startsWith(`${name}: `)) {
      i++;
      return line.slice(name.length + 2);
    }
    if (!optional) throw invalid(`"${name}:" missing or out of order`);
    return undefined;
  };
  const uri = field('URI', false)!;
  const version = field('Version', false)!;
  const chainIdText = field('Chain ID', false)!;
  const nonce = field('Nonce', false)!;
  const issuedAt = field('Issued At', false)!;
  const expirationTime = field('Expiration Time', true);
  const notBefore = field('Not Before', true);
  const requestId = field('Request ID', true);
  let resources: string[] | undefined;
  if (lines[i] === 'Resources:') {
    i++;
    resources = [];
    while (i < lines.length && lines[i]!.startsWith('- ')) resources.push(lines[i++]!.slice(2));
  }
  if (i !== lines.length) throw invalid(`unexpected line ${i + 1}`);

  try {
    new URL(uri);
  } catch {
    throw invalid('the URI is not a URI');
  }
  if (version !== '1') throw invalid('the version is not 1');
  if (!/^[1-9]\d{0,15}$/.test(chainIdText)) throw invalid('the chain id is not a number');
  if (!/^[a-zA-Z0-9]{8,}$/.test(nonce)) throw invalid('the nonce is not 8 or more letters and digits');
  for (const [name, value] of [
    ['Issued At', issuedAt],
    ['Expiration Time', expirationTime],
    ['Not Before', notBefore],
  ] as const) {
    if (value !== undefined && (!DATE_TIME.test(value) || Number.isNaN(Date.parse(value)))) {
      throw invalid(`"${name}" is not an RFC 3339 time`);
    }
  }
  return {
    ...(scheme ? { scheme } : {}),
    domain: authority,
    address,
    ...(statement !== undefined ? { statement } : {}),
    uri,
    version,
    chainId: Number(chainIdText),
    nonce,
    issuedAt,
    ...(expirationTime !== undefined ? { expirationTime } : {}),
    ...(notBefore !== undefined ? { notBefore } : {}),
    ...(requestId !== undefined ? { requestId } : {}),
    ...(resources !== undefined ? { resources } : {}),
  };
}

/** Writes the message text for `fields` (what a wallet is asked to sign). */
export function formatSiweMessage(m: SiweMessage): string {
  const lines = [
    `${m.scheme ? `${m.scheme}://` : ''}${m.domain}${HEADER}`,
    m.address,
    '',
    ...(m.statement !== undefined ? [m.statement] : []),
    '',
    `URI: ${m.uri}`,
    `Version: ${m.version}`,
    `Chain ID: ${m.chainId}`,
    `Nonce: ${m.nonce}`,
    `Issued At: ${m.issuedAt}`,
  ];
  if (m.expirationTime !== undefined) lines.push(`Expiration Time: ${m.expirationTime}`);
  if (m.notBefore !== undefined) lines.push(`Not Before: ${m.notBefore}`);
  if (m.requestId !== undefined) lines.push(`Request ID: ${m.requestId}`);
  if (m.resources !== undefined) lines.push('Resources:', ...m.resources.map((r) => `- ${r}`));
  return lines.join('\n');
}

/** keccak-256 of the EIP-191 personal message ("\x19Ethereum Signed Message:\n" + length + message). */
export function personalMessageHash(message: string): Uint8Array {
  const body = new TextEncoder().encode(message);
  const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${body.length}`);
  const all = new Uint8Array(prefix.length + body.length);
  all.set(prefix);
  all.set(body, prefix.length);
  return keccak_256(all);
}

/**
 * The address (lower case) that made a personal_sign signature (`0x` + r + s + v, 65 bytes, v 27/28
 * or 0/1) over `message`, or null when the signature is malformed or recovers no key.
 */
export function recoverPersonalSigner(message: string, signature: string): string | null {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) return null;
  const raw = Buffer.from(signature.slice(2), 'hex');
  const v = raw[64]!;
  const recovery = v >= 27 ? v - 27 : v;
  if (recovery !== 0 && recovery !== 1) return null;
  // noble's "recovered" layout is the recovery bit first, then r and s.
  const sig = new Uint8Array(65);
  sig[0] = recovery;
  sig.set(raw.subarray(0, 64), 1);
  try {
    const publicKey = secp256k1.recoverPublicKey(sig, personalMessageHash(message), { prehash: false });
    return addressOfPublicKey(secp256k1.Point.fromBytes(publicKey).toBytes(false));
  } catch {
    return null;
  }
}

/**
 * Signs `message` as a wallet's personal_sign would (tests and the CLI's own checks).
 *
 * @example signPersonalMessage(message, secp256k1.utils.randomSecretKey())
 */
export function signPersonalMessage(message: string, secretKey: Uint8Array): string {
  const sig = secp256k1.sign(personalMessageHash(message), secretKey, {
    prehash: false,
    format: 'recovered',
  });
  const out = Buffer.alloc(65);
  Buffer.from(sig.subarray(1)).copy(out, 0);
  out[64] = sig[0]! + 27;
  return `0x${out.toString('hex')}`;
}

/** The address (lower case) of a secp256k1 secret key. */
export function addressOfSecretKey(secretKey: Uint8Array): string {
  return addressOfPublicKey(secp256k1.getPublicKey(secretKey, false));
}
