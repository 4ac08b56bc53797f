// A sealed channel over any message socket: seals outgoing frames, opens and validates incoming
// ones, and closes the socket with the documented code on the first bad frame. Agent and
// controller both use it after the handshake; it does no I/O of its own.
import { closeCodes, closeReason } from './close-codes.ts';
import { decodeFrame, encodeFrameHead } from './codec.ts';
import type { SessionFrame } from './frames.ts';
import type { Session } from './handshake.ts';

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
    const sealed = this.session.sealer.seal(encodeFrameHead(frame), body);
    if (written) this.#socket.send(sealed, written);
    else this.#socket.send(sealed);
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
