// The send side of a link end, shared by agent and controller: a fair scheduler that puts control
// frames first and takes bulk frames (stream batches, channel data) round-robin from lanes, with
// at most a high-water mark of bytes handed to the socket and not yet written; and the per-channel
// credit window (an outbox that sends only what the reader granted, and the reader's side that
// returns credit as it consumes).
//
// Why this bounds latency: control frames (requests, responses, acks, heartbeats) never queue
// behind lanes; they wait only behind what the socket already holds, which the scheduler keeps
// under `highWaterBytes`. So a flood on one channel delays a request by at most
// highWaterBytes / link throughput (plus one frame), and every other lane gets its turn before the
// flooding one sends again.
import type { SessionFrame } from './frames.ts';
import { CHANNEL_CHUNK_BYTES, CHANNEL_FRAME_MIN_CREDIT, CHANNEL_WINDOW_BYTES } from './messages/channels.ts';

/** Memory a queued piece costs beyond its bytes (array slot, buffer object), for the queue limit. */
const PIECE_OVERHEAD = 64;

/** One frame ready to go out. */
export interface OutgoingFrame {
  frame: SessionFrame;
  body?: Uint8Array;
}

/** Where the scheduler writes: a sealed channel (`SealedChannel` satisfies it). */
export interface FrameSink {
  send(frame: SessionFrame, body?: Uint8Array, written?: (err?: Error) => void): void;
  readonly closed: boolean;
}

/** A source of bulk frames. `pull` returns the next frame it may send now, or null. */
export interface Lane {
  /** Tells the scheduler this lane may have something to send. */
  wake(): void;
  /** Removes the lane; frames it still holds are not asked for again. */
  remove(): void;
}

/** Bytes handed to the socket but not yet written, above which lanes wait. */
export const DEFAULT_HIGH_WATER_BYTES = 256 * 1024;
/** Approximate bytes of a frame header and seal, for accounting. */
const FRAME_OVERHEAD = 64;

interface LaneState {
  pull: () => OutgoingFrame | null;
  removed: boolean;
}

/**
 * Fair scheduler over one link.
 *
 * @example
 * const scheduler = new FairScheduler(channel);
 * scheduler.sendNow({ type: 'res', id, ok: true, result });       // control: goes out at once
 * const lane = scheduler.lane(() => outbox.pull());                 // bulk: taken in turn
 * outbox.onReady = () => lane.wake();
 */
export class FairScheduler {
  readonly highWaterBytes: number;
  #sink: FrameSink;
  /** Lanes that may have data, in round-robin order (a Set keeps insertion order). */
  #ready = new Set<LaneState>();
  #inflight = 0;
  #pumping = false;
  #scheduled = false;

  constructor(sink: FrameSink, opts: { highWaterBytes?: number } = {}) {
    this.#sink = sink;
    this.highWaterBytes = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
  }

  /** Bytes given to the socket and not yet written (lanes wait above the high-water mark). */
  get inflightBytes(): number {
    return this.#inflight;
  }

  /** Lanes waiting for their turn. */
  get readyLanes(): number {
    return this.#ready.size;
  }

  /** Sends a control frame now, ahead of every lane. */
  sendNow(frame: SessionFrame, body?: Uint8Array): void {
    this.#write({ frame, body });
  }

  /** Adds a lane; call `wake()` whenever it may have a frame for `pull`. */
  lane(pull: () => OutgoingFrame | null): Lane {
    const state: LaneState = { pull, removed: false };
    return {
      wake: () => {
        if (state.removed || this.#ready.has(state)) return;
        this.#ready.add(state);
        this.#schedule();
      },
      remove: () => {
        state.removed = true;
        this.#ready.delete(state);
      },
    };
  }

  #write(out: OutgoingFrame): void {
    if (this.#sink.closed) return;
    const bytes = (out.body?.byteLength ?? 0) + FRAME_OVERHEAD;
    this.#inflight += bytes;
    this.#sink.send(out.frame, out.body, () => {
      this.#inflight -= bytes;
      if (this.#inflight < this.highWaterBytes && this.#ready.size > 0) this.#schedule();
    });
  }

  /** Pumps on the next microtask, so a burst of wakes costs one pass. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.pump();
    });
  }

  /** Sends from ready lanes in turn while the socket is under the high-water mark. */
  pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#inflight < this.highWaterBytes && !this.#sink.closed) {
        const next = this.#ready.values().next();
        if (next.done) return;
        const lane = next.value;
        this.#ready.delete(lane);
        const out = lane.pull();
        if (!out) continue; // nothing now; it wakes again when it has
        this.#ready.add(lane); // to the back of the queue: everyone else goes first
        this.#write(out);
      }
    } finally {
      this.#pumping = false;
    }
  }
}

const schedulers = new WeakMap<FrameSink, FairScheduler>();

/**
 * The fair scheduler of one link session (made on first use): stream batches and channel data of
 * the same session take turns on it, whoever asks first.
 */
export function schedulerFor(sink: FrameSink): FairScheduler {
  let scheduler = schedulers.get(sink);
  if (!scheduler) {
    scheduler = new FairScheduler(sink);
    schedulers.set(sink, scheduler);
  }
  return scheduler;
}

/**
 * The sending half of one channel's credit window: bytes queue here and go out as `chan.data`
 * frames only as far as the reader granted credit. The producer keeps the queue short by waiting
 * on `writable()` (resolves once the queue is under one window).
 */
export class ChannelOutbox {
  readonly id: string;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #credit: number;
  #limit: number;
  #waiters: (() => void)[] = [];
  /** Called when the outbox may have a frame to send (wire it to the lane's wake). */
  onReady: () => void = () => {};

  constructor(id: string, opts: { credit?: number; queueLimit?: number } = {}) {
    this.id = id;
    this.#credit = opts.credit ?? CHANNEL_WINDOW_BYTES;
    this.#limit = opts.queueLimit ?? CHANNEL_WINDOW_BYTES;
  }

  /** Bytes queued and not yet sent. */
  get queuedBytes(): number {
    return this.#queued;
  }

  /** Bytes the reader still allows in flight. */
  get credit(): number {
    return this.#credit;
  }

  /** True while the queue is at or over its limit: the producer should wait (see writable()). */
  get full(): boolean {
    return this.#queued + this.#queue.length * PIECE_OVERHEAD >= this.#limit;
  }

  /** Queues bytes (split into chunks). Returns false when the producer should now wait. */
  push(bytes: Uint8Array): boolean {
    for (let at = 0; at < bytes.byteLength; at += CHANNEL_CHUNK_BYTES) {
      const piece = bytes.subarray(at, at + CHANNEL_CHUNK_BYTES);
      this.#queue.push(piece);
      this.#queued += piece.byteLength;
    }
    if (this.#credit > 0 && this.#queue.length > 0) this.onReady();
    return !this.full;
  }

  /** Resolves when the queue is under its limit again. */
  writable(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The reader consumed `bytes` more. */
  grant(bytes: number): void {
    this.#credit += bytes;
    if (this.#queue.length > 0) this.onReady();
  }

  /**
   * The next data frame within credit, or null (the lane's `pull`). Small pieces queued one after
   * another (keystrokes, short writes) go out together in one frame, up to a chunk; a frame costs
   * at least CHANNEL_FRAME_MIN_CREDIT of credit.
   */
  pull(): OutgoingFrame | null {
    // Below the least a frame costs, nothing may go out (the reader returns credit long before).
    if (this.#credit < CHANNEL_FRAME_MIN_CREDIT || this.#queue.length === 0) return null;
    this.#coalesce();
    let head = this.#queue[0]!;
    if (head.byteLength > this.#credit) {
      // Send what the credit allows now; the rest waits for more.
      this.#queue[0] = head.subarray(this.#credit);
      head = head.subarray(0, this.#credit);
    } else {
      this.#queue.shift();
    }
    this.#credit -= Math.max(head.byteLength, CHANNEL_FRAME_MIN_CREDIT);
    this.#queued -= head.byteLength;
    if (!this.full && this.#waiters.length > 0) {
      for (const wake of this.#waiters.splice(0)) wake();
    }
    return { frame: { type: 'chan.data', id: this.id }, body: head };
  }

  /** Joins small pieces at the head of the queue into one, up to a chunk. */
  #coalesce(): void {
    let bytes = 0;
    let count = 0;
    for (const piece of this.#queue) {
      if (bytes + piece.byteLength > CHANNEL_CHUNK_BYTES) break;
      bytes += piece.byteLength;
      count++;
    }
    if (count > 1) this.#queue.unshift(Buffer.concat(this.#queue.splice(0, count), bytes));
  }

  /** Drops what is queued and releases waiting producers (the channel closed). */
  clear(): void {
    this.#queue = [];
    this.#queued = 0;
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/**
 * The reading half of one channel's credit window: counts bytes the reader consumed and says when
 * to return them as credit (in batches of a quarter window, not one frame per chunk). Bytes
 * received beyond what was granted are a protocol violation. Call it once per frame: a frame costs
 * at least CHANNEL_FRAME_MIN_CREDIT, on both ends alike.
 */
export class ChannelInbox {
  #granted: number;
  #unreturned = 0;
  #batch: number;

  constructor(window = CHANNEL_WINDOW_BYTES) {
    this.#granted = window;
    this.#batch = Math.max(1, Math.floor(window / 4));
  }

  /** Records a received frame's bytes; returns false when the sender exceeded its credit. */
  received(bytes: number): boolean {
    this.#granted -= Math.max(bytes, CHANNEL_FRAME_MIN_CREDIT);
    return this.#granted >= 0;
  }

  /** Records a consumed frame's bytes; returns the credit to send now (0 = not yet). */
  consumed(bytes: number): number {
    this.#unreturned += Math.max(bytes, CHANNEL_FRAME_MIN_CREDIT);
    if (this.#unreturned < this.#batch) return 0;
    const give = this.#unreturned;
    this.#unreturned = 0;
    this.#granted += give;
    return give;
  }
}
