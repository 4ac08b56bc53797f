// WebSocket close codes of the agent channel. A close code is not authenticated, so none of them
// stops an agent by itself: `keel-agent run` exits 2 only on a refusal it can verify.

/** Close codes the controller and agent use, with their meaning. */
export const closeCodes = {
  /** Controller shutting down or agent stopping; retry. */
  goingAway: 1001,
  /** Frame larger than the peer's maximum (set by `ws` itself when maxPayload is exceeded). */
  tooLarge: 1009,
  /** A frame could not be decoded or failed schema validation. */
  malformed: 4400,
  /** The handshake failed (bad signature, bad key, replay). */
  handshakeFailed: 4401,
  /** The agent key is not enrolled (fatal with a verified refusal). */
  unknownAgent: 4403,
  /** The controller key did not match the pin (closed by the agent, which retries). */
  pinMismatch: 4404,
  /** The handshake did not complete in time. */
  handshakeTimeout: 4408,
  /** A newer session of the same host replaced this one. */
  replaced: 4409,
  /** The host was revoked (fatal with a verified refusal). */
  revoked: 4410,
  /** A sealed frame failed authentication (forged, replayed or reordered). */
  forged: 4411,
  /** A frame type that is not allowed in this state. */
  unexpected: 4412,
  /** Heartbeats stopped. */
  deadPeer: 4413,
  /**
   * Another machine holds this host's key and its session is alive (a cloned disk image): the
   * newcomer is refused, not the working session. The agent retries slowly.
   */
  conflict: 4419,
  /** No protocol version in common (fatal with a verified refusal). */
  version: 4426,
  /** Internal error on the peer; retry. */
  internal: 4500,
} as const;

export type CloseCode = (typeof closeCodes)[keyof typeof closeCodes];

/**
 * Close codes that accompany a refusal (revoked, unknown key, pin mismatch, no common version).
 * A close code alone never stops an agent — it is not authenticated; only a sealed refusal or a
 * pre-auth refusal signed by the pinned controller key does (`FATAL_REFUSALS` in handshake.ts).
 */
export const fatalCloseCodes: ReadonlySet<number> = new Set([
  closeCodes.unknownAgent,
  closeCodes.pinMismatch,
  closeCodes.revoked,
  closeCodes.version,
]);

/** Longest close reason a WebSocket allows, in UTF-8 bytes. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * A close reason that always fits the WebSocket limit (123 UTF-8 bytes): peer-chosen text such as
 * a frame type can be multibyte, and `ws` throws on an over-long reason.
 */
export function closeReason(text: string): string {
  const ascii = text.replace(/[^\x20-\x7e]/g, '?');
  return ascii.length <= 120 ? ascii : `${ascii.slice(0, 117)}...`;
}
