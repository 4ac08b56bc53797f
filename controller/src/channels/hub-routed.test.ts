// Proves a channel routed to another replica is tapped exactly once, on the replica serving the
// client: the terminal's recording, its terminal.end audit and its permission re-check (the tap)
// run there, and the holder's hub, opening the same channel `routed`, taps nothing.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import type { Lane, SessionFrame } from '@keel/shared';
import type { ChannelGrant } from './tickets.ts';
import { ChannelHub, type AgentChannelLink } from './hub.ts';

const log = pino({ level: 'silent' });
const grant = (): ChannelGrant => ({
  userId: 'u1',
  hostId: 'h1',
  kind: 'echo',
  params: {},
  expiresAt: Date.now() + 30_000,
});

function link(single: boolean) {
  const control: SessionFrame[] = [];
  const l: AgentChannelLink = {
    hostId: 'h1',
    channelKinds: single ? null : ['echo'],
    single,
    sendNow: (frame) => control.push(frame),
    lane: (): Lane => ({ wake: () => {}, remove: () => {} }),
  };
  return { link: l, control };
}

/** A hub behind a real WebSocket server; `routed`: opens as the holder of a routed channel does. */
async function hubWith(opts: { local?: AgentChannelLink; remote?: AgentChannelLink; routed?: boolean }) {
  const tapped: string[] = [];
  const hub = new ChannelHub({
    log,
    linkFor: () => opts.local,
    tap: (g, id) => {
      tapped.push(id);
      return undefined;
    },
    ...(opts.remote ? { remote: async () => opts.remote } : {}),
  });
  const wss = new WebSocketServer({ noServer: true });
  const server = createServer();
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => hub.open(grant(), ws, { routed: opts.routed === true })),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(async () => {
    hub.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  after(() => ws.terminate());
  await new Promise((resolve) => ws.once('open', resolve));
  return { hub, tapped };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), what);
}

test('the replica serving the client taps a channel it routes to another replica', async () => {
  const remote = link(true);
  const { tapped } = await hubWith({ remote: remote.link });
  await until('the open sent to the holder', () => remote.control.some((f) => f.type === 'chan.open'));
  const open = remote.control.find((f) => f.type === 'chan.open') as { id: string };
  assert.deepEqual(tapped, [open.id]);
});

test("the holder's hub opens a routed channel untapped", async () => {
  const local = link(false);
  const { tapped } = await hubWith({ local: local.link, routed: true });
  await until('the open sent to the agent', () => local.control.some((f) => f.type === 'chan.open'));
  assert.deepEqual(tapped, []);
});
