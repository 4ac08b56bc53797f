// Channel clients for tests and benchmarks: asks the API for a ticket and connects a WebSocket to
// the channel endpoint, collecting the bytes, the controller's text messages and how it closed.
import WebSocket from 'ws';
import type { ChannelClientMessage } from '@keel/shared';
import type { ApiClient } from './api.ts';

/** A connected channel socket. */
export interface ChannelClient {
  ws: WebSocket;
  /** Text messages from the controller (`opened`, `close`). */
  messages: ChannelClientMessage[];
  /** Resolves with the channel id once the agent accepted. */
  opened: Promise<string>;
  /** Resolves when the socket closed: its close code and the controller's `close` message. */
  closed: Promise<{ code: number; end: ChannelClientMessage | undefined }>;
  /** Called with every binary message (set before data flows). */
  onData: (chunk: Buffer) => void;
}

/** Asks for a channel ticket; returns the ticket URL (relative) or throws with the API answer. */
export async function channelTicket(api: ApiClient, hostId: string, kind: string, params?: unknown) {
  const res = await api.post<{ url: string; ticket: string; expiresAt: string }>(
    `/hosts/${hostId}/channels`,
    { kind, params },
  );
  if (res.status !== 201) throw new Error(`ticket: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Connects to a channel ticket URL on `baseUrl`. Rejects with the HTTP status when refused. */
export function connectChannel(baseUrl: string, ticketUrl: string, opts: { origin?: string } = {}) {
  return new Promise<ChannelClient>((resolve, reject) => {
    const ws = new WebSocket(baseUrl.replace(/^http/, 'ws') + ticketUrl, {
      perMessageDeflate: false,
      ...(opts.origin ? { origin: opts.origin } : {}),
    });
    const messages: ChannelClientMessage[] = [];
    let markOpened: (id: string) => void = () => {};
    const client: ChannelClient = {
      ws,
      messages,
      opened: new Promise((r) => (markOpened = r)),
      closed: new Promise((r) =>
        ws.once('close', (code) => r({ code, end: messages.find((m) => m.type === 'close') })),
      ),
      onData: () => {},
    };
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) return client.onData(data);
      const message = JSON.parse(data.toString()) as ChannelClientMessage;
      messages.push(message);
      if (message.type === 'opened') markOpened(message.id);
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`refused ${res.statusCode}: ${body}`), { status: res.statusCode, body }),
        ),
      );
    });
    ws.once('open', () => resolve(client));
    ws.once('error', (err) => reject(err));
  });
}

/** Opens an echo-kind channel and waits until the agent accepted it. */
export async function openEcho(
  api: ApiClient,
  hostId: string,
  params?: unknown,
): Promise<ChannelClient & { id: string }> {
  const { url } = await channelTicket(api, hostId, 'echo', params);
  const client = await connectChannel(api.baseUrl, url);
  const id = await Promise.race([
    client.opened,
    client.closed.then(({ end }) => {
      throw new Error(`channel closed before it opened: ${JSON.stringify(end)}`);
    }),
  ]);
  return Object.assign(client, { id });
}

/** Resident set size of a process, in bytes (Linux /proc). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}
