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
    const cipher = createCipheriv('chacha20-poly1305', this.#key, counterNonce(this.#counter++), {
      authTagLength: TAG_BYTES,
    });
    const head = cipher.update(plaintext);
    const tail = rest && rest.byteLength > 0 ? cipher.update(rest) : null;
    cipher.final();
    return Buffer.concat(tail ? [head, tail, cipher.getAuthTag()] : [head, cipher.getAuthTag()]);
  }
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
