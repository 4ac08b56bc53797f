// Proves how the agent serves a request: bad params are a typed error and the handler never runs;
// an unknown or unserved request is a typed error; a handler's malformed result is never sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { RequestFrame } from '@keel/shared';
import { serveRequest, type RequestHandler } from './requests.ts';

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
