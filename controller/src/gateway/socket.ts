// Small helpers on a `ws` socket that the gateway's parts share.
import type { WebSocket } from 'ws';
import { closeReason } from '@keel/shared';

/** Closes a socket with a reason that always fits; falls back to terminate. */
export function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, closeReason(reason));
  } catch {
    ws.terminate();
  }
}

/**
 * Sets the largest message this socket accepts. `ws` has one limit per server, so a pre-auth
 * peer could otherwise make it buffer maxFrameBytes; this narrows it per connection until the
 * handshake is done (a test asserts a larger pre-auth message is refused with 1009).
 */
export function setMaxPayload(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}

/** Resolves true when the peer answers a ping within `ms` (its connection is alive). */
export function answersPing(ws: WebSocket, ms: number): Promise<boolean> {
  if (ws.readyState !== ws.OPEN) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (alive: boolean) => {
      clearTimeout(timer);
      ws.off('pong', onPong);
      ws.off('close', onClose);
      resolve(alive);
    };
    const onPong = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    timer.unref();
    ws.on('pong', onPong);
    ws.on('close', onClose);
    ws.ping();
  });
}
