// Proves the agent capability contract: capabilities compose into one set of handlers, streams
// and channel kinds (a name claimed twice is refused); facts is a capability that reports after
// every session and on change; facts are read without systeminformation (never loaded at all).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import pino from 'pino';
import type { HostFacts, SessionFrame } from '@keel/shared';
import {
  composeCapabilities,
  startCapabilities,
  stopCapabilities,
  type AgentCapability,
} from './capabilities.ts';
import { factsCapability } from './facts/capability.ts';
import { sampleFacts } from '../../test/helpers/facts.ts';

const log = pino({ level: 'silent' });
const loaded = (name: string) =>
  Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes(`/node_modules/${name}/`));

test('the agent loads no systeminformation, at start or to read facts', async () => {
  await import('./main.ts');
  assert.equal(loaded('systeminformation'), false, 'loaded at start');
  const { collectFacts } = await import('./facts/index.ts');
  const facts = await collectFacts();
  assert.equal(typeof facts.hostname, 'string');
  assert.equal(loaded('systeminformation'), false, 'loaded by a facts reading');
});

test('capabilities compose; a request, stream or channel kind declared twice is refused', () => {
  const a: AgentCapability = { name: 'a', requests: { ping: () => ({ agentTime: 1 }) }, streams: ['events'] };
  const b: AgentCapability = { name: 'b', requests: { 'facts.refresh': () => ({ facts: sampleFacts }) } };
  const composed = composeCapabilities([a, b]);
  assert.deepEqual(Object.keys(composed.handlers).sort(), ['facts.refresh', 'ping']);
  assert.deepEqual(composed.streams, ['events']);
  assert.throws(() => composeCapabilities([a, { name: 'c', streams: ['events'] }]), /stream events.*a and c/);
  assert.throws(
    () =>
      composeCapabilities([b, { name: 'd', requests: { 'facts.refresh': () => ({ facts: sampleFacts }) } }]),
    /request facts\.refresh/,
  );
});

test('facts: sent after every session, on change, and by facts.refresh (with a facts.changed event)', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let current: HostFacts = sampleFacts;
  const sent: SessionFrame[] = [];
  const events: { kind: string; data?: Record<string, unknown> }[] = [];
  const sessions: (() => void)[] = [];
  const facts = factsCapability({ checkMs: 1_000, collect: () => Promise.resolve(current) });
  await startCapabilities([facts], {
    log,
    emit: (kind, data) => events.push({ kind, data }),
    send: (frame) => sent.push(frame),
    onSession: (listener) => sessions.push(listener),
    stream: () => assert.fail('facts declares no stream'),
  });
  assert.equal(sessions.length, 1);
  sessions[0]!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, [{ type: 'facts', facts: sampleFacts }]);

  current = { ...sampleFacts, kernel: '6.2.0' };
  t.mock.timers.tick(1_000);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent.at(-1), { type: 'facts', facts: current });
  assert.deepEqual(events, [{ kind: 'facts.changed', data: { changed: ['kernel'] } }]);

  current = { ...current, hostname: 'web-2' };
  const refreshed = await facts.requests['facts.refresh']();
  assert.equal(refreshed.facts.hostname, 'web-2');
  assert.equal(events.length, 2);
  await stopCapabilities([facts], log);
});
