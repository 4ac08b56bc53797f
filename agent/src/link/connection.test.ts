// Proves the agent link's edges that need no controller: URL mapping, and that a stop while a
// connection attempt hangs in the handshake ends run() at once instead of waiting for systemd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';
import pino from 'pino';
import { generateSigningIdentity, keyFingerprint } from '@keel/shared';
import { AgentLink, agentSocketUrl } from './connection.ts';

test('controller URLs map to the agent socket URL', () => {
  assert.equal(agentSocketUrl('http://127.0.0.1:8080'), 'ws://127.0.0.1:8080/agent/v1');
  assert.equal(agentSocketUrl('https://keel.example.com/base/'), 'wss://keel.example.com/base/agent/v1');
  assert.throws(() => agentSocketUrl('ftp://x'), /http\(s\) or ws\(s\)/);
});

test('stop() during a hanging handshake ends run() promptly', async () => {
  // A server that accepts the WebSocket and never answers the hello.
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  const connected = new Promise<void>((r) => wss.once('connection', () => r()));
  const link = new AgentLink({
    controllerUrl: `http://127.0.0.1:${port}`,
    identity: generateSigningIdentity(),
    pin: keyFingerprint(generateSigningIdentity().publicKey),
    log: pino({ level: 'silent' }),
    streams: new Map(),
    handlers: {},
  });
  const running = link.run();
  await connected;
  const started = Date.now();
  await link.stop();
  assert.equal(await running, null);
  assert.ok(Date.now() - started < 2_000, `run() took ${Date.now() - started} ms to end`);
  await new Promise<void>((r) => wss.close(() => r()));
});
