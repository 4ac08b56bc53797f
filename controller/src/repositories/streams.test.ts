// Proves stream storage on every test driver: appends de-duplicate by sequence (an overlapping
// resend stores each record once, even when sent concurrently), gaps are recorded, an agent whose
// numbering went backwards (wiped or restored spool) restarts the stream after a marked gap with
// none of its new records dropped, chunks are compressed (LZ4) and split, chunks written before
// LZ4 (deflate) read, resend-check and mix with new ones, a chunk that does not decode is an error,
// the cursor survives a reopen, and reads return records in order with gaps.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { and, asc, eq } from 'drizzle-orm';
import { encodeRecords, KeelError, type RecordBatch, type StreamRecord } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { hosts as hostsTable } from '../db/schema/hosts.ts';
import { chunkCodec, streamChunks } from '../db/schema/streams.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { ChunkDecodeError, decodeChunk } from './chunk-codec.ts';
import { CHUNK_MAX_RAW_BYTES, createStreamRepository, type StreamRepository } from './streams.ts';

const T0 = Date.UTC(2030, 0, 1);

/** A log-like record for `seq`: what the agent would have captured. */
function line(seq: number): StreamRecord {
  return {
    ts: T0 + seq * 1.5,
    payload: Buffer.from(
      `2030-01-01T00:00:00Z web-1 nginx[812]: GET /api/v1/items/${seq} 200 ${seq % 997}ms`,
    ),
  };
}

/** Records `from..to` of a stream as one batch. */
function batch(from: number, to: number, make: (seq: number) => StreamRecord = line): RecordBatch {
  const records: StreamRecord[] = [];
  for (let s = from; s <= to; s++) records.push(make(s));
  return { firstSeq: from, count: records.length, body: encodeRecords(records) };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof KeelError && err.code === code);
}

for (const target of testDatabaseTargets()) {
  describe(`streams repository (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let streams: StreamRepository;

    const newHost = async () => {
      const [row] = await db
        .insert(hostsTable)
        .values({ name: 'h', publicKey: randomBytes(32).toString('base64url') })
        .returning({ id: hostsTable.id });
      return row!.id;
    };
    const chunksOf = (hostId: string, stream: string) =>
      db
        .select()
        .from(streamChunks)
        .where(and(eq(streamChunks.hostId, hostId), eq(streamChunks.stream, stream)))
        .orderBy(asc(streamChunks.firstSeq));

    before(async () => {
      testDb = await target.create();
      handle = await testDb.open();
      db = handle.db;
      streams = createStreamRepository(db);
    });
    after(() => testDb.cleanup());

    test('append stores a batch and read returns it in order', async () => {
      const host = await newHost();
      assert.equal(await streams.cursor(host, 'logs'), 0);
      assert.deepEqual(await streams.append(host, 'logs', batch(1, 100)), { ackedSeq: 100 });
      assert.equal(await streams.cursor(host, 'logs'), 100);
      const { records, gaps } = await streams.read(host, 'logs', 0, 1000);
      assert.deepEqual(gaps, []);
      assert.deepEqual(
        records.map((r) => r.seq),
        Array.from({ length: 100 }, (_, i) => i + 1),
      );
      for (const r of records) {
        assert.equal(r.ts, line(r.seq).ts);
        assert.deepEqual(r.payload, Buffer.from(line(r.seq).payload));
      }
    });

    test('an overlapping resend stores each record once', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 10));
      assert.deepEqual(await streams.append(host, 'logs', batch(5, 15)), { ackedSeq: 15 });
      // Entirely old: nothing stored; the ack covers the batch (never records not yet sent).
      assert.deepEqual(await streams.append(host, 'logs', batch(1, 15)), { ackedSeq: 15 });
      assert.deepEqual(await streams.append(host, 'logs', batch(3, 7)), { ackedSeq: 7 });
      const { records } = await streams.read(host, 'logs', 0, 100);
      assert.deepEqual(
        records.map((r) => r.seq),
        Array.from({ length: 15 }, (_, i) => i + 1),
      );
      for (const r of records) assert.deepEqual(r.payload, Buffer.from(line(r.seq).payload));
      const chunks = await chunksOf(host, 'logs');
      assert.deepEqual(
        chunks.map((c) => [c.firstSeq, c.lastSeq, c.count]),
        [
          [1, 10, 10],
          [11, 15, 5],
        ],
      );
    });

    test('concurrent appends of the same batch store it once', async () => {
      const host = await newHost();
      const results = await Promise.all(
        Array.from({ length: 10 }, () => streams.append(host, 'logs', batch(1, 50))),
      );
      for (const r of results) assert.equal(r.ackedSeq, 50);
      assert.equal((await chunksOf(host, 'logs')).length, 1);
      assert.equal((await streams.read(host, 'logs', 0, 1000)).records.length, 50);
    });

    test('a jump in sequence is recorded as a gap', async () => {
      const host = await newHost();
      await streams.append(host, 'events', batch(1, 10));
      const res = await streams.append(host, 'events', batch(21, 25));
      assert.deepEqual(res, { ackedSeq: 25, gap: { fromSeq: 11, toSeq: 20 } });
      // An empty batch past the cursor says "records up to firstSeq-1 were lost".
      assert.deepEqual(
        await streams.append(host, 'events', { firstSeq: 31, count: 0, body: Buffer.alloc(0) }),
        {
          ackedSeq: 30,
          gap: { fromSeq: 26, toSeq: 30 },
        },
      );
      assert.deepEqual(
        await streams.append(host, 'events', { firstSeq: 31, count: 0, body: Buffer.alloc(0) }),
        {
          ackedSeq: 30,
        },
      );
      // A first batch that does not start at 1 is a gap too.
      assert.deepEqual(await streams.append(host, 'other', batch(5, 6)), {
        ackedSeq: 6,
        gap: { fromSeq: 1, toSeq: 4 },
      });

      const all = await streams.read(host, 'events', 0, 100);
      assert.deepEqual(
        all.records.map((r) => r.seq),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 21, 22, 23, 24, 25],
      );
      assert.deepEqual(
        all.gaps.map((g) => [g.fromSeq, g.toSeq]),
        [
          [11, 20],
          [26, 30],
        ],
      );
      for (const g of all.gaps) assert.ok(g.at instanceof Date);
      for (const g of all.gaps) assert.equal(g.reason, 'lost');
      // Paging: the first page ends before the gap, so it does not report it.
      const page1 = await streams.read(host, 'events', 0, 10);
      assert.equal(page1.records.at(-1)?.seq, 10);
      assert.deepEqual(page1.gaps, []);
      const page2 = await streams.read(host, 'events', 10, 3);
      assert.deepEqual(
        page2.records.map((r) => r.seq),
        [21, 22, 23],
      );
      assert.deepEqual(
        page2.gaps.map((g) => [g.fromSeq, g.toSeq]),
        [[11, 20]],
      );
      const tail = await streams.read(host, 'events', 25, 10);
      assert.deepEqual(tail.records, []);
      assert.deepEqual(
        tail.gaps.map((g) => [g.fromSeq, g.toSeq]),
        [[26, 30]],
      );
    });

    test('records that differ under numbers already stored (a wiped spool) restart the stream; none is dropped', async () => {
      const host = await newHost();
      await streams.append(host, 'events', batch(1, 20));
      // The agent's spool was wiped: it numbers from 1 again, with new records.
      const fresh = (seq: number): StreamRecord => ({
        ts: T0 + 1e6 + seq,
        payload: Buffer.from(`{"kind":"agent.started","run":2,"n":${seq}}`),
      });
      assert.deepEqual(await streams.append(host, 'events', batch(1, 5, fresh)), {
        ackedSeq: 5,
        restart: { atSeq: 21 },
      });
      // It goes on (the common one-statement path) and resends (compared, stored once).
      assert.deepEqual(await streams.append(host, 'events', batch(6, 8, fresh)), { ackedSeq: 8 });
      assert.deepEqual(await streams.append(host, 'events', batch(4, 10, fresh)), { ackedSeq: 10 });
      assert.deepEqual(await streams.append(host, 'events', batch(9, 10, fresh)), { ackedSeq: 10 });
      assert.equal(await streams.cursor(host, 'events'), 31);
      assert.deepEqual(await streams.cursors(host), { events: 31 });

      const all = await streams.read(host, 'events', 0, 100);
      assert.deepEqual(
        all.records.map((r) => r.seq),
        [...Array.from({ length: 20 }, (_, i) => i + 1), ...Array.from({ length: 10 }, (_, i) => i + 22)],
      );
      for (const r of all.records) {
        const want = r.seq <= 20 ? line(r.seq) : fresh(r.seq - 21);
        assert.equal(r.ts, want.ts, `seq ${r.seq}`);
        assert.deepEqual(r.payload, Buffer.from(want.payload), `seq ${r.seq}`);
      }
      assert.deepEqual(
        all.gaps.map((g) => [g.fromSeq, g.toSeq, g.reason]),
        [[21, 21, 'restart']],
      );
      // Paging across the marker reports it on the page that reaches past it.
      assert.deepEqual(
        (await streams.read(host, 'events', 0, 20)).gaps.map((g) => g.fromSeq),
        [],
      );
      assert.deepEqual(
        (await streams.read(host, 'events', 20, 1)).gaps.map((g) => [g.fromSeq, g.reason]),
        [[21, 'restart']],
      );
    });

    test('a spool restored from an older copy, and a resend into a lost range, restart the stream too', async () => {
      const host = await newHost();
      await streams.append(host, 'events', batch(1, 30));
      // Restored to where it stood at 10: its new records take numbers 11.. again.
      const restored = (seq: number): StreamRecord => ({
        ts: T0 + 2e6 + seq,
        payload: Buffer.from(`r${seq}`),
      });
      // What it still held from before (6..10) is a true resend; 11.. are new.
      assert.deepEqual(
        await streams.append(
          host,
          'events',
          batch(6, 14, (s) => (s <= 10 ? line(s) : restored(s))),
        ),
        { ackedSeq: 14, restart: { atSeq: 31 } },
      );
      const all = await streams.read(host, 'events', 0, 100);
      assert.equal(all.records.length, 30 + 4, 'the resent part once, the new records after the marker');
      assert.deepEqual(
        all.records.slice(30).map((r) => [r.seq, r.payload.toString()]),
        [
          [32, 'r11'],
          [33, 'r12'],
          [34, 'r13'],
          [35, 'r14'],
        ],
      );
      // It goes on under the new mapping.
      assert.deepEqual(await streams.append(host, 'events', batch(15, 15, restored)), { ackedSeq: 15 });
      assert.equal(await streams.cursor(host, 'events'), 36);

      // Numbers recorded as lost were never stored: records arriving under them are not duplicates.
      const other = await newHost();
      await streams.append(other, 'events', batch(1, 5));
      await streams.append(other, 'events', batch(11, 12));
      assert.deepEqual(await streams.append(other, 'events', batch(6, 10)), {
        ackedSeq: 10,
        restart: { atSeq: 13 },
      });
      const kept = await streams.read(other, 'events', 0, 100);
      assert.deepEqual(
        kept.records.map((r) => r.seq),
        [1, 2, 3, 4, 5, 11, 12, 14, 15, 16, 17, 18],
      );
      assert.deepEqual(
        kept.gaps.map((g) => [g.fromSeq, g.toSeq, g.reason]),
        [
          [6, 10, 'lost'],
          [13, 13, 'restart'],
        ],
      );
    });

    test('read starts inside a chunk and honours the limit', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 100));
      await streams.append(host, 'logs', batch(101, 200));
      const { records } = await streams.read(host, 'logs', 95, 10);
      assert.deepEqual(
        records.map((r) => r.seq),
        [96, 97, 98, 99, 100, 101, 102, 103, 104, 105],
      );
      assert.deepEqual(await streams.read(host, 'logs', 200, 10), { records: [], gaps: [] });
      assert.deepEqual((await streams.read(host, 'logs', 0, 0)).records, []);
    });

    test('chunks are LZ4-compressed, incompressible ones stored raw, big batches split', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 500));
      const [text] = await chunksOf(host, 'logs');
      assert.equal(text?.codec, chunkCodec.lz4);
      assert.ok(
        text!.data.length < batch(1, 500).body.length / 2,
        `compressed to ${text!.data.length} bytes`,
      );
      assert.deepEqual(await decodeChunk(text!.codec, text!.data), batch(1, 500).body);
      assert.deepEqual([text?.tsFirst, text?.tsLast], [new Date(line(1).ts), new Date(line(500).ts)]);

      const random = batch(1, 1, (seq) => ({ ts: T0 + seq, payload: randomBytes(8192) }));
      await streams.append(host, 'noise', random);
      const [raw] = await chunksOf(host, 'noise');
      assert.equal(raw?.codec, chunkCodec.none);
      assert.deepEqual(raw?.data, random.body);
      // Incompressible chunks of every size the append sends (each chunk's bytes go as base64
      // text: past V8's 128 KiB string limit, and past 1 MB, which Node keeps outside its heap):
      // stored raw, byte for byte, in order.
      const sizes = [64 * 1024, 200 * 1024, 2 * 1024 * 1024, 100];
      const blobs = batch(1, sizes.length, (seq) => ({
        ts: T0 + seq,
        payload: randomBytes(sizes[seq - 1]!),
      }));
      assert.deepEqual(await streams.append(host, 'blobs', blobs), { ackedSeq: sizes.length });
      const stored = await chunksOf(host, 'blobs');
      assert.ok(stored.length >= 3, `${stored.length} chunks`);
      assert.ok(stored.every((c) => c.codec === chunkCodec.none));
      assert.deepEqual(Buffer.concat(stored.map((c) => c.data)), blobs.body);

      // ~1.3 MiB in one append (the gateway merges queued batches): several chunk rows.
      const big = batch(1, 15_000);
      assert.ok(big.body.length > 4 * CHUNK_MAX_RAW_BYTES);
      assert.deepEqual(await streams.append(host, 'big', big), { ackedSeq: 15_000 });
      const chunks = await chunksOf(host, 'big');
      assert.ok(chunks.length >= 5, `${chunks.length} chunks`);
      let next = 1;
      for (const c of chunks) {
        assert.equal(c.firstSeq, next);
        assert.equal(c.lastSeq - c.firstSeq + 1, c.count);
        next = c.lastSeq + 1;
      }
      assert.equal(next, 15_001);
      const { records } = await streams.read(host, 'big', 5_000, 10_000);
      assert.equal(records.length, 10_000);
      assert.equal(records[0]?.seq, 5_001);
      assert.equal(records.at(-1)?.seq, 15_000);
      assert.ok(records.every((r, i) => r.seq === 5_001 + i));
      assert.deepEqual(records[1234]?.payload, Buffer.from(line(6_235).payload));
    });

    test('deflate chunks written before LZ4 read, resend-check and mix with new ones', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 300));
      await streams.append(host, 'logs', batch(301, 400));
      // The first chunk as a controller before LZ4 wrote it.
      const [first] = await chunksOf(host, 'logs');
      await db
        .update(streamChunks)
        .set({ codec: chunkCodec.deflateRaw, data: deflateRawSync(batch(1, 300).body, { level: 1 }) })
        .where(and(eq(streamChunks.hostId, host), eq(streamChunks.firstSeq, first!.firstSeq)));
      await streams.append(host, 'logs', batch(401, 600));
      assert.deepEqual(
        (await chunksOf(host, 'logs')).map((c) => c.codec),
        [chunkCodec.deflateRaw, chunkCodec.lz4, chunkCodec.lz4],
      );
      const { records } = await streams.read(host, 'logs', 250, 1_000);
      assert.equal(records.length, 350);
      assert.ok(records.every((r, i) => r.seq === 251 + i));
      assert.deepEqual(records[0]?.payload, Buffer.from(line(251).payload));
      assert.deepEqual(records.at(-1)?.payload, Buffer.from(line(600).payload));
      // A resend across both codecs is recognised as one (compared with the stored records).
      assert.deepEqual(await streams.append(host, 'logs', batch(200, 650)), { ackedSeq: 650 });
      assert.equal(await streams.cursor(host, 'logs'), 650);
      assert.equal((await streams.read(host, 'logs', 0, 1_000)).records.length, 650);

      // A chunk with an unknown codec, or data its codec rejects: an error, not a crash.
      await db
        .update(streamChunks)
        .set({ codec: 9 as never })
        .where(and(eq(streamChunks.hostId, host), eq(streamChunks.firstSeq, first!.firstSeq)));
      await assert.rejects(streams.read(host, 'logs', 0, 10), ChunkDecodeError);
      await db
        .update(streamChunks)
        .set({ codec: chunkCodec.lz4, data: Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]) })
        .where(and(eq(streamChunks.hostId, host), eq(streamChunks.firstSeq, first!.firstSeq)));
      await assert.rejects(streams.read(host, 'logs', 0, 10), ChunkDecodeError);
      // Chunks after it still read.
      assert.equal((await streams.read(host, 'logs', 300, 1_000)).records.length, 350);
    });

    test('cursors lists every stream of a host', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 3));
      await streams.append(host, 'metrics', batch(1, 7));
      assert.deepEqual(await streams.cursors(host), { logs: 3, metrics: 7 });
      assert.deepEqual(await streams.cursors(await newHost()), {});
    });

    test('malformed batches and unknown hosts are refused and store nothing', async () => {
      const host = await newHost();
      const good = batch(1, 5);
      await rejectsWith(streams.append(host, 'logs', { ...good, count: 6 }), 'stream.invalid');
      await rejectsWith(
        streams.append(host, 'logs', { ...good, body: good.body.subarray(0, -1) }),
        'stream.invalid',
      );
      await rejectsWith(streams.append(host, 'logs', { ...good, firstSeq: 0 }), 'stream.invalid');
      await rejectsWith(streams.append(host, 'logs', { ...good, firstSeq: 1.5 }), 'stream.invalid');
      assert.equal(await streams.cursor(host, 'logs'), 0);
      await rejectsWith(
        streams.append('00000000-0000-4000-8000-000000000000', 'logs', good),
        'host.not_found',
      );
      await rejectsWith(streams.append('bogus', 'logs', good), 'host.not_found');
    });

    test('deleting a host deletes its stream data', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 10));
      await streams.append(host, 'logs', batch(20, 30));
      await db.delete(hostsTable).where(eq(hostsTable.id, host));
      assert.equal((await chunksOf(host, 'logs')).length, 0);
      assert.equal(await streams.cursor(host, 'logs'), 0);
      assert.deepEqual((await streams.read(host, 'logs', 0, 100)).gaps, []);
    });

    test('with synchronousCommit off, appends (contiguous, overlapping, gapped) behave the same', async () => {
      const host = await newHost();
      const fast = createStreamRepository(db, { synchronousCommit: false });
      assert.deepEqual(await fast.append(host, 'logs', batch(1, 10)), { ackedSeq: 10 });
      assert.deepEqual(await fast.append(host, 'logs', batch(11, 20)), { ackedSeq: 20 });
      assert.deepEqual(await fast.append(host, 'logs', batch(15, 25)), { ackedSeq: 25 });
      assert.deepEqual(await fast.append(host, 'logs', batch(31, 31)), {
        ackedSeq: 31,
        gap: { fromSeq: 26, toSeq: 30 },
      });
      const { records } = await fast.read(host, 'logs', 0, 100);
      assert.deepEqual(
        records.map((r) => r.seq),
        [...Array.from({ length: 25 }, (_, i) => i + 1), 31],
      );
    });

    // Last in the file: it closes the shared handle.
    test('reads by binary COPY return what reads by query return: pages, offsets, gaps', async () => {
      const host = await newHost();
      // 40 chunks (one per append), a gap after the 30th: more than one page of chunks.
      for (let i = 0; i < 40; i++) {
        const first = i * 25 + 1 + (i >= 30 ? 5 : 0);
        await streams.append(host, 'logs', batch(first, first + 24));
      }
      const byQuery = createStreamRepository(db, { copy: false });
      // Count the COPY statements the default repository sends (PGlite: query(); postgres.js: reserve()).
      const client = (db as unknown as { $client: Record<string, unknown> }).$client;
      const method = typeof client === 'function' ? 'reserve' : 'query';
      const original = client[method] as (...args: unknown[]) => unknown;
      let copies = 0;
      client[method] = function (this: unknown, ...args: unknown[]) {
        if (method === 'reserve' || /^copy /.test(String(args[0]))) copies++;
        return original.apply(this, args);
      };
      try {
        for (const [after, limit] of [
          [0, 2000],
          [0, 1],
          [12, 30],
          [740, 50],
          [749, 10],
          [1004, 5],
          [2000, 10],
        ] as const) {
          assert.deepEqual(
            await streams.read(host, 'logs', after, limit),
            await byQuery.read(host, 'logs', after, limit),
            `after ${after}, limit ${limit}`,
          );
        }
      } finally {
        client[method] = original;
      }
      assert.ok(copies >= 7, `the default repository read by COPY (${copies} statements)`);
      const all = await streams.read(host, 'logs', 0, 2000);
      assert.equal(all.records.length, 1000);
      assert.deepEqual(
        all.gaps.map((g) => [g.fromSeq, g.toSeq]),
        [[751, 755]],
      );
    });

    test('the cursor and the data survive closing and reopening the database', async () => {
      const host = await newHost();
      await streams.append(host, 'logs', batch(1, 40));
      await streams.append(host, 'logs', batch(45, 50));
      await handle.close();
      const reopened = createStreamRepository((await testDb.open()).db);
      assert.equal(await reopened.cursor(host, 'logs'), 50);
      assert.deepEqual(await reopened.cursors(host), { logs: 50 });
      assert.deepEqual(await reopened.append(host, 'logs', batch(46, 55)), { ackedSeq: 55 });
      const { records, gaps } = await reopened.read(host, 'logs', 0, 100);
      assert.equal(records.length, 40 + 6 + 5);
      assert.deepEqual(
        gaps.map((g) => [g.fromSeq, g.toSeq]),
        [[41, 44]],
      );
    });
  });
}
