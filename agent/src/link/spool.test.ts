// Proves the stream spool numbers records across restarts, reads and acks them (an ack never
// covers records it did not hand out), stays bounded (counting what it drops), and recovers from
// torn or damaged files and from kill -9 mid-append.
import { spawn } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { decodeRecords, encodeRecords, type RecordBatch, type StreamRecord } from '@keel/shared';
import { Spool, SpoolWriteError, WRITE_MAX_BYTES } from './spool.ts';
import { tsLoader } from '../../../scripts/test-loader-url.mjs';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'keel-spool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Record whose payload names its seq (and is padded to `size` bytes). */
function rec(seq: number, size = 20): StreamRecord {
  return { ts: 1_700_000_000_000 + seq, payload: Buffer.from(`r${seq}`.padEnd(size, '.')) };
}

function recs(from: number, to: number, size?: number): StreamRecord[] {
  const out: StreamRecord[] = [];
  for (let s = from; s <= to; s++) out.push(rec(s, size));
  return out;
}

/** Checks that a batch holds exactly the records rec(firstSeq)… in order. */
function assertBatch(batch: RecordBatch | null, firstSeq: number, count?: number): RecordBatch {
  assert.ok(batch, `expected a batch from ${firstSeq}`);
  assert.equal(batch.firstSeq, firstSeq);
  if (count !== undefined) assert.equal(batch.count, count);
  const records = decodeRecords(batch.body, batch.count);
  records.forEach((r, i) => {
    const seq = firstSeq + i;
    assert.equal(r.ts, 1_700_000_000_000 + seq);
    assert.equal(Buffer.from(r.payload).toString().replace(/\.+$/, ''), `r${seq}`);
  });
  return batch;
}

/** Reads everything after `afterSeq` in batches of at most `maxBytes`; returns the seqs seen. */
function readAll(spool: Spool, afterSeq: number, maxBytes: number): number[] {
  const seqs: number[] = [];
  for (let b = spool.read(afterSeq, maxBytes); b; b = spool.read(b.firstSeq + b.count - 1, maxBytes)) {
    assertBatch(b, b.firstSeq);
    for (let i = 0; i < b.count; i++) seqs.push(b.firstSeq + i);
  }
  return seqs;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.seg'))
    .sort();
}

test('seqs start at 1 and continue after reopen', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir });
  assert.equal(spool.lastSeq, 0);
  assert.deepEqual(spool.append(recs(1, 3)), { firstSeq: 1, lastSeq: 3 });
  assert.deepEqual(spool.append(recs(4, 4)), { firstSeq: 4, lastSeq: 4 });
  assert.deepEqual(spool.append([]), { firstSeq: 5, lastSeq: 4 });
  await spool.close();

  spool = await Spool.open({ dir });
  assert.equal(spool.lastSeq, 4);
  assert.deepEqual(spool.append(recs(5, 9)), { firstSeq: 5, lastSeq: 9 });
  assertBatch(spool.read(0, 1 << 20), 1, 4);
  await spool.close();
});

test('read hands out only synced records and onAppend fires when they become readable', async (t) => {
  const spool = await Spool.open({ dir: tempDir(t), syncIntervalMs: 60_000 });
  t.after(() => spool.close());
  spool.append(recs(1, 1)); // first append after a quiet period syncs at once
  await spool.flush();
  const readable = new Promise<void>((resolve) => spool.onAppend(resolve));
  spool.append(recs(2, 5)); // within the sync interval: waits for the group commit
  assert.equal(spool.syncedSeq, 1);
  assertBatch(spool.read(0, 1 << 20), 1, 1);
  assert.equal(spool.read(1, 1 << 20), null);
  await spool.flush();
  await readable;
  assert.equal(spool.syncedSeq, 5);
  assertBatch(spool.read(1, 1 << 20), 2, 4);
});

test('read/ack round trip: batches split frames, respect maxBytes and resume after any seq', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 64 * 1024 });
  t.after(() => spool.close());
  // Mixed append sizes: single records, small batches, and a batch cut into several frames.
  spool.append(recs(1, 1));
  spool.append(recs(2, 10));
  spool.append(recs(11, 3000, 60)); // ~216 KiB: several frames, and its own segment
  spool.append(recs(3001, 3005));

  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 3005));
  assert.deepEqual(readAll(spool, 0, 100), range(1, 3005)); // smaller than a frame: cuts frames
  assert.deepEqual(readAll(spool, 0, 5000), range(1, 3005));
  for (const after of [0, 1, 5, 10, 11, 12, 777, 2999, 3000, 3003, 3004]) {
    const b = assertBatch(spool.read(after, 4096), after + 1);
    assert.ok(b.count >= 1);
    assert.ok(b.body.length <= 4096);
  }
  assert.equal(spool.read(3005, 4096), null);
  // One record larger than maxBytes still comes out, alone.
  spool.append([rec(3006, 10_000)]);
  assertBatch(spool.read(3005, 100), 3006, 1);

  spool.ack(1000);
  assert.equal(spool.ackedSeq, 1000);
  spool.ack(10); // acks never go backwards
  assert.equal(spool.ackedSeq, 1000);
  assert.deepEqual(readAll(spool, spool.ackedSeq, 8192), range(1001, 3006));
});

test('ack deletes whole segments and persists, so a restart does not resend', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, segmentBytes: 4096, syncIntervalMs: 0 });
  for (let s = 1; s <= 600; s += 5) spool.append(recs(s, s + 4, 40)); // 280 B per append, 14 per segment
  const before = segmentFiles(dir);
  assert.ok(before.length >= 5, `expected several segments, got ${before.length}`);
  const bytesBefore = spool.bytes;

  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 600)); // sent, so it can be acked
  spool.ack(100);
  const after = segmentFiles(dir);
  assert.ok(after.length < before.length);
  assert.ok(spool.bytes < bytesBefore);
  // Every remaining segment still holds something unacknowledged, and read resumes after the ack.
  const firstHeld = Number(after[0]!.replace('.seg', ''));
  assert.ok(firstHeld <= 101);
  assert.deepEqual(readAll(spool, 100, 1 << 20), range(101, 600));
  await spool.close();

  spool = await Spool.open({ dir, segmentBytes: 4096 });
  assert.equal(spool.ackedSeq, 100);
  assert.equal(spool.lastSeq, 600);
  readAll(spool, 100, 1 << 20);
  spool.ack(600); // all acked: only the newest segment (the write head) stays
  assert.equal(segmentFiles(dir).length, 1);
  await spool.close();

  spool = await Spool.open({ dir, segmentBytes: 4096 });
  assert.equal(spool.read(spool.ackedSeq, 1 << 20), null);
  assert.deepEqual(spool.append(recs(601, 601)), { firstSeq: 601, lastSeq: 601 });
  await spool.close();
});

test('an ack is written in place into the ack cursor, not by replacing state.json', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, segmentBytes: 4096 });
  spool.append(recs(1, 50, 40));
  await spool.flush();
  readAll(spool, 0, 1 << 20);
  for (const seq of [10, 20, 30]) spool.ack(seq);
  // At once, without a sync, in one of two fixed slots: no state.json (nothing was dropped).
  assert.equal(statSync(join(dir, 'ack-cursor')).size, 512 + 24);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.startsWith('state.json')),
    [],
  );
  assert.equal(spool.ackedSeq, 30);
  await spool.close();
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 30);
  assert.equal(spool.read(spool.ackedSeq, 1 << 20)?.firstSeq, 31);
  await spool.close();
});

test('a torn or damaged ack cursor falls back to its other slot, then to state.json: a resend, never a loss', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, segmentBytes: 4096, syncIntervalMs: 0 });
  spool.append(recs(1, 50, 40));
  readAll(spool, 0, 1 << 20);
  spool.ack(10); // generation 1: slot 1
  spool.ack(20); // generation 2: slot 0
  await spool.close();
  // An older agent's (or the dropped count's) state.json says 5.
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ ackedSeq: 5, droppedRecords: 0 }));
  const tear = (slot: number) => {
    const file = readFileSync(join(dir, 'ack-cursor'));
    file[slot * 512 + 14] = file[slot * 512 + 14]! ^ 0xff; // a byte of ackedSeq: the CRC fails
    writeFileSync(join(dir, 'ack-cursor'), file);
  };

  tear(0); // the newest slot, as a power loss during its write could leave it
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 10);
  assert.equal(spool.read(spool.ackedSeq, 1 << 20)?.firstSeq, 11); // 11-20 go again
  readAll(spool, 10, 1 << 20);
  spool.ack(25); // generation 2 again, into the torn slot 0; slot 1 keeps 10
  await spool.close();
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 25);
  await spool.close();

  tear(0);
  tear(1); // both slots damaged: state.json's ack
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 5);
  assert.equal(spool.read(spool.ackedSeq, 1 << 20)?.firstSeq, 6);
  await spool.close();

  rmSync(join(dir, 'ack-cursor')); // an older agent's spool: state.json alone
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 5);
  await spool.close();
});

test('an ack covers only what read() handed out, so new records of a wiped spool are not acked away', async (t) => {
  // The controller's cursor can be far ahead of a spool whose directory was wiped or restored:
  // it holds other records under these numbers. Such an ack must not cover unsent records.
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0 });
  spool.append(recs(1, 5));
  spool.ack(500); // nothing was read: nothing is acked
  assert.equal(spool.ackedSeq, 0);
  assert.equal(spool.lastSeq, 5);
  assertBatch(spool.read(0, 1 << 20), 1, 5);
  spool.ack(500); // what was read, no further
  assert.equal(spool.ackedSeq, 5);
  assert.deepEqual(spool.append(recs(6, 7)), { firstSeq: 6, lastSeq: 7 });
  spool.ack(500);
  assert.equal(spool.ackedSeq, 5);
  assertBatch(spool.read(spool.ackedSeq, 1 << 20), 6, 2);
  await spool.close();

  // After a restart, nothing beyond the persisted ack counts as handed out.
  spool = await Spool.open({ dir });
  assert.equal(spool.ackedSeq, 5);
  assert.equal(spool.lastSeq, 7);
  spool.ack(7);
  assert.equal(spool.ackedSeq, 5);
  assertBatch(spool.read(spool.ackedSeq, 1 << 20), 6, 2);
  spool.ack(7);
  assert.equal(spool.ackedSeq, 7);
  await spool.close();
});

test('a state file acked beyond the segments (older agents) continues numbering after the ack', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0 });
  spool.append(recs(1, 5));
  await spool.close();
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ ackedSeq: 500, droppedRecords: 0 }));
  spool = await Spool.open({ dir });
  assert.equal(spool.lastSeq, 500);
  assert.equal(spool.read(spool.ackedSeq, 1 << 20), null);
  assert.deepEqual(spool.append(recs(501, 502)), { firstSeq: 501, lastSeq: 502 });
  await spool.flush();
  assertBatch(spool.read(spool.ackedSeq, 1 << 20), 501, 2);
  await spool.close();
});

test('a torn tail is cut after the last whole frame and numbering continues from there', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0 });
  spool.append(recs(1, 10));
  spool.append(recs(11, 20));
  spool.append(recs(21, 30));
  await spool.close();
  const [file] = segmentFiles(dir);
  const path = join(dir, file!);
  truncateSync(path, statSync(path).size - 7); // kill -9 in the middle of the third append

  spool = await Spool.open({ dir, syncIntervalMs: 0 });
  assert.equal(spool.lastSeq, 20);
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 20));
  assert.deepEqual(spool.append(recs(21, 25)), { firstSeq: 21, lastSeq: 25 });
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 25));
  await spool.close();
});

test('a flipped byte fails the CRC: the damaged frame and what follows in its segment are cut', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0 });
  spool.append(recs(1, 10));
  spool.append(recs(11, 20));
  spool.append(recs(21, 30));
  await spool.close();
  const [file] = segmentFiles(dir);
  const path = join(dir, file!);
  const bytes = readFileSync(path);
  const secondFrame = bytes.readUInt32BE(0) + 8;
  bytes[secondFrame + 40]! ^= 0x01; // inside the second frame's records
  writeFileSync(path, bytes);

  spool = await Spool.open({ dir, syncIntervalMs: 0 });
  assert.equal(spool.lastSeq, 10);
  assert.equal(statSync(path).size, secondFrame);
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 10));
  assert.deepEqual(spool.append(recs(11, 12)), { firstSeq: 11, lastSeq: 12 });
  await spool.close();
});

test('damage inside an older segment loses only its tail, and the loss is counted', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 4096 });
  for (let s = 1; s <= 100; s += 10) spool.append(recs(s, s + 9, 40));
  await spool.close();
  const files = segmentFiles(dir);
  assert.ok(files.length >= 2);
  const first = join(dir, files[0]!);
  const nextFirst = Number(files[1]!.replace('.seg', ''));
  truncateSync(first, statSync(first).size - 3);

  spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 4096 });
  const seqs = readAll(spool, 0, 1 << 20);
  const lostFrom = seqs.findIndex((s, i) => s !== i + 1) + 1;
  assert.ok(lostFrom > 1);
  assert.equal(spool.droppedRecords, nextFirst - lostFrom);
  assert.deepEqual(seqs, [...range(1, lostFrom - 1), ...range(nextFirst, 100)]);
  assert.equal(spool.lastSeq, 100);
  await spool.close();
});

test('overflow drops the oldest segments, counts exactly what was lost, and reads resume after the gap', async (t) => {
  const dir = tempDir(t);
  const maxBytes = 16 * 1024;
  let spool = await Spool.open({ dir, maxBytes, segmentBytes: 4096, syncIntervalMs: 0 });
  // 10 records of 40 bytes per append: 20 + 10 * 52 = 540 bytes per frame, 7 frames per segment.
  for (let s = 1; s <= 1000; s += 10) {
    spool.append(recs(s, s + 9, 40));
    assert.ok(spool.bytes <= maxBytes, `spool holds ${spool.bytes} bytes`);
  }
  const files = segmentFiles(dir);
  const oldest = Number(files[0]!.replace('.seg', ''));
  assert.ok(oldest > 1);
  assert.equal(spool.droppedRecords, oldest - 1);
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(oldest, 1000));
  assert.deepEqual(readAll(spool, 5, 1 << 20), range(oldest, 1000));

  // Acknowledged records are not counted as lost when their segment is dropped.
  spool.ack(oldest + 100);
  const droppedBefore = spool.droppedRecords;
  for (let s = 1001; s <= 1100; s += 10) spool.append(recs(s, s + 9, 40));
  const oldestNow = Number(segmentFiles(dir)[0]!.replace('.seg', ''));
  assert.equal(spool.droppedRecords - droppedBefore, Math.max(0, oldestNow - 1 - (oldest + 100)));
  const dropped = spool.droppedRecords;
  await spool.close();

  spool = await Spool.open({ dir, maxBytes, segmentBytes: 4096 });
  assert.equal(spool.droppedRecords, dropped); // persisted
  await spool.close();
});

// Found by test/processes-gap.test.ts: the log tailer appends up to 1 MiB of a file's lines per
// tick, more than a 1 MiB spool holds; the refused append threw the lines away with no count.
test('an append larger than the whole spool keeps its newest records and counts the rest as dropped', async (t) => {
  const dir = tempDir(t);
  const maxBytes = 8192;
  let spool = await Spool.open({ dir, maxBytes, segmentBytes: 4096, syncIntervalMs: 0 });
  spool.append(recs(1, 10, 100));
  // 200 records of 100 bytes (~22 KiB) into an 8 KiB spool.
  const r = spool.append(recs(11, 210, 100));
  assert.deepEqual(r, { firstSeq: 11, lastSeq: 210 });
  assert.equal(spool.lastSeq, 210);
  assert.ok(spool.bytes <= maxBytes, `spool holds ${spool.bytes} bytes`);
  const held = readAll(spool, 0, 1 << 20);
  assert.equal(held.at(-1), 210, 'the newest records are kept');
  assert.deepEqual(held, range(held[0]!, 210), 'what is kept is one run, in order');
  assert.ok(held.length > 50, `a spool's worth is kept (${held.length})`);
  // Every record not held is counted: the 10 before and the front of the big append.
  assert.equal(spool.droppedRecords, held[0]! - 1);
  // A record larger than the spool on its own is counted too, and numbering goes on after it.
  assert.deepEqual(spool.append([rec(211, 9000)]), { firstSeq: 211, lastSeq: 211 });
  assert.equal(spool.droppedRecords, held[0]!);
  spool.append(recs(212, 213, 100));
  assert.deepEqual(readAll(spool, 210, 1 << 20), [212, 213]);
  const dropped = spool.droppedRecords;
  await spool.close();
  // The count and the numbering survive a restart.
  spool = await Spool.open({ dir, maxBytes, segmentBytes: 4096, syncIntervalMs: 0 });
  t.after(() => spool.close());
  assert.equal(spool.droppedRecords, dropped);
  assert.equal(spool.lastSeq, 213);
});

test('appendEncoded stores exactly what append would (frames, reads, reopen), and an oversized one is a counted gap', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 64 * 1024 });
  spool.append(recs(1, 3));
  // ~216 KiB encoded back to back: several frames, its own segment.
  assert.deepEqual(spool.appendEncoded(encodeRecords(recs(4, 3000, 60)), 2997), {
    firstSeq: 4,
    lastSeq: 3000,
  });
  spool.appendEncoded(encodeRecords(recs(3001, 3001)), 1);
  assert.deepEqual(spool.appendEncoded(Buffer.alloc(0), 0), { firstSeq: 3002, lastSeq: 3001 });
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 3001));
  assert.deepEqual(readAll(spool, 0, 100), range(1, 3001));
  // A body that does not hold `count` records is refused, and takes no numbers.
  assert.throws(() => spool.appendEncoded(encodeRecords(recs(3002, 3003)), 3), RangeError);
  assert.equal(spool.lastSeq, 3001);
  await spool.close();
  spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 64 * 1024 });
  assert.deepEqual(readAll(spool, 2990, 1 << 20), range(2991, 3001));
  await spool.close();

  const small = tempDir(t);
  spool = await Spool.open({ dir: small, maxBytes: 8192, segmentBytes: 4096, syncIntervalMs: 0 });
  t.after(() => spool.close());
  assert.deepEqual(spool.appendEncoded(encodeRecords(recs(1, 200, 100)), 200), { firstSeq: 1, lastSeq: 200 });
  const held = readAll(spool, 0, 1 << 20);
  assert.equal(held.at(-1), 200);
  assert.equal(spool.droppedRecords, held[0]! - 1);
});

/** Write system calls this process has made so far (`syscw` of /proc/self/io). */
const writeCalls = () => Number(/^syscw: (\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

test('an append goes to disk at most WRITE_MAX_BYTES a write (large writes cost host faults on a VM), and reads back whole', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 8 * 1024 * 1024 });
  const cases = [
    // append: one buffer of ~1.2 MiB (writeFull), then ~2.3 MiB as headers between views (writevFull).
    () => spool.append(recs(1, 1200, 1000)),
    () => spool.appendEncoded(encodeRecords(recs(1201, 3500, 1000)), 2300),
    // Just under and just over one write's worth.
    () => spool.append(recs(3501, 3501, WRITE_MAX_BYTES - 200)),
    () => spool.append(recs(3502, 3502, WRITE_MAX_BYTES + 10)),
  ];
  for (const append of cases) {
    const size = spool.bytes;
    const calls = writeCalls();
    append();
    const bytes = spool.bytes - size;
    const made = writeCalls() - calls;
    const least = Math.ceil(bytes / WRITE_MAX_BYTES);
    assert.ok(made >= least && made <= least + 1, `${bytes} bytes in ${made} writes, want ${least}`);
  }
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 3502));
  await spool.close();
  // Every frame whole and in place: the scan at open checks each frame's CRC and seq.
  spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 8 * 1024 * 1024 });
  t.after(() => spool.close());
  assert.equal(spool.lastSeq, 3502);
  assert.deepEqual(readAll(spool, 0, 1 << 20), range(1, 3502));
});

test('transient reads give the same batches from one kept buffer, each valid until the next read', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir, syncIntervalMs: 0, segmentBytes: 64 * 1024 });
  t.after(() => spool.close());
  spool.appendEncoded(encodeRecords(recs(1, 3000, 60)), 3000);
  const seqs: number[] = [];
  const bodies = new Set<ArrayBufferLike>();
  let after = 0;
  for (let b = spool.read(after, 16 * 1024, true); b; b = spool.read(after, 16 * 1024, true)) {
    assertBatch(b, b.firstSeq); // checked before the next read reuses the buffer
    bodies.add(b.body.buffer);
    for (let i = 0; i < b.count; i++) seqs.push(b.firstSeq + i);
    after = b.firstSeq + b.count - 1;
  }
  assert.deepEqual(seqs, range(1, 3000));
  assert.ok(bodies.size <= 2, `${bodies.size} buffers for ${seqs.length} records`);
  // A plain read still returns a body of its own.
  const plain = spool.read(0, 16 * 1024)!;
  spool.read(plain.firstSeq + plain.count - 1, 16 * 1024, true);
  assertBatch(plain, 1);
});

test('a small transient buffer is kept across reads that find nothing; a large one is let go', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir, syncIntervalMs: 0 });
  t.after(() => spool.close());
  // An agent at rest: one small record a tick, each read until nothing is left.
  const buffers = new Set<ArrayBufferLike>();
  let after = 0;
  for (let tick = 1; tick <= 20; tick++) {
    spool.append([{ ts: tick, payload: Buffer.from(`{"tick":${tick}}`) }]);
    const b = spool.read(after, 256 * 1024, true)!;
    assert.equal(b.firstSeq, tick);
    buffers.add(b.body.buffer);
    after = tick;
    assert.equal(spool.read(after, 256 * 1024, true), null);
  }
  assert.equal(buffers.size, 1, `${buffers.size} buffers for 20 ticks`);
  assert.ok(buffers.values().next().value!.byteLength <= 16 * 1024);
  // A backlog's batch: a large buffer, let go once nothing is left.
  spool.appendEncoded(encodeRecords(recs(21, 520, 1000)), 500);
  const big = spool.read(after, 256 * 1024, true)!;
  const bigBuffer = big.body.buffer;
  assert.ok(bigBuffer.byteLength >= 256 * 1024);
  for (let b: typeof big | null = big; b; b = spool.read(after, 256 * 1024, true))
    after = b.firstSeq + b.count - 1;
  assert.equal(after, 520);
  spool.append([{ ts: 521, payload: Buffer.from('{"tick":521}') }]);
  const next = spool.read(after, 256 * 1024, true)!;
  assert.notEqual(next.body.buffer, bigBuffer);
  assert.ok(next.body.buffer.byteLength <= 16 * 1024);
});

/**
 * Runs the crash writer on `dir` until it reports more than `atLeast` records, then kills it;
 * resolves with its last report. With `ack` the writer acks as it goes (and reports its ack).
 */
async function appendUntilKilled(dir: string, atLeast: number, ack?: 'ack'): Promise<number> {
  return (await appendUntilKilledReport(dir, atLeast, ack)).lastSeq;
}

async function appendUntilKilledReport(
  dir: string,
  atLeast: number,
  ack?: 'ack',
): Promise<{ lastSeq: number; ackedSeq: number }> {
  const writer = join(import.meta.dirname, 'spool-crash-writer.ts');
  const child = spawn(process.execPath, ['--import', tsLoader, writer, dir, ...(ack ? [ack] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`writer exited early with ${code}`)));
    child.stdout.on('data', (chunk: Buffer) => {
      const [lastSeq = 0, ackedSeq = 0] = chunk.toString().trim().split('\n').at(-1)!.split(' ').map(Number);
      if (lastSeq > atLeast && (!ack || ackedSeq > 0)) {
        child.removeAllListeners('exit');
        child.on('exit', () => resolve({ lastSeq, ackedSeq }));
        child.kill('SIGKILL');
      }
    });
  });
}

test('kill -9 while appending leaves a spool that opens with a gapless prefix 1..N', async (t) => {
  const dir = tempDir(t);
  let lastSeq = 0;
  // Twice: the second writer recovers what the first left, appends after it, and is killed too.
  for (const more of [100_000, 50_000]) {
    const reported = await appendUntilKilled(dir, lastSeq + more);
    const spool = await Spool.open({ dir, segmentBytes: 256 * 1024 });
    assert.ok(spool.lastSeq >= reported, `lastSeq ${spool.lastSeq} < reported ${reported}`);
    assert.equal(spool.droppedRecords, 0);
    let expected = 1;
    for (let b = spool.read(0, 1 << 20); b; b = spool.read(b.firstSeq + b.count - 1, 1 << 20)) {
      assert.equal(b.firstSeq, expected);
      for (const r of decodeRecords(b.body, b.count)) {
        assert.equal(Number.parseInt(Buffer.from(r.payload).toString(), 10), expected);
        expected++;
      }
    }
    assert.equal(expected - 1, spool.lastSeq);
    lastSeq = spool.lastSeq;
    await spool.close();
  }
});

test('kill -9 while appending and acking: the ack cursor survives and reads resume right after it, gapless', async (t) => {
  const dir = tempDir(t);
  let lastSeq = 0;
  let ackedSeq = 0;
  for (const more of [60_000, 30_000]) {
    const reported = await appendUntilKilledReport(dir, lastSeq + more, 'ack');
    const spool = await Spool.open({ dir, segmentBytes: 256 * 1024 });
    assert.ok(spool.lastSeq >= reported.lastSeq, `lastSeq ${spool.lastSeq} < reported ${reported.lastSeq}`);
    // The page cache keeps the in-place cursor across the process's death (only a power loss can
    // take it back): at least the last reported ack, never beyond what was appended.
    assert.ok(spool.ackedSeq >= reported.ackedSeq, `ackedSeq ${spool.ackedSeq} < ${reported.ackedSeq}`);
    assert.ok(spool.ackedSeq > ackedSeq && spool.ackedSeq <= spool.lastSeq);
    assert.equal(spool.droppedRecords, 0);
    let expected = spool.ackedSeq + 1;
    for (let b = spool.read(spool.ackedSeq, 1 << 20); b; b = spool.read(b.firstSeq + b.count - 1, 1 << 20)) {
      assert.equal(b.firstSeq, expected);
      for (const r of decodeRecords(b.body, b.count)) {
        assert.equal(Number.parseInt(Buffer.from(r.payload).toString(), 10), expected);
        expected++;
      }
    }
    assert.equal(expected - 1, spool.lastSeq);
    // No segment the ack wholly covers is left (the second one's name says where the first ends).
    const files = segmentFiles(dir);
    if (files.length > 1) assert.ok(Number(files[1]!.replace('.seg', '')) - 1 > spool.ackedSeq);
    ({ lastSeq, ackedSeq } = spool);
    await spool.close();
  }
});

test('one directory can be open by one spool at a time', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir });
  await assert.rejects(Spool.open({ dir }), /already open/);
  await spool.close();
  await (await Spool.open({ dir })).close();
});

test('a write that fails (disk full) loses its records explicitly: their numbers become a gap', async (t) => {
  const dir = tempDir(t);
  let spool = await Spool.open({ dir, syncIntervalMs: 0 });
  spool.append(recs(1, 3));
  await spool.close();
  // The next segment is /dev/full: every write to it fails with ENOSPC, as on a full disk.
  symlinkSync('/dev/full', join(dir, `${String(4).padStart(20, '0')}.seg`));
  spool = await Spool.open({ dir, syncIntervalMs: 0 });
  assert.equal(spool.lastSeq, 3);
  assert.throws(
    () => spool.append(recs(4, 5)),
    (err: unknown) => err instanceof SpoolWriteError && err.firstSeq === 4 && err.lastSeq === 5,
  );
  assert.equal(spool.lastSeq, 5, 'the lost records keep their numbers');
  assert.equal(spool.droppedRecords, 2);
  // The numbering survives a restart even though nothing else was written.
  await spool.close();
  spool = await Spool.open({ dir, syncIntervalMs: 0 });
  assert.equal(spool.lastSeq, 5);
  assert.equal(spool.droppedRecords, 2);
  // Later records continue after the hole; a reader past 3 gets them, so the controller sees 4..5 missing.
  assert.deepEqual(spool.append([rec(6), rec(7)]), { firstSeq: 6, lastSeq: 7 });
  assertBatch(spool.read(0, 1 << 20), 1, 3);
  assertBatch(spool.read(3, 1 << 20), 6, 2);
  await spool.close();
});
