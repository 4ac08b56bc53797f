// Proves the send scheduler's promises: control frames never wait behind lanes, lanes take turns,
// the socket never holds more than the high-water mark, and a channel never sends beyond credit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionFrame } from './frames.ts';
import { ChannelInbox, ChannelOutbox, FairScheduler } from './scheduler.ts';

/** A socket stand-in that writes only when told to, recording the order of frames. */
function slowSink() {
  const sent: { frame: SessionFrame; bytes: number }[] = [];
  const pending: (() => void)[] = [];
  return {
    sent,
    closed: false,
    send(frame: SessionFrame, body?: Uint8Array, written?: () => void) {
      sent.push({ frame, bytes: body?.byteLength ?? 0 });
      if (written) pending.push(written);
    },
    /** Completes the oldest `n` writes. */
    drain(n = Infinity) {
      for (let i = 0; i < n && pending.length > 0; i++) pending.shift()!();
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

test('a control frame goes out at once while a channel floods, and the socket holds at most the high-water mark', async () => {
  const sink = slowSink();
  const scheduler = new FairScheduler(sink, { highWaterBytes: 128 * 1024 });
  const outbox = new ChannelOutbox('a', { credit: 64 * 1024 * 1024, queueLimit: Infinity });
  const lane = scheduler.lane(() => outbox.pull());
  outbox.onReady = () => lane.wake();
  outbox.push(new Uint8Array(16 * 1024 * 1024));
  await tick();
  // 128 KiB / 64 KiB chunks: two or three frames are in the socket, the rest waits.
  assert.ok(sink.sent.length <= 3, `sent ${sink.sent.length}`);
  assert.ok(scheduler.inflightBytes <= 128 * 1024 + 64 * 1024 + 128);
  scheduler.sendNow({ type: 'res', id: 'r1', ok: true, result: null });
  assert.equal(sink.sent.at(-1)!.frame.type, 'res');
  sink.drain();
  await tick();
  assert.ok(sink.sent.length <= 7);
});

test('lanes take turns: a flooding lane cannot starve another', async () => {
  const sink = slowSink();
  const scheduler = new FairScheduler(sink, { highWaterBytes: 1 });
  const flood = new ChannelOutbox('flood', { credit: 1e9, queueLimit: Infinity });
  const quiet = new ChannelOutbox('quiet', { credit: 1e9, queueLimit: Infinity });
  for (const box of [flood, quiet]) {
    const lane = scheduler.lane(() => box.pull());
    box.onReady = () => lane.wake();
  }
  flood.push(new Uint8Array(64 * 1024 * 10));
  await tick();
  quiet.push(new Uint8Array(3));
  for (let i = 0; i < 4; i++) {
    sink.drain();
    await tick();
  }
  const ids = sink.sent.map((s) => (s.frame as { id: string }).id);
  assert.ok(
    ids.indexOf('quiet') <= 2,
    `quiet went out at position ${ids.indexOf('quiet')}: ${ids.join(',')}`,
  );
});

test('an outbox sends no more than its credit and resumes on grant', async () => {
  const sink = slowSink();
  const scheduler = new FairScheduler(sink);
  const box = new ChannelOutbox('c', { credit: 100_000, queueLimit: 250_000 });
  const lane = scheduler.lane(() => box.pull());
  box.onReady = () => lane.wake();
  assert.equal(box.push(new Uint8Array(300_000)), false); // over the queue limit: wait
  let writable = false;
  void box.writable().then(() => (writable = true));
  await tick();
  sink.drain();
  await tick();
  assert.equal(
    sink.sent.reduce((n, s) => n + s.bytes, 0),
    100_000,
  );
  assert.equal(box.credit, 0);
  assert.equal(writable, true, 'the queue fell under its limit');
  box.grant(50_000);
  await tick();
  assert.equal(
    sink.sent.reduce((n, s) => n + s.bytes, 0),
    150_000,
  );
});

test('an inbox returns credit in batches and detects an overrun', () => {
  const inbox = new ChannelInbox(4000);
  assert.equal(inbox.received(2400), true);
  assert.equal(inbox.consumed(400), 0);
  assert.equal(inbox.consumed(800), 1200);
  assert.equal(inbox.received(2800), true);
  assert.equal(inbox.received(1), false);
});

test('small writes go out together, and every frame costs at least the minimum credit', async () => {
  const sink = slowSink();
  const scheduler = new FairScheduler(sink);
  const box = new ChannelOutbox('k', { credit: 1024, queueLimit: 1e9 });
  const lane = scheduler.lane(() => box.pull());
  box.onReady = () => lane.wake();
  for (let i = 0; i < 100; i++) box.push(Buffer.from('k'));
  await tick();
  // One frame carries all 100 keystrokes, and costs 256 of the 1024 credit.
  assert.equal(sink.sent.length, 1);
  assert.equal(sink.sent[0]!.bytes, 100);
  assert.equal(box.credit, 1024 - 256);
  // With less credit than a frame costs, nothing more goes out until the reader returns some.
  const tight = new ChannelOutbox('t', { credit: 200, queueLimit: 1e9 });
  tight.push(Buffer.from('x'));
  assert.equal(tight.pull(), null);
  tight.grant(56);
  assert.equal(tight.pull()?.body?.byteLength, 1);
  // The reader charges the same: 4 one-byte frames use 1024 of its 1024.
  const inbox = new ChannelInbox(1024);
  for (let i = 0; i < 4; i++) assert.equal(inbox.received(1), true);
  assert.equal(inbox.received(1), false);
});
