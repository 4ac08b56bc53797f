// Proves the session-frame codec round-trips every frame family and rejects malformed input
// with a reason instead of throwing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame, encodeFrame } from './codec.ts';
import { decodeRecords, encodeRecords, indexRecords, recordTimeRange, sliceRecords } from './records.ts';

test('frames round-trip, stream data keeps its body', () => {
  const body = encodeRecords([
    { ts: 1, payload: Buffer.from('a') },
    { ts: 2, payload: Buffer.from('bc') },
  ]);
  const enc = encodeFrame({ type: 'stream.data', stream: 'events', firstSeq: 7, count: 2 }, body);
  const dec = decodeFrame(enc);
  assert.ok(dec.ok);
  assert.deepEqual(dec.value.frame, { type: 'stream.data', stream: 'events', firstSeq: 7, count: 2 });
  assert.deepEqual(dec.value.body, body);
  const req = decodeFrame(
    encodeFrame({ type: 'req', id: 'r1', method: 'ping', timeoutMs: 1000, params: {} }),
  );
  assert.ok(req.ok && req.value.frame.type === 'req');
});

test('malformed frames are reported, not thrown', () => {
  const bad = [
    Buffer.alloc(0),
    Buffer.from([0, 0, 0, 50, 1]),
    Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')]),
    encodeFrame({ type: 'nope' } as never),
    encodeFrame({ type: 'stream.ack', stream: 'BAD STREAM', seq: 1 }),
    encodeFrame({ type: 'stream.ack', stream: 'events', seq: -1 }),
    encodeFrame({ type: 'stream.ack', stream: 'events', seq: 1, extra: true } as never),
    encodeFrame({ type: 'stream.ack', stream: 'events', seq: 1 }, Buffer.from('body not allowed')),
  ];
  for (const b of bad) {
    const r = decodeFrame(b);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.reason.length > 0);
  }
});

test('record batches: encode, index, slice and time range', () => {
  const records = Array.from({ length: 10 }, (_, i) => ({ ts: 1000 + i, payload: Buffer.from(`rec-${i}`) }));
  const body = encodeRecords(records);
  assert.equal(indexRecords(body, 10)?.length, 11);
  assert.equal(indexRecords(body, 9), null);
  assert.equal(indexRecords(body.subarray(0, body.length - 1), 10), null);
  const sliced = sliceRecords({ firstSeq: 1, count: 10, body }, 4);
  assert.equal(sliced.firstSeq, 5);
  assert.deepEqual(
    decodeRecords(sliced.body, sliced.count).map((r) => r.payload.toString()),
    records.slice(4).map((r) => r.payload.toString()),
  );
  assert.deepEqual(recordTimeRange(body, 10), [1000, 1009]);
  assert.throws(() => decodeRecords(body.subarray(0, 5)), RangeError);
});
