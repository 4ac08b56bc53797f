// Proves the relay's rules against a real client WebSocket and a recording agent link: the agent's
// refusal reaches the client, a text message from the client ends the channel, an agent sending
// beyond its credit ends it, client data goes to the agent only as far as credit allows, and the
// end of the agent's session ends the channel with 4502.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { CHANNEL_WINDOW_BYTES, type ChannelClientMessage, type SessionFrame } from '@keel/shared';
import { ChannelHub } from './hub.ts';
import { recordingLink } from './test-link.ts';

/** The `code` of the last `close` message, if any. */
function closeCode(messages: ChannelClientMessage[]): string | undefined {
  const last = messages.at(-1);
  return last?.type === 'close' ? last.code : undefined;
}

let server: Server;
let hub: ChannelHub;
let current: ReturnType<typeof recordingLink>;

before(async () => {
  hub = new ChannelHub({ log: pino({ level: 'silent' }), linkFor: () => current.link });
  const wss = new WebSocketServer({ noServer: true });
  server = createServer();
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) =>
      hub.open({ userId: 'u1', hostId: 'h1', kind: 'echo', params: {}, expiresAt: Date.now() + 30_000 }, ws),
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  hub.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** Connects a client; resolves once the hub has sent chan.open to the agent. */
async function client() {
  current = recordingLink('h1');
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  const messages: ChannelClientMessage[] = [];
  ws.on('message', (d: Buffer, isBinary) => {
    if (!isBinary) messages.push(JSON.parse(d.toString()) as ChannelClientMessage);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve) => ws.once('open', resolve));
  const until = async (check: () => boolean) => {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(check(), 'condition not reached');
  };
  await until(() => current.control.some((f) => f.type === 'chan.open'));
  const open = current.control.find((f) => f.type === 'chan.open') as Extract<
    SessionFrame,
    { type: 'chan.open' }
  >;
  return { ws, messages, closed, id: open.id, rec: current, until };
}

test("the agent's refusal reaches the client as a close message", async () => {
  const c = await client();
  hub.onAgentFrame(
    c.rec.link,
    {
      type: 'chan.close',
      id: c.id,
      reason: 'no such kind here',
      code: 'channel.unknown_kind',
    },
    Buffer.alloc(0),
  );
  assert.equal(await c.closed, 1000);
  assert.deepEqual(c.messages.at(-1), {
    type: 'close',
    reason: 'no such kind here',
    code: 'channel.unknown_kind',
  });
  assert.equal(hub.openCount, 0);
});

test('a text message from the client ends the channel on both sides', async () => {
  const c = await client();
  c.ws.send('{"type":"resize"}');
  assert.equal(await c.closed, 4400);
  assert.ok(c.rec.control.some((f) => f.type === 'chan.close' && f.id === c.id));
});

test('an agent sending beyond its credit ends the channel', async () => {
  const c = await client();
  hub.onAgentFrame(c.rec.link, { type: 'chan.opened', id: c.id }, Buffer.alloc(0));
  const chunk = Buffer.alloc(64 * 1024);
  for (let sent = 0; sent <= CHANNEL_WINDOW_BYTES; sent += chunk.length) {
    hub.onAgentFrame(c.rec.link, { type: 'chan.data', id: c.id }, chunk);
  }
  assert.equal(await c.closed, 1000);
  assert.equal(closeCode(c.messages), 'frame.unexpected');
  assert.ok(c.rec.control.some((f) => f.type === 'chan.close' && f.id === c.id));
});

test('client data reaches the agent only as far as the agent granted credit', async () => {
  const c = await client();
  hub.onAgentFrame(c.rec.link, { type: 'chan.opened', id: c.id }, Buffer.alloc(0));
  const sent = () => c.rec.data.reduce((n, f) => n + (f.body?.byteLength ?? 0), 0);
  for (let i = 0; i < 32; i++) c.ws.send(Buffer.alloc(64 * 1024));
  await c.until(() => sent() === CHANNEL_WINDOW_BYTES);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sent(), CHANNEL_WINDOW_BYTES, 'nothing beyond the window');
  hub.onAgentFrame(c.rec.link, { type: 'chan.credit', id: c.id, bytes: 128 * 1024 }, Buffer.alloc(0));
  await c.until(() => sent() === CHANNEL_WINDOW_BYTES + 128 * 1024);
  // The hub reads no more of this client until the agent grants credit, so it would never read a
  // close frame queued behind the data: ws.close() would wait out ws's 30 s closing handshake.
  c.ws.terminate();
  await c.closed;
});

test("the end of the agent's session ends the channel with 4502", async () => {
  const c = await client();
  hub.onAgentFrame(c.rec.link, { type: 'chan.opened', id: c.id }, Buffer.alloc(0));
  await c.until(() => c.messages.some((m) => m.type === 'opened'));
  hub.sessionEnded(c.rec.link);
  assert.equal(await c.closed, 4502);
  assert.equal(closeCode(c.messages), 'request.disconnected');
});

test('a kind the agent did not announce is refused without a frame to the agent', async () => {
  current = recordingLink('h1');
  current.link = { ...current.link, channelKinds: [] };
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  const messages: ChannelClientMessage[] = [];
  ws.on('message', (d: Buffer) => messages.push(JSON.parse(d.toString()) as ChannelClientMessage));
  const code = await new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
  assert.equal(code, 1000);
  assert.equal(closeCode(messages), 'agent.unsupported');
  assert.deepEqual(current.control, []);
});
