// Proves how the agent serves a request: bad params are a typed error and the handler never runs;
// an unknown or unserved request is a typed error; a handler's malformed result is never sent; a
// result over what the link carries is request.too_large.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { MAX_PAYLOAD_BYTES, type RequestFrame } from '@keel/shared';
import { answerRequest, serveRequest, type RequestHandler } from './requests.ts';

const log = pino({ level: 'silent' });
const req = (method: string, params: unknown): RequestFrame => ({
  type: 'req',
  id: 'r1',
  method,
  timeoutMs: 1_000,
  params,
});

test('bad params -> request.invalid, the handler is never called', async () => {
  let calls = 0;
  const handlers: Record<string, RequestHandler> = { ping: () => (calls++, { agentTime: 1 }) };
  for (const params of [{ extra: 1 }, null, 'x', [1]]) {
    const res = await serveRequest(req('ping', params), handlers, log);
    assert.equal(res.ok, false);
    assert.equal(!res.ok && res.error.code, 'request.invalid');
  }
  assert.equal(calls, 0);
  const ok = await serveRequest(req('ping', {}), handlers, log);
  assert.deepEqual(ok, { type: 'res', id: 'r1', ok: true, result: { agentTime: 1 } });
  assert.equal(calls, 1);
});

test('a request outside the catalogue, or one this agent has no handler for -> request.unknown_method', async () => {
  const handlers: Record<string, RequestHandler> = { 'no.such': () => ({}) };
  for (const method of ['no.such', 'facts.refresh', '__proto__', 'constructor']) {
    const res = await serveRequest(req(method, {}), handlers, log);
    assert.equal(!res.ok && res.error.code, 'request.unknown_method', method);
  }
});

test("a handler's malformed result is not sent: request.failed instead", async () => {
  const handlers: Record<string, RequestHandler> = {
    ping: () => ({ agentTime: 'soon' }),
    'facts.refresh': () => ({ facts: { hostname: 'a\u0000b' } }),
  };
  for (const method of ['ping', 'facts.refresh']) {
    const res = await serveRequest(req(method, {}), handlers, log);
    assert.equal(!res.ok && res.error.code, 'request.failed', method);
  }
});

test('a typed error from the handler keeps its code; anything else is request.failed', async () => {
  const { KeelError } = await import('@keel/shared');
  const handlers: Record<string, RequestHandler> = {
    ping: () => {
      throw new KeelError('host.offline', 'busy');
    },
    'facts.refresh': () => {
      throw new Error('disk on fire');
    },
  };
  const a = await serveRequest(req('ping', {}), handlers, log);
  assert.deepEqual(!a.ok && a.error, { code: 'host.offline', message: 'busy' });
  const b = await serveRequest(req('facts.refresh', {}), handlers, log);
  assert.deepEqual(!b.ok && b.error, { code: 'request.failed', message: 'disk on fire' });
});

test('a result over what the link carries is request.too_large; a large one under it comes as JSON for parts', async () => {
  const users = Array.from({ length: 20_000 }, (_, i) => ({ id: `user-${i}`, upBytes: i, downBytes: i }));
  const handlers: Record<string, RequestHandler> = {
    'config.traffic': () => ({ instance: 'vpn', counterEpoch: 'e', users }),
  };
  const frame = req('config.traffic', { instance: 'vpn' });
  // Protocol 2 peer: ~200 KiB of JSON at most.
  const small = await serveRequest(frame, handlers, log);
  assert.equal(!small.ok && small.error.code, 'request.too_large');
  const large = await answerRequest(frame, handlers, log, { maxResultBytes: MAX_PAYLOAD_BYTES });
  assert.equal(large.frame.ok, true);
  assert.ok(large.json && large.json.length > 500_000);
  assert.equal((JSON.parse(large.json.toString()) as { users: unknown[] }).users.length, 20_000);
});
