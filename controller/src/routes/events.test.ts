// Proves GET /api/v1/events: a published host event reaches the client as `event: host`, a
// heartbeat comment goes out every 15 s, a client that stops reading is dropped instead of being
// buffered for without bound, and the bus subscription ends with the stream.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../app-fixture.ts';
import type { HostView } from '../gateway/types.ts';

const host: HostView = {
  id: '6c1d9a52-9a8e-4c6b-8a47-1f0d7f1c2b3a',
  name: 'edge-9',
  online: true,
  connectedAt: '2025-01-01T00:00:00.000Z',
  lastSeenAt: '2025-01-01T00:00:00.000Z',
  enrolledAt: '2024-12-31T00:00:00.000Z',
  revokedAt: null,
  agentVersion: '0.1.0',
  facts: null,
  capabilities: null,
};

let t: TestApp;
let me: SignedIn;
/** Bus subscriptions the app holds at rest (services that follow the bus, e.g. the process audit). */
let atRest = 0;
before(async () => {
  t = await openTestApp({ appDeps: { events: { maxQueuedEvents: 8 } } });
  me = await t.signInAs('viewer');
  atRest = t.subscriptions.live;
});
after(async () => {
  await t.close();
});

/** Waits (up to 15 s: a busy host may take a while to run the cancel) until no stream is subscribed. */
async function noSubscriptions() {
  for (const end = Date.now() + 15_000; t.subscriptions.live > atRest && Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads SSE text until `until` matches, or fails after `maxChunks` reads. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  until: RegExp,
  seen = { text: '' },
) {
  const decoder = new TextDecoder();
  for (let i = 0; i < 100 && !until.test(seen.text); i++) {
    const { value, done } = await reader.read();
    if (done) break;
    seen.text += decoder.decode(value, { stream: true });
  }
  return seen.text;
}

describe('GET /api/v1/events', () => {
  test('needs a session', async () => {
    const res = await t.request('/api/v1/events');
    assert.equal(res.status, 401);
  });

  test('delivers a published host event', async () => {
    const res = await t.request('/api/v1/events', { as: me });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    assert.match(await readUntil(reader, /event: ready/), /event: ready/);

    t.bus.publish({ type: 'host', host });
    const text = await readUntil(reader, /event: host\n/);
    const block = text.split('\n\n').find((b) => b.startsWith('event: host\n'));
    assert.ok(block, text);
    const data = block
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => l.slice(6))
      .join('\n');
    assert.deepEqual(JSON.parse(data), host);
    await reader.cancel();
    // Cancelling (the browser going away) ends the subscription.
    await noSubscriptions();
    assert.equal(t.subscriptions.live, atRest);
  });

  test('sends a heartbeat comment every 15 s', async (ctx) => {
    ctx.mock.timers.enable({ apis: ['setInterval'] });
    const res = await t.request('/api/v1/events', { as: me });
    const reader = res.body!.getReader();
    const seen = { text: '' };
    await readUntil(reader, /event: ready/, seen);
    ctx.mock.timers.tick(15_000);
    assert.match(await readUntil(reader, /: heartbeat\n\n/, seen), /: heartbeat\n\n/);
    await reader.cancel();
  });

  test('drops a client that stops reading, and unsubscribes it', async () => {
    await noSubscriptions(); // the heartbeat test's stream, cancelled just before
    const res = await t.request('/api/v1/events', { as: me });
    const reader = res.body!.getReader();
    await readUntil(reader, /event: ready/);
    assert.equal(t.subscriptions.live, atRest + 1);
    for (let i = 0; i < 200; i++) t.bus.publish({ type: 'host', host: { ...host, name: `edge-${i}` } });
    // The stream ends after at most the bounded backlog.
    let events = 0;
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      events += decoder.decode(value).split('event: host\n').length - 1;
    }
    assert.ok(events <= 10, `a dropped client got ${events} events`);
    assert.match(t.logLines.join(''), /client too slow/);
    await noSubscriptions();
    assert.equal(t.subscriptions.live, atRest);
  });
});
