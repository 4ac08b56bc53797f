// Proves the controller treats an agent's answers as untrusted: a malformed result (null os, NUL
// in a text field, a missing field, a wrong type) is a typed 502 error and nothing is stored;
// unknown requests and bad params are refused before anything is sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KeelError, type SessionFrame } from '@keel/shared';
import { openSession } from '../agent/src/link/connection.ts';
import { sampleFacts } from './helpers/facts.ts';
import { enrollIdentity, removeDir, startTestController, waitFor } from './helpers/fleet.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let hostId: string;
/** What the hostile agent answers next, by method. */
let answers: Record<string, unknown> = {};
let received: string[] = [];
let close: () => void = () => {};

before(async () => {
  ctl = await startTestController();
  const enrolled = await enrollIdentity(ctl, 'hostile');
  hostId = enrolled.hostId;
  const identity = enrolled.identity;
  // A hostile agent: the real handshake, then whatever results the test scripts.
  let send: ((f: SessionFrame) => void) | null = null;
  const opened = await openSession({
    controllerUrl: ctl.url,
    identity,
    pin: ctl.fingerprint,
    mode: 'connect',
    onFrame: (frame) => {
      if (frame.type !== 'req') return;
      received.push(frame.method);
      // What the controller asks by itself on connect (the check set, …) is not scripted: refuse it
      // plainly, so only the scripted answers are malformed.
      if (!Object.hasOwn(answers, frame.method)) {
        send?.({
          type: 'res',
          id: frame.id,
          ok: false,
          error: { code: 'request.failed', message: 'not scripted in this test' },
        });
        return;
      }
      send?.({ type: 'res', id: frame.id, ok: true, result: answers[frame.method] });
    },
  });
  send = (f) => opened.channel.send(f);
  opened.channel.send({ type: 'facts', facts: sampleFacts });
  close = () => opened.ws.terminate();
  await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'hostile agent online');
});
after(async () => {
  close();
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

const actor = { id: 'system', ip: null };

describe('malformed results from an agent', () => {
  const bad: [string, unknown][] = [
    ['null os', { facts: { ...sampleFacts, os: null } }],
    ['NUL in the hostname', { facts: { ...sampleFacts, hostname: 'web\u00001' } }],
    ['a missing field', { facts: { ...sampleFacts, kernel: undefined } }],
    ['no facts at all', {}],
    ['a string instead of a number', { facts: { ...sampleFacts, memory: { totalBytes: 'lots' } } }],
  ];
  for (const [what, result] of bad) {
    test(`facts.refresh with ${what} -> agent.bad_result (502), nothing stored`, async () => {
      answers = { 'facts.refresh': result };
      const before = await ctl.services.hosts.get(hostId);
      await assert.rejects(ctl.services.hosts.refreshFacts(hostId, actor), (err: unknown) => {
        assert.ok(err instanceof KeelError);
        assert.equal(err.code, 'agent.bad_result');
        assert.equal(err.status, 502);
        return true;
      });
      const after = await ctl.services.hosts.get(hostId);
      assert.deepEqual(after.facts, before.facts);
      assert.equal(after.facts?.os.distro, sampleFacts.os.distro);
    });
  }

  test('ping with a malformed agentTime -> agent.bad_result', async () => {
    answers = { ping: { agentTime: 'now' } };
    await assert.rejects(ctl.services.hosts.ping(hostId, actor), { code: 'agent.bad_result' });
    answers = { ping: null };
    await assert.rejects(ctl.services.hosts.ping(hostId, actor), { code: 'agent.bad_result' });
  });

  test('a well-formed result passes and is stored', async () => {
    answers = { 'facts.refresh': { facts: { ...sampleFacts, kernel: '6.1.0-99-amd64' } } };
    const view = await ctl.services.hosts.refreshFacts(hostId, actor);
    assert.equal(view.facts?.kernel, '6.1.0-99-amd64');
  });
});

describe('requests refused before a round trip', () => {
  test('an unknown request -> request.unknown_method, nothing sent', async () => {
    received = [];
    await assert.rejects(
      ctl.gateway.request(hostId, 'no.such' as 'ping', {}),
      (err: unknown) => err instanceof KeelError && err.code === 'request.unknown_method',
    );
    assert.deepEqual(received, []);
  });

  test('bad params -> request.invalid, nothing sent', async () => {
    received = [];
    await assert.rejects(
      ctl.gateway.request(hostId, 'ping', { extra: true } as unknown as Record<string, never>),
      (err: unknown) => err instanceof KeelError && err.code === 'request.invalid',
    );
    assert.deepEqual(received, []);
  });
});
