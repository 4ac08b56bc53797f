// Key handling on node:crypto's native ed25519/X25519: raw 32-byte keys (the NaCl formats) in and
// out, fingerprints for pinning, and input checks that turn bad keys into `false`, not exceptions.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';

const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** Length in bytes of raw ed25519/X25519 keys. */
export const KEY_BYTES = 32;
/** Length in bytes of an ed25519 signature. */
export const SIGNATURE_BYTES = 64;

/** A static ed25519 identity: the raw public key and the native private key. */
export interface SigningIdentity {
  publicKey: Buffer;
  privateKey: KeyObject;
}

/** Makes a fresh ed25519 identity. */
export function generateSigningIdentity(): SigningIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { publicKey: rawPublicKey(publicKey), privateKey };
}

// Public keys cross the native boundary as JWK, not DER: on Node 20 (OpenSSL 3) a DER import or
// export costs ~130-190 us, a JWK one ~10 us, which is most of a handshake's CPU (bench/connect.ts).

/** Raw 32 bytes of an ed25519 or X25519 public KeyObject. */
export function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

/** A native public key of curve `crv` from raw bytes (throws when they are not a key). */
function publicKeyFromRaw(crv: 'Ed25519' | 'X25519', raw: Uint8Array): KeyObject {
  const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv, x }, format: 'jwk' });
}

/** Raw 32-byte seed of an ed25519 or X25519 private KeyObject. */
export function rawPrivateKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(-KEY_BYTES);
}

/** Native ed25519 private key from its raw 32-byte seed. */
export function ed25519PrivateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== KEY_BYTES) throw new RangeError('ed25519 seed must be 32 bytes');
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, seed]), format: 'der', type: 'pkcs8' });
}

/** Native X25519 private key from its raw 32 bytes. */
export function x25519PrivateKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_BYTES) throw new RangeError('X25519 key must be 32 bytes');
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8, raw]), format: 'der', type: 'pkcs8' });
}

/** Native ed25519 public key from raw bytes, or null when the bytes cannot be a key. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject | null {
  if (raw.length !== KEY_BYTES) return null;
  try {
    return publicKeyFromRaw('Ed25519', raw);
  } catch {
    return null;
  }
}

/** Signs `message` with an ed25519 private key (64-byte signature). */
export function sign(privateKey: KeyObject, message: Uint8Array): Buffer {
  return nodeSign(null, message, privateKey);
}

/**
 * Verifies an ed25519 signature. Returns false (never throws) for a key or signature of the
 * wrong length, a key that is not a curve point, the all-zero key, or a bad signature.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || isAllZero(publicKey)) return false;
  const key = ed25519PublicKey(publicKey);
  if (!key) return false;
  try {
    return nodeVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** An ephemeral X25519 key pair for one handshake. */
export interface EphemeralKey {
  publicKey: Buffer;
  privateKey: KeyObject;
}

/** Makes a fresh ephemeral X25519 key pair. */
export function generateEphemeralKey(): EphemeralKey {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { publicKey: rawPublicKey(publicKey), privateKey };
}

/**
 * X25519 shared secret with a peer's raw public key. Returns null (never throws) for a key of the
 * wrong length or a low-order point (which yields the all-zero secret).
 */
export function x25519SharedSecret(privateKey: KeyObject, peerPublic: Uint8Array): Buffer | null {
  if (peerPublic.length !== KEY_BYTES) return null;
  try {
    const publicKey = publicKeyFromRaw('X25519', peerPublic);
    const secret = diffieHellman({ privateKey, publicKey });
    return isAllZero(secret) ? null : secret;
  } catch {
    return null;
  }
}

/** The fingerprint an install command pins: `sha256:` + base64url(SHA-256(raw public key)). */
export function keyFingerprint(publicKey: Uint8Array): string {
  return `sha256:${createHash('sha256').update(publicKey).digest('base64url')}`;
}

/** Constant-time-enough comparison of two fingerprints (both public values). */
export function fingerprintMatches(publicKey: Uint8Array, pin: string): boolean {
  return keyFingerprint(publicKey) === pin.trim();
}

/** base64url without padding, the text form of every key and signature on the wire. */
export function toB64u(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** Decodes base64url; returns null unless the text is canonical base64url of exactly `length` bytes. */
export function fromB64u(text: string, length: number): Buffer | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.length !== length || bytes.toString('base64url') !== text) return null;
  return bytes;
}

function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/** Ephemeral X25519 key from fixed raw bytes (test vectors only). */
export function ephemeralKeyFromRaw(raw: Uint8Array): EphemeralKey {
  const privateKey = x25519PrivateKeyFromRaw(raw);
  return { publicKey: rawPublicKey(createPublicKey(privateKey)), privateKey };
}

/** ed25519 identity from a fixed 32-byte seed (test vectors, and keys loaded from disk). */
export function signingIdentityFromSeed(seed: Uint8Array): SigningIdentity {
  const privateKey = ed25519PrivateKeyFromSeed(seed);
  return { publicKey: rawPublicKey(createPublicKey(privateKey)), privateKey };
}
