// Proves stream sinks: each kind goes to its own sink (others to the fallback), the chunk sink
// returns the store's ack and publishes exactly the records it newly stored — a batch resent
// after a reconnect is not published twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRecords, type RecordBatch } from '@keel/shared';
import { chunkSink, StreamSinks, type StoredRecords } from './sinks.ts';

const batch = (firstSeq: number, texts: string[]): RecordBatch => ({
  firstSeq,
  count: texts.length,
  body: encodeRecords(texts.map((t, i) => ({ ts: 1000 + i, payload: Buffer.from(t) }))),
});

test('the chunk sink acks what the store acks and publishes each stored record once', async () => {
  const appended: { stream: string; firstSeq: number }[] = [];
  let cursor = 0;
  const store = {
    appendStream: (_h: string, stream: string, b: RecordBatch) => {
      appended.push({ stream, firstSeq: b.firstSeq });
      cursor = Math.max(cursor, b.firstSeq + b.count - 1);
      return Promise.resolve({ ackedSeq: cursor });
    },
  };
  const published: StoredRecords[] = [];
  const sink = chunkSink({ store, publish: (s) => published.push(s) });
  assert.deepEqual(await sink.append('h1', 'events', batch(1, ['a', 'b'])), { ackedSeq: 2 });
  // Resent after a reconnect (overlapping), then new records.
  await sink.append('h1', 'events', batch(2, ['b', 'c']));
  const seqs = published.flatMap((p) => p.records.map((r) => `${r.seq}:${r.payload.toString()}`));
  assert.deepEqual(seqs, ['1:a', '2:b', '3:c']);
  assert.equal(published.at(-1)!.ackedSeq, 3);
  assert.equal(published[0]!.records[0]!.ts, 1000);
  assert.equal(published[0]!.hostId, 'h1');
});

test('each kind has its sink; kinds without one use the fallback; a kind registers once', async () => {
  const used: string[] = [];
  const sink = (name: string) => ({
    append: () => (used.push(name), Promise.resolve({ ackedSeq: 1 })),
  });
  const sinks = new StreamSinks(sink('fallback')).register('events', sink('events'));
  await sinks.append('h', 'events', batch(1, ['x']));
  await sinks.append('h', 'bench', batch(1, ['x']));
  assert.deepEqual(used, ['events', 'fallback']);
  assert.throws(() => sinks.register('events', sink('again')), /already has a sink/);
});
