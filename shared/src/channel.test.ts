// The channel's send path: large frames are sealed into pooled buffers, reused only once the socket
// has written them, and open to the frame that was sent; small frames keep their own buffer.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { FramePool, POOLED_FRAME_BYTES, SealedChannel, type MessageSocket } from './channel.ts';
import { decodeFrame } from './codec.ts';
import type { SessionFrame } from './frames.ts';
import { FrameOpener, FrameSealer } from './sealed.ts';

/** A socket that keeps what it was given and writes it when told (calls the send callback). */
function socket() {
  const sent: { data: Buffer; copy: Buffer; done?: (err?: Error) => void }[] = [];
  const s: MessageSocket = {
    bufferedAmount: 0,
    send(data, cb) {
      sent.push({ data, copy: Buffer.from(data), done: cb });
    },
    close() {},
  };
  return { s, sent };
}

function pair() {
  const key = randomBytes(32);
  const { s, sent } = socket();
  const channel = new SealedChannel(
    s,
    {
      version: 2,
      peerKey: Buffer.alloc(32),
      id: 't',
      sealer: new FrameSealer(key),
      opener: new FrameOpener(key),
    },
    { onFrame: () => {} },
  );
  const opener = new FrameOpener(key);
  const open = (data: Buffer) => {
    const plain = opener.open(data);
    assert.ok(plain, 'the frame authenticates as the next one');
    const decoded = decodeFrame(plain);
    assert.ok(decoded.ok);
    return decoded.value;
  };
  return { channel, sent, open };
}

const frame: SessionFrame = { type: 'stream.data', stream: 'logs', firstSeq: 1, count: 1 };

test('a large frame goes out in a pooled buffer that is reused only after the socket wrote it', () => {
  const { channel, sent, open } = pair();
  const bodies = [randomBytes(256 * 1024), randomBytes(256 * 1024), randomBytes(200 * 1024)];
  let written = 0;
  channel.send(frame, bodies[0], () => written++);
  channel.send(frame, bodies[1]);
  // Neither is written yet: two different buffers.
  assert.notEqual(sent[0]!.data.buffer, sent[1]!.data.buffer);
  sent[0]!.done!();
  assert.equal(written, 1, "the caller's callback runs when the socket wrote the frame");
  channel.send(frame, bodies[2]);
  assert.equal(sent[2]!.data.buffer, sent[0]!.data.buffer, 'the written buffer is used again');
  // Every frame opens, in order, to what was sent (the first one as it was when handed over).
  assert.deepEqual(open(sent[0]!.copy).body, bodies[0]);
  assert.deepEqual(open(sent[1]!.data).body, bodies[1]);
  assert.deepEqual(open(sent[2]!.data).body, bodies[2]);
});

test('a buffer whose write failed is not reused; a small frame is not pooled', () => {
  const { channel, sent, open } = pair();
  channel.send(frame, randomBytes(POOLED_FRAME_BYTES));
  sent[0]!.done!(new Error('socket closed'));
  channel.send(frame, randomBytes(POOLED_FRAME_BYTES));
  assert.notEqual(sent[1]!.data.buffer, sent[0]!.data.buffer);
  const small = randomBytes(100);
  channel.send(frame, small);
  assert.equal(sent[2]!.done, undefined, 'a small frame is sent as before, without a callback');
  open(sent[0]!.data);
  open(sent[1]!.data);
  assert.deepEqual(open(sent[2]!.data).body, small);
});

test('the frame pool keeps a bounded number of buffers and lets them go when idle', async () => {
  const pool = new FramePool(2, 128 * 1024, 50);
  const a = pool.take(70 * 1024);
  assert.equal(a.length, 128 * 1024, 'rounded up to 64 KiB');
  const b = pool.take(10);
  const c = pool.take(10);
  const big = pool.take(200 * 1024);
  for (const buf of [a, b, c, big]) pool.give(buf);
  assert.equal(pool.size, 2, 'at most `max` wait; larger than maxBytes never');
  assert.equal(pool.take(100 * 1024), a, 'a waiting buffer large enough is taken');
  pool.give(a);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(pool.size, 0, 'let go after idleMs without use');
});
