// Sealed framing: after the handshake every frame is ChaCha20-Poly1305 under a per-direction key
// and an implicit per-direction counter nonce. The counter is never sent, so a replayed, dropped,
// reordered or forged frame fails authentication at the receiver.
import { createCipheriv, createDecipheriv } from 'node:crypto';

/** Bytes of the Poly1305 tag at the end of every sealed frame. */
export const TAG_BYTES = 16;

/** Nonce for frame number `counter`: 4 zero bytes then the counter as u64 BE. */
export function counterNonce(counter: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(counter, 4);
  return nonce;
}

/** Seals outgoing frames in order. */
export class FrameSealer {
  #key: Buffer;
  #counter = 0n;
  constructor(key: Buffer) {
    if (key.length !== 32) throw new RangeError('key must be 32 bytes');
    this.#key = key;
  }
  /**
   * Seals one frame: ciphertext followed by the 16-byte tag. With `rest`, the plaintext is
   * `plaintext` then `rest` (a frame's head and its body), sealed as one frame without joining
   * them first: the result is the same bytes as `seal(concat(plaintext, rest))`.
   */
  seal(plaintext: Uint8Array, rest?: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(sealedLength(plaintext, rest));
    this.sealInto(out, plaintext, rest);
    return out;
  }

  /**
   * Seals one frame (as seal() does) into `out`, at least sealedLength() bytes, and returns the
   * bytes written. The cipher is fed SEAL_SLICE bytes at a time: each piece it hands
   * back is a small block the allocator reuses, where one large result would be fresh pages
   * (with the agent's MALLOC_MMAP_THRESHOLD_, a mapping of its own, faulted in page by page).
   */
  sealInto(out: Buffer, plaintext: Uint8Array, rest?: Uint8Array): number {
    const need = sealedLength(plaintext, rest);
    if (out.length < need) throw new RangeError(`sealInto needs ${need} bytes, has ${out.length}`);
    const cipher = createCipheriv('chacha20-poly1305', this.#key, counterNonce(this.#counter++), {
      authTagLength: TAG_BYTES,
    });
    let at = 0;
    for (const part of rest && rest.byteLength > 0 ? [plaintext, rest] : [plaintext]) {
      for (let i = 0; i < part.byteLength; i += SEAL_SLICE)
        at += cipher.update(part.subarray(i, i + SEAL_SLICE)).copy(out, at);
    }
    cipher.final();
    at += cipher.getAuthTag().copy(out, at);
    return at;
  }
}

/** Bytes the cipher is fed at once by sealInto: below glibc's smallest mmap threshold Keel sets. */
export const SEAL_SLICE = 16 * 1024;

/** Bytes of the sealed frame for `plaintext` then `rest`. */
export function sealedLength(plaintext: Uint8Array, rest?: Uint8Array): number {
  return plaintext.byteLength + (rest?.byteLength ?? 0) + TAG_BYTES;
}

/** Opens incoming frames in order; any failure is final for the session. */
export class FrameOpener {
  #key: Buffer;
  #counter = 0n;
  constructor(key: Buffer) {
    if (key.length !== 32) throw new RangeError('key must be 32 bytes');
    this.#key = key;
  }
  /** Opens the next frame, or returns null when it does not authenticate as the next frame. */
  open(sealed: Uint8Array): Buffer | null {
    if (sealed.length < TAG_BYTES) return null;
    const body = sealed.subarray(0, sealed.length - TAG_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv('chacha20-poly1305', this.#key, counterNonce(this.#counter), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAuthTag(tag);
      const plain = decipher.update(body);
      decipher.final();
      this.#counter++;
      return plain;
    } catch {
      return null;
    }
  }
}
