// Proves that sealing a frame's head and body separately gives the same bytes as sealing the joined
// plaintext (the send path no longer joins them), and that such frames open and decode as before.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeFrame, encodeFrame, encodeFrameHead } from './codec.ts';
import type { SessionFrame } from './frames.ts';
import { FrameOpener, FrameSealer, SEAL_SLICE, sealedLength, TAG_BYTES } from './sealed.ts';

test('seal(head, body) is seal(head + body), frame after frame, and opens to the same frame', () => {
  const key = randomBytes(32);
  const split = new FrameSealer(key);
  const joined = new FrameSealer(key);
  const opener = new FrameOpener(key);
  const frames: [SessionFrame, Buffer | undefined][] = [
    [{ type: 'chan.data', id: 'c1' }, randomBytes(64 * 1024)],
    [{ type: 'chan.data', id: 'c1' }, Buffer.of(0x61)],
    [{ type: 'stream.ack', stream: 'events', seq: 3 }, undefined],
    [{ type: 'chan.data', id: 'c1' }, Buffer.alloc(0)],
  ];
  for (const [frame, body] of frames) {
    assert.deepEqual(
      encodeFrame(frame, body),
      Buffer.concat([encodeFrameHead(frame), body ?? Buffer.alloc(0)]),
    );
    const sealed = split.seal(encodeFrameHead(frame), body);
    assert.deepEqual(sealed, joined.seal(encodeFrame(frame, body)));
    assert.equal(sealed.length, encodeFrame(frame, body).length + TAG_BYTES);
    const plain = opener.open(sealed);
    assert.ok(plain);
    const decoded = decodeFrame(plain);
    assert.ok(decoded.ok);
    assert.deepEqual(decoded.value.frame, frame);
    assert.deepEqual(decoded.value.body, body ?? Buffer.alloc(0));
  }
});

test('a frame sealed in two parts still fails to open out of order or when altered', () => {
  const key = randomBytes(32);
  const sealer = new FrameSealer(key);
  const first = sealer.seal(encodeFrameHead({ type: 'chan.data', id: 'c1' }), Buffer.from('one'));
  const second = sealer.seal(encodeFrameHead({ type: 'chan.data', id: 'c1' }), Buffer.from('two'));
  assert.equal(new FrameOpener(key).open(second), null);
  const altered = Buffer.from(first);
  altered[altered.length - TAG_BYTES - 1]! ^= 1;
  assert.equal(new FrameOpener(key).open(altered), null);
});

test('sealInto writes the bytes seal() returns, in slices, for bodies around the slice size', () => {
  const key = randomBytes(32);
  const a = new FrameSealer(key);
  const b = new FrameSealer(key);
  const opener = new FrameOpener(key);
  const head = encodeFrameHead({ type: 'stream.data', stream: 'logs', firstSeq: 1, count: 3 });
  const out = Buffer.alloc(4 * SEAL_SLICE + 64, 0xee);
  for (const bytes of [0, 1, SEAL_SLICE - 1, SEAL_SLICE, SEAL_SLICE + 1, 3 * SEAL_SLICE + 17]) {
    const body = randomBytes(bytes);
    const n = b.sealInto(out, head, body);
    assert.equal(n, sealedLength(head, body));
    assert.deepEqual(out.subarray(0, n), a.seal(head, body), `${bytes}-byte body`);
    const plain = opener.open(out.subarray(0, n));
    assert.ok(plain, `${bytes}-byte body opens`);
    assert.deepEqual(plain, Buffer.concat([head, body]));
  }
  assert.throws(() => b.sealInto(Buffer.alloc(10), head, randomBytes(10)), RangeError);
});
