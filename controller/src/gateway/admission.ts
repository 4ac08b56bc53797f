// Admission of agent upgrades: before any handshake work, an upgrade must find a place among the
// handshakes in progress (bounded in all and per client address). Over the bound it gets HTTP 503
// and the agent retries with backoff, so a flood of half-done handshakes (or of enroll-mode
// hellos, which the controller signs) cannot take every socket and the CPU.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';

export interface AdmissionLimits {
  /** Handshakes in progress at once (upgraded, not yet authenticated). */
  maxPending: number;
  /** The same per client address. */
  maxPendingPerAddress: number;
  /** Take the client address from X-Forwarded-For (the controller is behind a proxy). */
  trustProxy: boolean;
}

/** A place among the handshakes in progress; `settle` gives it back (idempotent). */
export interface Admitted {
  peer: string;
  settle(): void;
}

/** Counts handshakes in progress and refuses upgrades over the bounds. */
export class Admission {
  #limits: AdmissionLimits;
  #log: Logger;
  #pending = 0;
  #pendingByPeer = new Map<string, number>();
  #refusedSince = 0;
  #refusedWarnAt = 0;

  constructor(limits: AdmissionLimits, log: Logger) {
    this.#limits = limits;
    this.#log = log;
  }

  /** Handshakes in progress (for tests and /metrics). */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Claims a place for this upgrade, released when the socket closes or `settle()` is called; or
   * answers 503 on the raw socket and returns null.
   */
  admit(req: IncomingMessage, socket: Duplex): Admitted | null {
    const peer = clientAddress(req, this.#limits.trustProxy);
    const fromPeer = this.#pendingByPeer.get(peer) ?? 0;
    if (this.#pending >= this.#limits.maxPending || fromPeer >= this.#limits.maxPendingPerAddress) {
      this.#refuse(socket, peer);
      return null;
    }
    this.#pending++;
    this.#pendingByPeer.set(peer, fromPeer + 1);
    let counted = true;
    const settle = () => {
      if (!counted) return;
      counted = false;
      this.#pending--;
      const left = (this.#pendingByPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#pendingByPeer.set(peer, left);
      else this.#pendingByPeer.delete(peer);
    };
    socket.once('close', settle);
    return { peer, settle };
  }

  /** Answers an upgrade over the pending-handshake bounds with 503 (agents retry with backoff). */
  #refuse(socket: Duplex, peer: string): void {
    this.#refusedSince++;
    const now = Date.now();
    if (now - this.#refusedWarnAt >= 10_000) {
      this.#log.warn(
        { peer, refused: this.#refusedSince, pending: this.#pending },
        'too many agent handshakes in progress; refusing new ones for now',
      );
      this.#refusedWarnAt = now;
      this.#refusedSince = 0;
    }
    // The HTTP server allows half-open sockets: destroy once the answer is out (or soon after),
    // so a peer that never closes its side cannot keep refused sockets around.
    socket.once('finish', () => socket.destroy());
    setTimeout(() => socket.destroy(), 1_000).unref();
    socket.end(
      'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n',
    );
  }
}

/** The client's address: the last X-Forwarded-For hop when the proxy is trusted, else the socket's. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const last = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded)?.split(',').pop()?.trim();
    if (last) return last.slice(0, 64);
  }
  return req.socket.remoteAddress ?? 'unknown';
}
