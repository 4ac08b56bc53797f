// A sealed channel over any message socket: seals outgoing frames, opens and validates incoming
// ones, and closes the socket with the documented code on the first bad frame. Agent and
// controller both use it after the handshake; it does no I/O of its own.
import { closeCodes, closeReason } from './close-codes.ts';
import { decodeFrame, encodeFrameHead } from './codec.ts';
import type { SessionFrame } from './frames.ts';
import type { Session } from './handshake.ts';
import { sealedLength } from './sealed.ts';

/** Sealed frames of at least this many bytes are sealed into a pooled buffer (FramePool). */
export const POOLED_FRAME_BYTES = 32 * 1024;

/**
 * Buffers for large sealed frames, reused once the socket has written them (its send callback),
 * shared by every channel of the process. A fresh 256 KiB result per stream batch cost the agent
 * more than the cipher itself: under its MALLOC_MMAP_THRESHOLD_ every such block is a mapping of
 * its own, faulted in page by page and returned when freed (docs/benchmarks.md, durable leg of
 * 2 Dec). At most `max` buffers of at most `maxBytes` wait; all are let go after `idleMs` without
 * use, so an idle agent keeps no pages for a burst long past.
 */
export class FramePool {
  #free: Buffer[] = [];
  #usedAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    readonly max = 4,
    readonly maxBytes = 1024 * 1024,
    readonly idleMs = 10_000,
  ) {}

  /** Buffers waiting for reuse. */
  get size(): number {
    return this.#free.length;
  }

  /** A buffer of at least `bytes` (a waiting one when one is large enough). */
  take(bytes: number): Buffer {
    const i = this.#free.findIndex((b) => b.length >= bytes);
    if (i >= 0) return this.#free.splice(i, 1)[0]!;
    // Rounded up to 64 KiB, so that batches a few bytes apart fit the same buffer; pages never
    // written are never faulted in.
    return Buffer.allocUnsafeSlow(Math.ceil(bytes / 65536) * 65536);
  }

  /** Hands a buffer back once nothing refers to its bytes any more. */
  give(buf: Buffer): void {
    this.#usedAt = Date.now();
    if (buf.length > this.maxBytes || this.#free.length >= this.max) return;
    this.#free.push(buf);
    this.#arm(this.idleMs);
  }

  #arm(ms: number): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const idle = Date.now() - this.#usedAt;
      if (idle >= this.idleMs) this.#free.length = 0;
      else this.#arm(this.idleMs - idle);
    }, ms);
    this.#timer.unref?.();
  }
}

const framePool = new FramePool();

/** The part of a WebSocket the channel needs (the `ws` WebSocket satisfies it). */
export interface MessageSocket {
  send(data: Buffer, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  /** Drops the connection at once (used when a graceful close fails). */
  terminate?(): void;
  readonly bufferedAmount: number;
}

export interface ChannelHandlers {
  onFrame(frame: SessionFrame, body: Buffer): void;
  /** Called once when the channel closes itself because of a bad frame. */
  onProtocolError?(code: number, reason: string): void;
}

/** One authenticated session's frame stream. */
export class SealedChannel {
  readonly session: Session;
  #socket: MessageSocket;
  #handlers: ChannelHandlers;
  #closed = false;

  constructor(socket: MessageSocket, session: Session, handlers: ChannelHandlers) {
    this.#socket = socket;
    this.session = session;
    this.#handlers = handlers;
  }

  /** Bytes queued in the socket but not yet written: the sender's backpressure signal. */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Seals and sends one frame (with a body for stream or channel data). `written`, when given, is
   * called once the socket has written it (the send scheduler counts bytes in flight with it).
   */
  send(frame: SessionFrame, body?: Uint8Array, written?: (err?: Error) => void): void {
    if (this.#closed) return;
    const head = encodeFrameHead(frame);
    const size = sealedLength(head, body);
    if (size < POOLED_FRAME_BYTES) {
      const sealed = this.session.sealer.seal(head, body);
      if (written) this.#socket.send(sealed, written);
      else this.#socket.send(sealed);
      return;
    }
    // A large frame (a stream batch, channel data) is sealed into a buffer that is reused once the
    // socket has written it: no fresh pages per frame.
    const buf = framePool.take(size);
    const n = this.session.sealer.sealInto(buf, head, body);
    this.#socket.send(buf.subarray(0, n), (err) => {
      if (!err) framePool.give(buf);
      written?.(err);
    });
  }

  /** Feeds one received WebSocket message. Bad frames close the socket with a close code. */
  receive(data: Buffer): void {
    if (this.#closed) return;
    const plain = this.session.opener.open(data);
    if (!plain) return this.fail(closeCodes.forged, 'frame failed authentication');
    const decoded = decodeFrame(plain);
    if (!decoded.ok) return this.fail(closeCodes.malformed, decoded.reason);
    this.#handlers.onFrame(decoded.value.frame, decoded.value.body);
  }

  /** Closes the channel (and socket) with a code and a short reason. */
  fail(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.onProtocolError?.(code, reason);
    try {
      this.#socket.close(code, closeReason(reason));
    } catch {
      this.#socket.terminate?.();
    }
  }

  /** Marks the channel closed without touching the socket (the socket closed first). */
  markClosed(): void {
    this.#closed = true;
  }
}
