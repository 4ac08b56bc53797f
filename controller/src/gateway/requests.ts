// The request broker: controller -> agent requests with an id and a deadline. A request to an
// offline host waits for it until the deadline; once sent it is never sent again, so it runs at
// most once; a disconnect before the answer fails it with `request.disconnected`.
import { randomUUID } from 'node:crypto';
import { errorCatalogue, isErrorCode, KeelError, type RequestFrame, type ResponseFrame } from '@keel/shared';

interface Pending {
  id: string;
  hostId: string;
  method: string;
  params: unknown;
  deadline: number;
  sent: boolean;
  /** The session it was sent on: only that session's end can fail it. */
  sentOn: object | null;
  timer: NodeJS.Timeout;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/**
 * Sends a request frame on a host's live session and returns that session (any object that
 * identifies it), or null when the host is not connected; throws a KeelError to refuse the
 * request (it is failed with it and never sent).
 */
export type RequestSender = (hostId: string, frame: RequestFrame) => object | null;

/** Longest deadline a request frame may carry (the schema's bound). */
const MAX_TIMEOUT_MS = 86_400_000;

/** Tracks requests in flight and waiting, per host. */
export class RequestBroker {
  #pending = new Map<string, Pending>();
  #send: RequestSender;

  constructor(send: RequestSender) {
    this.#send = send;
  }

  /** Number of requests waiting or in flight (for metrics and tests). */
  get size(): number {
    return this.#pending.size;
  }

  /** Starts a request; resolves with the agent's result or rejects with a KeelError. */
  request(hostId: string, method: string, params: unknown, requestedTimeoutMs: number): Promise<unknown> {
    const timeoutMs = Math.min(MAX_TIMEOUT_MS, Math.max(1, Math.round(requestedTimeoutMs)));
    return new Promise((resolve, reject) => {
      const id = randomUUID();
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new KeelError(
            'request.deadline_exceeded',
            p.sent
              ? `The agent did not answer ${method} within ${timeoutMs} ms.`
              : `The host stayed offline for the whole ${timeoutMs} ms deadline; ${method} was not sent.`,
          ),
        );
      }, timeoutMs);
      timer.unref?.();
      const p: Pending = {
        id,
        hostId,
        method,
        params,
        deadline: Date.now() + timeoutMs,
        sent: false,
        sentOn: null,
        timer,
        resolve,
        reject,
      };
      this.#pending.set(id, p);
      this.#trySend(p);
    });
  }

  /** A host came online: send what waits for it. */
  hostOnline(hostId: string): void {
    for (const p of this.#pending.values()) if (p.hostId === hostId && !p.sent) this.#trySend(p);
  }

  /** A host's session ended: fail what was sent on it (never resend: it may have run). */
  hostOffline(hostId: string, session: object): void {
    for (const p of [...this.#pending.values()]) {
      if (p.hostId === hostId && p.sent && p.sentOn === session) {
        this.#settle(p.id);
        p.reject(
          new KeelError(
            'request.disconnected',
            `The agent disconnected before answering ${p.method}; it was not retried.`,
          ),
        );
      }
    }
  }

  /** Fails everything for a host at once (revoked, removed). */
  failHost(hostId: string, error: KeelError): void {
    for (const p of [...this.#pending.values()]) {
      if (p.hostId === hostId) {
        this.#settle(p.id);
        p.reject(error);
      }
    }
  }

  /** True while request `id` was sent to `hostId` and waits for its answer (parts may follow). */
  awaits(hostId: string, id: string): boolean {
    const p = this.#pending.get(id);
    return p !== undefined && p.hostId === hostId && p.sent;
  }

  /** An answer arrived from `hostId`. Answers to unknown ids, or from another host, are ignored. */
  onResponse(hostId: string, frame: ResponseFrame): void {
    const p = this.#pending.get(frame.id);
    if (!p || p.hostId !== hostId || !p.sent) return;
    this.#settle(p.id);
    if (frame.ok) p.resolve(frame.result);
    else {
      // A peer's code is kept when the catalogue knows it, except ones that would read as the
      // controller's own fault (500): an agent cannot make the API answer "internal error".
      const known = isErrorCode(frame.error.code) ? frame.error.code : 'request.failed';
      const code = errorCatalogue[known].status === 500 ? 'request.failed' : known;
      p.reject(new KeelError(code, frame.error.message));
    }
  }

  /** Rejects everything (controller shutdown). */
  close(): void {
    for (const p of [...this.#pending.values()]) {
      this.#settle(p.id);
      p.reject(new KeelError('request.disconnected', 'The controller is shutting down.'));
    }
  }

  #trySend(p: Pending): void {
    const remaining = Math.round(p.deadline - Date.now());
    if (remaining <= 0) return;
    let session: object | null;
    try {
      session = this.#send(p.hostId, {
        type: 'req',
        id: p.id,
        method: p.method,
        timeoutMs: remaining,
        params: p.params,
      });
    } catch (err) {
      // The sender refused it (the host's agent does not serve it): fail now, never send.
      this.#settle(p.id);
      p.reject(err instanceof KeelError ? err : new KeelError('request.failed'));
      return;
    }
    if (session) {
      p.sent = true;
      p.sentOn = session;
    }
  }

  #settle(id: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.#pending.delete(id);
  }
}
