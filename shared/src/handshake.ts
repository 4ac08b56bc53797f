// The agent-channel handshake, as two pure state machines (no I/O). Both sides send an ephemeral
// X25519 key and a nonce; each signs the transcript with its static ed25519 key; the agent checks
// the controller key against its pin BEFORE it signs or sends anything secret; the controller
// checks the agent key is enrolled (or, in enroll mode, lets the token decide). Session keys come
// from HKDF over the ephemeral shared secret salted with the transcript hash.
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { AgentAuth, AgentHello, ControllerHello, HandshakeError } from './frames.ts';
import { PROTOCOL_VERSIONS } from './frames.ts';
import {
  fingerprintMatches,
  fromB64u,
  generateEphemeralKey,
  KEY_BYTES,
  sign,
  SIGNATURE_BYTES,
  toB64u,
  verify,
  x25519SharedSecret,
  type EphemeralKey,
} from './keys.ts';
import { FrameOpener, FrameSealer } from './sealed.ts';

const TRANSCRIPT_LABEL = Buffer.from('keel/handshake/v1', 'utf8');
const CONTROLLER_SIG_LABEL = Buffer.from('keel/v1 controller signature', 'utf8');
const AGENT_SIG_LABEL = Buffer.from('keel/v1 agent signature', 'utf8');
const KEYS_INFO = Buffer.from('keel/v1 session keys', 'utf8');
const REFUSAL_SIG_LABEL = Buffer.from('keel/v2 controller refusal', 'utf8');

/**
 * Refusals after which an agent stops for good (exit 2) — but only when it can verify them: sealed
 * in the session, or, before it, signed by the pinned controller key over the agent's own hello.
 * A close code or an unsigned error frame proves nothing (anyone on the path can send one).
 */
export const FATAL_REFUSALS: ReadonlySet<string> = new Set([
  'handshake.unknown_agent',
  'handshake.revoked',
  'handshake.version',
]);

/** What a pre-auth refusal signs: its code and message, bound to the hello it answers. */
function refusalPayload(hello: AgentHello, code: string, message: string): Buffer {
  const h = createHash('sha256');
  h.update(REFUSAL_SIG_LABEL);
  h.update(Buffer.from(hello.agentKey, 'utf8'));
  h.update(Buffer.from(hello.nonce, 'utf8'));
  h.update(Buffer.from([0]));
  h.update(Buffer.from(code, 'utf8'));
  h.update(Buffer.from([0]));
  h.update(Buffer.from(message, 'utf8'));
  return h.digest();
}

/**
 * The controller's handshake `error` for a hello it refuses, signed with its static key over the
 * agent's hello (fresh nonce, so it cannot be replayed to another connection) when the agent
 * speaks protocol 2 (a protocol-1 agent's strict schema would not accept the extra fields).
 */
export function refusalFrame(
  identity: { publicKey: Buffer; privateKey: KeyObject },
  hello: AgentHello | null,
  code: string,
  message: string,
): HandshakeError {
  const frame: HandshakeError = { type: 'error', code, message };
  if (!hello || !hello.versions.some((v) => v >= 2) || !FATAL_REFUSALS.has(code)) return frame;
  const signature = sign(identity.privateKey, refusalPayload(hello, code, message));
  return { ...frame, controllerKey: toB64u(identity.publicKey), signature: toB64u(signature) };
}

/** An authenticated, encrypted session: seal what you send, open what you receive. */
export interface Session {
  version: number;
  /** The peer's static ed25519 public key (raw). */
  peerKey: Buffer;
  /** Transcript hash: a unique id of this session, safe to log. */
  id: string;
  sealer: FrameSealer;
  opener: FrameOpener;
}

/** Why a handshake failed, as a stable code plus detail. */
export class HandshakeFailure extends Error {
  readonly code:
    | 'handshake.failed'
    | 'handshake.pin_mismatch'
    | 'handshake.unknown_agent'
    | 'handshake.revoked'
    | 'handshake.version';
  constructor(code: HandshakeFailure['code'], message: string) {
    super(message);
    this.name = 'HandshakeFailure';
    this.code = code;
  }
}

/** The transcript hash both sides sign: every public value of the exchange in a fixed layout. */
export function transcriptHash(hello: AgentHello, controller: Omit<ControllerHello, 'signature'>): Buffer {
  const h = createHash('sha256');
  h.update(TRANSCRIPT_LABEL);
  h.update(Buffer.from([hello.versions.length, ...hello.versions]));
  h.update(Buffer.from([hello.mode === 'enroll' ? 1 : 0]));
  for (const field of [hello.agentKey, hello.ephemeralKey, hello.nonce]) h.update(decode32(field));
  h.update(Buffer.from([controller.version]));
  for (const field of [controller.controllerKey, controller.ephemeralKey, controller.nonce]) {
    h.update(decode32(field));
  }
  return h.digest();
}

function decode32(text: string): Buffer {
  const bytes = fromB64u(text, KEY_BYTES);
  if (!bytes) throw new HandshakeFailure('handshake.failed', 'malformed key or nonce');
  return bytes;
}

function deriveKeys(
  shared: Buffer,
  transcript: Buffer,
): { agentToController: Buffer; controllerToAgent: Buffer } {
  const okm = Buffer.from(hkdfSync('sha256', shared, transcript, KEYS_INFO, 64));
  return { agentToController: okm.subarray(0, 32), controllerToAgent: okm.subarray(32, 64) };
}

/** Picks the highest version both sides speak, or null. */
export function negotiateVersion(
  offered: readonly number[],
  supported: readonly number[] = PROTOCOL_VERSIONS,
): number | null {
  let best: number | null = null;
  for (const v of offered) if (supported.includes(v) && (best === null || v > best)) best = v;
  return best;
}

// ---- agent side --------------------------------------------------------------------------

export interface AgentHandshakeOptions {
  identity: { publicKey: Buffer; privateKey: KeyObject };
  /** Fingerprint of the controller key the agent was enrolled with (`sha256:…`). */
  pin: string;
  mode: 'connect' | 'enroll';
  versions?: readonly number[];
  /** Fixed ephemeral key and nonce, for test vectors only. */
  fixed?: { ephemeral: EphemeralKey; nonce: Buffer };
}

/**
 * The agent's half. `hello` is sent first; `onControllerHello` checks the pin and the controller's
 * signature and returns the auth frame to send plus the session.
 *
 * @example
 * const hs = new AgentHandshake({ identity, pin, mode: 'connect' });
 * ws.send(encodeHandshakeFrame(hs.hello));
 * // on the controller's answer:
 * const { auth, session } = hs.onControllerHello(frame); // throws HandshakeFailure
 */
export class AgentHandshake {
  readonly hello: AgentHello;
  #ephemeral: EphemeralKey;
  #opts: AgentHandshakeOptions;
  #done = false;

  constructor(opts: AgentHandshakeOptions) {
    this.#opts = opts;
    this.#ephemeral = opts.fixed?.ephemeral ?? generateEphemeralKey();
    this.hello = {
      type: 'hello',
      versions: [...(opts.versions ?? PROTOCOL_VERSIONS)],
      mode: opts.mode,
      agentKey: toB64u(opts.identity.publicKey),
      ephemeralKey: toB64u(this.#ephemeral.publicKey),
      nonce: toB64u(opts.fixed?.nonce ?? randomBytes(32)),
    };
  }

  /**
   * True when a pre-auth `error` is a refusal this agent can trust: signed by the pinned
   * controller key over this very hello. Anything else may come from anyone on the path.
   */
  verifyRefusal(frame: HandshakeError): boolean {
    if (!frame.controllerKey || !frame.signature) return false;
    const controllerKey = fromB64u(frame.controllerKey, KEY_BYTES);
    const signature = fromB64u(frame.signature, SIGNATURE_BYTES);
    if (!controllerKey || !signature || !fingerprintMatches(controllerKey, this.#opts.pin)) return false;
    return verify(controllerKey, refusalPayload(this.hello, frame.code, frame.message), signature);
  }

  onControllerHello(frame: ControllerHello): { auth: AgentAuth; session: Session } {
    if (this.#done) throw new HandshakeFailure('handshake.failed', 'handshake already completed');
    this.#done = true;
    if (!this.hello.versions.includes(frame.version)) {
      throw new HandshakeFailure(
        'handshake.version',
        `controller chose unsupported version ${frame.version}`,
      );
    }
    const controllerKey = decode32(frame.controllerKey);
    // The pin is checked before anything else is computed or sent.
    if (!fingerprintMatches(controllerKey, this.#opts.pin)) {
      throw new HandshakeFailure(
        'handshake.pin_mismatch',
        'controller key does not match the pinned fingerprint',
      );
    }
    const { signature: controllerSigText, ...unsigned } = frame;
    const transcript = transcriptHash(this.hello, unsigned);
    const controllerSig = fromB64u(controllerSigText, SIGNATURE_BYTES);
    if (
      !controllerSig ||
      !verify(controllerKey, Buffer.concat([CONTROLLER_SIG_LABEL, transcript]), controllerSig)
    ) {
      throw new HandshakeFailure('handshake.failed', 'controller signature is invalid');
    }
    const shared = x25519SharedSecret(this.#ephemeral.privateKey, decode32(frame.ephemeralKey));
    if (!shared) throw new HandshakeFailure('handshake.failed', 'controller ephemeral key is invalid');
    const signature = sign(
      this.#opts.identity.privateKey,
      Buffer.concat([AGENT_SIG_LABEL, transcript, controllerSig]),
    );
    const keys = deriveKeys(shared, transcript);
    return {
      auth: { type: 'auth', signature: toB64u(signature) },
      session: {
        version: frame.version,
        peerKey: controllerKey,
        id: transcript.toString('base64url').slice(0, 16),
        sealer: new FrameSealer(keys.agentToController),
        opener: new FrameOpener(keys.controllerToAgent),
      },
    };
  }
}

// ---- controller side ---------------------------------------------------------------------

/** What the controller knows of an agent key: decided before any signing work is done. */
export type AgentKeyStatus = 'enrolled' | 'unknown' | 'revoked';

export interface ControllerHandshakeOptions {
  identity: { publicKey: Buffer; privateKey: KeyObject };
  versions?: readonly number[];
  /** Fixed ephemeral key and nonce, for test vectors only. */
  fixed?: { ephemeral: EphemeralKey; nonce: Buffer };
}

/**
 * The controller's half: `onHello` (after the caller has checked the agent key's status) returns
 * the signed answer; `onAuth` verifies the agent's signature and returns the session.
 */
export class ControllerHandshake {
  #opts: ControllerHandshakeOptions;
  #ephemeral: EphemeralKey | null = null;
  #hello: AgentHello | null = null;
  #transcript: Buffer | null = null;
  #controllerSig: Buffer | null = null;
  #version = 0;
  #state: 'hello' | 'auth' | 'done' = 'hello';

  constructor(opts: ControllerHandshakeOptions) {
    this.#opts = opts;
  }

  /** The agent key of the hello received (raw), once known. */
  get agentKey(): Buffer | null {
    return this.#hello ? decode32(this.#hello.agentKey) : null;
  }

  get mode(): 'connect' | 'enroll' | null {
    return this.#hello?.mode ?? null;
  }

  onHello(hello: AgentHello): ControllerHello {
    if (this.#state !== 'hello') throw new HandshakeFailure('handshake.failed', 'unexpected hello');
    this.#state = 'auth';
    const version = negotiateVersion(hello.versions, this.#opts.versions);
    if (version === null) throw new HandshakeFailure('handshake.version', 'no protocol version in common');
    // Reject keys that cannot be keys before spending a signature on them.
    decode32(hello.agentKey);
    decode32(hello.ephemeralKey);
    decode32(hello.nonce);
    this.#hello = hello;
    this.#version = version;
    this.#ephemeral = this.#opts.fixed?.ephemeral ?? generateEphemeralKey();
    const unsigned = {
      type: 'hello.controller' as const,
      version,
      controllerKey: toB64u(this.#opts.identity.publicKey),
      ephemeralKey: toB64u(this.#ephemeral.publicKey),
      nonce: toB64u(this.#opts.fixed?.nonce ?? randomBytes(32)),
    };
    this.#transcript = transcriptHash(hello, unsigned);
    this.#controllerSig = sign(
      this.#opts.identity.privateKey,
      Buffer.concat([CONTROLLER_SIG_LABEL, this.#transcript]),
    );
    return { ...unsigned, signature: toB64u(this.#controllerSig) };
  }

  onAuth(auth: AgentAuth): Session {
    if (
      this.#state !== 'auth' ||
      !this.#hello ||
      !this.#transcript ||
      !this.#controllerSig ||
      !this.#ephemeral
    ) {
      throw new HandshakeFailure('handshake.failed', 'unexpected auth');
    }
    this.#state = 'done';
    const agentKey = decode32(this.#hello.agentKey);
    const signature = fromB64u(auth.signature, SIGNATURE_BYTES);
    const signed = Buffer.concat([AGENT_SIG_LABEL, this.#transcript, this.#controllerSig]);
    if (!signature || !verify(agentKey, signed, signature)) {
      throw new HandshakeFailure('handshake.failed', 'agent signature is invalid');
    }
    const shared = x25519SharedSecret(this.#ephemeral.privateKey, decode32(this.#hello.ephemeralKey));
    if (!shared) throw new HandshakeFailure('handshake.failed', 'agent ephemeral key is invalid');
    const keys = deriveKeys(shared, this.#transcript);
    return {
      version: this.#version,
      peerKey: agentKey,
      id: this.#transcript.toString('base64url').slice(0, 16),
      sealer: new FrameSealer(keys.controllerToAgent),
      opener: new FrameOpener(keys.agentToController),
    };
  }
}
