// Proves the request broker's at-most-once rule: a request waiting for an offline host fails at
// its deadline and is never sent later; a request sent on a session that drops is failed, not
// resent; answers from another host or for unknown ids are ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestFrame } from '@keel/shared';
import { RequestBroker } from './requests.ts';

/** Each host's current session object (a new object per connection). */
function broker(online: Set<string>) {
  const sent: { hostId: string; frame: RequestFrame }[] = [];
  const sessions = new Map<string, object>();
  const session = (hostId: string) => {
    if (!sessions.has(hostId)) sessions.set(hostId, {});
    return sessions.get(hostId)!;
  };
  const b = new RequestBroker((hostId, frame) => {
    if (!online.has(hostId)) return null;
    sent.push({ hostId, frame });
    return session(hostId);
  });
  /** Ends a host's current session; the next send opens a new one. */
  const endSession = (hostId: string) => {
    const s = session(hostId);
    sessions.delete(hostId);
    b.hostOffline(hostId, s);
  };
  /** A new session takes over without the old one's end being reported yet. */
  const replaceSession = (hostId: string) => sessions.set(hostId, {});
  return { b, sent, endSession, session, replaceSession };
}

test('waits for an offline host, then fails at the deadline and never sends afterwards', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const online = new Set<string>();
  const { b, sent } = broker(online);
  const p = b.request('h1', 'ping', {}, 1000);
  t.mock.timers.tick(999);
  assert.equal(sent.length, 0);
  t.mock.timers.tick(1);
  await assert.rejects(
    p,
    (e: { code?: string; message: string }) =>
      e.code === 'request.deadline_exceeded' && /offline/.test(e.message),
  );
  online.add('h1');
  b.hostOnline('h1');
  assert.equal(sent.length, 0, 'an expired request must not run later');
  assert.equal(b.size, 0);
});

test('a host that comes online in time gets the request once, with the remaining deadline', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const online = new Set<string>();
  const { b, sent } = broker(online);
  const p = b.request('h1', 'ping', {}, 1000);
  t.mock.timers.tick(400);
  online.add('h1');
  b.hostOnline('h1');
  b.hostOnline('h1');
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.frame.timeoutMs, 600);
  b.onResponse('h2', { type: 'res', id: sent[0]!.frame.id, ok: true, result: 'wrong host' });
  b.onResponse('h1', { type: 'res', id: 'unknown', ok: true, result: 'unknown id' });
  b.onResponse('h1', { type: 'res', id: sent[0]!.frame.id, ok: true, result: { agentTime: 1 } });
  assert.deepEqual(await p, { agentTime: 1 });
});

test('a disconnect after sending fails the request and it is not resent on reconnect', async () => {
  const online = new Set(['h1']);
  const { b, sent, endSession } = broker(online);
  const p = b.request('h1', 'ping', {}, 5000);
  assert.equal(sent.length, 1);
  endSession('h1');
  await assert.rejects(p, (e: { code?: string }) => e.code === 'request.disconnected');
  b.hostOnline('h1');
  assert.equal(sent.length, 1);
});

test('the late end of a replaced session does not fail requests sent on the new one', async () => {
  const online = new Set(['h1']);
  const { b, sent, session, replaceSession } = broker(online);
  const sessionA = session('h1');
  const first = b.request('h1', 'ping', {}, 5000);
  replaceSession('h1'); // session B takes over before A's close event arrives
  const second = b.request('h1', 'ping', {}, 5000);
  assert.notEqual(session('h1'), sessionA);
  // A's close arrives late: only what was sent on A fails.
  b.hostOffline('h1', sessionA);
  await assert.rejects(first, (e: { code?: string }) => e.code === 'request.disconnected');
  b.onResponse('h1', { type: 'res', id: sent[1]!.frame.id, ok: true, result: 'ok' });
  assert.equal(await second, 'ok');
});

test('agent errors keep their code when known, else become request.failed', async () => {
  const { b, sent } = broker(new Set(['h1']));
  const p1 = b.request('h1', 'x', {}, 5000);
  b.onResponse('h1', {
    type: 'res',
    id: sent[0]!.frame.id,
    ok: false,
    error: { code: 'request.unknown_method', message: 'no' },
  });
  await assert.rejects(p1, (e: { code?: string }) => e.code === 'request.unknown_method');
  const p2 = b.request('h1', 'x', {}, 5000);
  b.onResponse('h1', {
    type: 'res',
    id: sent[1]!.frame.id,
    ok: false,
    error: { code: 'made.up', message: 'boom' },
  });
  await assert.rejects(
    p2,
    (e: { code?: string; message: string }) => e.code === 'request.failed' && e.message === 'boom',
  );
});

test("an agent's error code that would read as the controller's fault (500) becomes request.failed", async () => {
  const online = new Set(['h1']);
  const { b, sent } = broker(online);
  const p = b.request('h1', 'ping', {}, 5000);
  b.onResponse('h1', {
    type: 'res',
    id: sent[0]!.frame.id,
    ok: false,
    error: { code: 'internal', message: 'x' },
  });
  await assert.rejects(p, (e: { code?: string }) => e.code === 'request.failed');
  const q = b.request('h1', 'ping', {}, 5000);
  b.onResponse('h1', {
    type: 'res',
    id: sent[1]!.frame.id,
    ok: false,
    error: { code: 'host.offline', message: 'x' },
  });
  await assert.rejects(q, (e: { code?: string }) => e.code === 'host.offline');
});
