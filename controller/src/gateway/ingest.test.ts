// Proves stream ingest enforces the offered window: an agent that sends more unacknowledged data
// than it was offered (plus one frame of slack) is cut off, while one that waits for acks is not;
// a restart of an agent's numbering is acked and logged; batches that queued up meanwhile are
// stored as one run with their exact bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { encodeRecords } from '@keel/shared';
import { StreamIngest } from './ingest.ts';
import type { GatewayStore } from './store.ts';

const KiB = 1024;
const body = encodeRecords([{ ts: 1, payload: Buffer.alloc(100 * KiB - 12) }]); // one 100 KiB record

function ingest(storeDelay: Promise<void>) {
  const failures: string[] = [];
  const acks: number[] = [];
  const store = {
    appendStream: async (_h: string, _s: string, batch: { firstSeq: number; count: number }) => {
      await storeDelay;
      return { ackedSeq: batch.firstSeq + batch.count - 1 };
    },
  } as unknown as GatewayStore;
  const i = new StreamIngest({
    hostId: 'h',
    store,
    ack: (_s, seq) => acks.push(seq),
    fail: (_code, reason) => failures.push(reason),
    log: pino({ level: 'silent' }),
    windowBytes: 256 * KiB,
    maxFrameBytes: 128 * KiB,
  });
  return { i, failures, acks };
}

test('more than window + one frame unacknowledged cuts the agent off', () => {
  const { i, failures } = ingest(new Promise(() => {})); // the database never answers
  for (let seq = 1; seq <= 3; seq++)
    i.push({ type: 'stream.data', stream: 'logs', firstSeq: seq, count: 1 }, body);
  assert.deepEqual(failures, []); // 300 KiB <= 256 + 128
  i.push({ type: 'stream.data', stream: 'logs', firstSeq: 4, count: 1 }, body);
  assert.equal(failures.length, 1);
  assert.match(failures[0]!, /flow control/);
});

test('an agent that waits for acks may send far more than the window in total', async () => {
  const { i, failures, acks } = ingest(Promise.resolve());
  for (let seq = 1; seq <= 20; seq++) {
    i.push({ type: 'stream.data', stream: 'logs', firstSeq: seq, count: 1 }, body);
    await i.drain();
  }
  assert.deepEqual(failures, []);
  assert.equal(acks.at(-1), 20);
});

test('a restart of the agent numbering is acked like any batch and logged as a warning', async () => {
  const lines: { level: number; msg: string; atSeq?: number }[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const acks: number[] = [];
  const store = {
    appendStream: async (_h: string, _s: string, batch: { firstSeq: number; count: number }) => ({
      ackedSeq: batch.firstSeq + batch.count - 1,
      restart: { atSeq: 101 },
    }),
  } as unknown as GatewayStore;
  const i = new StreamIngest({ hostId: 'h', store, ack: (_s, seq) => acks.push(seq), fail: () => {}, log });
  i.push({ type: 'stream.data', stream: 'events', firstSeq: 1, count: 1 }, body);
  await i.drain();
  assert.deepEqual(acks, [1]);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.level, 40);
  assert.match(lines[0]!.msg, /stream restarted/);
  assert.equal(lines[0]!.atSeq, 101);
});

test('batches that queued up are stored as one run with their exact bytes', async () => {
  const batchOf = (n: number) => encodeRecords([{ ts: n, payload: Buffer.alloc(50 * KiB, n) }]);
  const seen: { firstSeq: number; count: number; at: Buffer }[] = [];
  let release: (() => void) | null = null;
  const store = {
    appendStream: async (
      _h: string,
      _s: string,
      batch: { firstSeq: number; count: number; body: Buffer },
    ) => {
      const at = Buffer.from(batch.body);
      await new Promise<void>((r) => (release = r));
      // Nothing wrote over the bytes while they were being stored.
      assert.ok(batch.body.equals(at), `batch ${batch.firstSeq} changed while stored`);
      seen.push({ firstSeq: batch.firstSeq, count: batch.count, at });
      return { ackedSeq: batch.firstSeq + batch.count - 1 };
    },
  } as unknown as GatewayStore;
  const i = new StreamIngest({
    hostId: 'h',
    store,
    ack: () => {},
    fail: (_code, reason) => assert.fail(reason),
    log: pino({ level: 'silent' }),
  });
  const push = (seq: number) =>
    i.push({ type: 'stream.data', stream: 'logs', firstSeq: seq, count: 1 }, batchOf(seq));
  /** Waits until an append is in progress (the store holds it). */
  const waiting = async () => {
    for (let spins = 0; !release; spins++) {
      assert.ok(
        spins < 10_000,
        `no append waiting (stored so far: ${JSON.stringify(seen.map((s) => s.firstSeq))})`,
      );
      await new Promise((r) => setImmediate(r));
    }
  };
  /** Lets the append in progress finish. */
  const finish = () => {
    const r = release!;
    release = null;
    r();
  };
  push(1);
  await waiting(); // 1 alone
  push(2);
  push(3);
  finish();
  await waiting(); // 2 and 3, merged
  push(4);
  push(5);
  finish();
  await waiting(); // 4 and 5, merged
  push(6);
  finish();
  await waiting(); // 6 alone
  finish();
  await i.drain();
  assert.deepEqual(
    seen.map((s) => [s.firstSeq, s.count]),
    [
      [1, 1],
      [2, 2],
      [4, 2],
      [6, 1],
    ],
  );
  assert.ok(seen[1]!.at.equals(Buffer.concat([batchOf(2), batchOf(3)])));
  assert.ok(seen[2]!.at.equals(Buffer.concat([batchOf(4), batchOf(5)])));
});
