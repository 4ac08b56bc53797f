// The client side of channels: WebSocket upgrades at /api/v1/channels/ws?ticket=… on the
// controller's HTTP server. The ticket (single use, 30 s, bound to user + host + kind) is the
// authorization; a browser's Origin must be the console's, so another site cannot drive a channel
// even with a ticket it somehow got. Refusals are plain HTTP answers with the usual error body.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { errorCatalogue, KeelError, type ErrorCode } from '@keel/shared';
import type { ChannelHub } from './hub.ts';
import type { TicketBook } from './tickets.ts';

/** The path client channel sockets connect to. */
export const CHANNEL_SOCKET_PATH = '/api/v1/channels/ws';
/** Largest message a client may send; the relay splits it into chunks for the agent. */
const MAX_CLIENT_MESSAGE_BYTES = 1024 * 1024;

export interface ChannelSocketOptions {
  hub: ChannelHub;
  tickets: TicketBook;
  /** The console's origin comes from here. */
  publicUrl: string;
  log: Logger;
}

/** Accepts channel sockets on `server`; returns a function that stops accepting and closes them. */
export function attachChannelSockets(server: Server, opts: ChannelSocketOptions): () => Promise<void> {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_CLIENT_MESSAGE_BYTES,
    perMessageDeflate: false,
  });
  const publicOrigin = new URL(opts.publicUrl).origin;
  let closing = false;
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== CHANNEL_SOCKET_PATH) return; // the agent gateway's, or nobody's
    if (closing) return refuse(socket, new KeelError('internal', 'The controller is shutting down.'));
    // The ticket is struck off at its first presentation, even when the Origin is then refused: a
    // ticket seen from a foreign page has leaked and must not work a second time.
    const grant = opts.tickets.redeem(url.searchParams.get('ticket'));
    const origin = req.headers.origin;
    // API clients send no Origin; a browser always does, and it must be the console's.
    if (origin !== undefined && origin !== publicOrigin && origin !== requestOrigin(req)) {
      opts.log.warn({ origin }, 'channel socket from a foreign origin refused');
      return refuse(socket, new KeelError('channel.origin'));
    }
    if (!grant) return refuse(socket, new KeelError('channel.ticket_invalid'));
    wss.handleUpgrade(req, socket, head, (ws) => opts.hub.open(grant, ws));
  });
  return async () => {
    closing = true;
    opts.hub.close();
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  };
}

/** The origin this request was addressed to (the Host header), as the API's same-origin check allows. */
function requestOrigin(req: IncomingMessage): string | undefined {
  const host = req.headers.host;
  if (!host) return undefined;
  const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
  return `${secure ? 'https' : 'http'}://${host}`;
}

/** Answers an upgrade with an HTTP error and the usual `{ error: { code, message } }` body. */
function refuse(socket: Duplex, error: KeelError): void {
  const status = errorCatalogue[error.code as ErrorCode].status;
  const body = JSON.stringify({ error: error.toJSON() });
  socket.once('finish', () => socket.destroy());
  setTimeout(() => socket.destroy(), 1_000).unref();
  socket.end(
    `HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : status === 401 ? 'Unauthorized' : 'Error'}\r\n` +
      'Connection: close\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
