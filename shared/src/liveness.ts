// Dead-peer detection for the agent link, the same rule on both ends: a peer is dead after
// `misses` whole heartbeat periods in which nothing arrived from it. A period in which our own
// event loop stalled is not held against the peer: timers run before socket reads in Node's
// loop, so after a stall the peer's answer may be waiting unread behind the very timer that
// would judge it (a busy 2-core host would otherwise drop healthy links).

/** Tracks whether a peer is still heard from; `tick()` runs once per heartbeat period. */
export class Liveness {
  readonly #periodMs: number;
  readonly #misses: number;
  #heard = true;
  #missed = 0;
  #lastTick: number;

  /** `misses`: whole silent periods after which the peer counts as dead (at least 1). */
  constructor(periodMs: number, misses = 2, now: number = performance.now()) {
    this.#periodMs = periodMs;
    this.#misses = Math.max(1, Math.floor(misses));
    this.#lastTick = now;
  }

  /** Something arrived from the peer (a frame, a ping or a pong). */
  heard(): void {
    this.#heard = true;
  }

  /** Call once per period (then ping the peer); true when the peer is to be dropped as dead. */
  tick(now: number = performance.now()): boolean {
    const late = now - this.#lastTick > this.#periodMs * 1.5;
    this.#lastTick = now;
    if (this.#heard) {
      this.#heard = false;
      this.#missed = 0;
      return false;
    }
    // Our own loop stalled through most of a period: what the peer sent may still be unread.
    if (late) return false;
    this.#missed += 1;
    return this.#missed >= this.#misses;
  }
}
