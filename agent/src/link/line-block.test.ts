// Proves the spool's line-block frames: the lines a block holds come back from read() as exactly
// the records LineSplitter finds (whatever the read boundaries, batch sizes and the seq a read
// starts at, inside a block or not), mixed with record frames; a spool written in the record
// format before blocks existed still opens and reads; a damaged block is cut at open.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { decodeLogLine, decodeRecords, encodeLogLine, encodeRecords, type StreamRecord } from '@keel/shared';
import { Spool } from './spool.ts';
import { encodeLines, LINE_BLOCK_TARGET_BYTES, RecordsOut, scanLines, type LineBlock } from './line-block.ts';
import { seededRandom as rng } from '../../../test/helpers/seeded-random.ts';
import { randomLogOutput, splitterLines } from '../../../test/helpers/log-output.ts';

const TS = 1_700_000_000_000;
const head = encodeLogLine({ process: 'web', stream: 'stderr', line: Buffer.alloc(0), continued: false });
const heads: [Buffer, Buffer] = [
  head,
  encodeLogLine({ process: 'web', stream: 'stderr', line: Buffer.alloc(0), continued: true }),
];

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'keel-line-block-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lines = (records: readonly StreamRecord[]) =>
  records.map((rec) => {
    const l = decodeLogLine(rec.payload)!;
    assert.equal(l.process, 'web');
    assert.equal(l.stream, 'stderr');
    assert.equal(rec.ts, TS);
    return [Buffer.from(l.line).toString('latin1'), l.continued] as [string, boolean];
  });

/**
 * Cuts `data` as the tailer does: read boundaries at random, the unfinished line held and put in
 * front of the next read, each read's lines as blocks (scanLines), the rest a partial block.
 */
function blocksOf(data: Buffer, seed: number): { blocks: LineBlock[]; count: number } {
  const r = rng(seed);
  const blocks: LineBlock[] = [];
  let held = Buffer.alloc(0);
  let count = 0;
  for (let at = 0; at < data.length;) {
    const n = Math.min(data.length - at, Math.floor(r() < 0.3 ? r() * 60 : r() * 300 * 1024));
    const src = Buffer.concat([held, data.subarray(at, at + n)]);
    at += n;
    const cuts: number[] = [];
    const rest = scanLines(src, LINE_BLOCK_TARGET_BYTES, cuts);
    // The encoder agrees on where the unfinished line begins and how many records there are.
    const out = new RecordsOut();
    out.reserve(src.length * 2 + 4096);
    assert.equal(encodeLines(out, src, heads, TS, null), rest);
    let made = 0;
    for (let c = 0, start = 0; c < cuts.length; c += 2) {
      blocks.push({ head, ts: TS, src, start, end: cuts[c]!, count: cuts[c + 1]!, partial: false });
      made += cuts[c + 1]!;
      start = cuts[c]!;
    }
    assert.equal(made, out.count);
    count += made;
    held = Buffer.from(src.subarray(rest));
  }
  if (held.length > 0) {
    blocks.push({ head, ts: TS, src: held, start: 0, end: held.length, count: 1, partial: true });
    count++;
  }
  return { blocks, count };
}

for (const seed of [3, 4]) {
  test(`line blocks read back as LineSplitter's lines, from any seq and in any batch size (seed ${seed})`, async (t) => {
    const dir = tempDir(t);
    const data = randomLogOutput(seed, 3 * 1024 * 1024, 'a partial line\r');
    const want = splitterLines(data);
    const { blocks, count } = blocksOf(data, seed * 31);
    assert.equal(count, want.length);
    const spool = await Spool.open({ dir, maxBytes: 64 * 1024 * 1024, syncIntervalMs: 0 });
    t.after(() => spool.close());
    // Appended a few blocks at a time, some appends holding record frames between them.
    const r = rng(seed * 977);
    const seqOf: number[] = []; // the seq of each wanted line (record frames take seqs too)
    const extra = new Map<number, StreamRecord>();
    for (let i = 0, line = 0; i < blocks.length;) {
      const take = blocks.slice(i, i + 1 + Math.floor(r() * 5));
      i += take.length;
      const { firstSeq, lastSeq } = spool.appendLineBlocks(take);
      for (let s = firstSeq; s <= lastSeq; s++) seqOf[line++] = s;
      if (r() < 0.2) {
        const rec = { ts: 42, payload: Buffer.from(`record after ${lastSeq}`) };
        extra.set(spool.append([rec]).firstSeq, rec);
      }
    }
    const last = spool.lastSeq;
    assert.equal(last, want.length + extra.size);
    const byLine = new Map(seqOf.map((s, i) => [s, i]));
    /** Reads after `afterSeq` in batches of at most `maxBytes`, at most `batches` of them. */
    const check = (afterSeq: number, maxBytes: number, batches: number) => {
      let n = 0;
      for (let b = spool.read(afterSeq, maxBytes); b && batches-- > 0; b = spool.read(afterSeq, maxBytes)) {
        assert.equal(b.firstSeq, afterSeq + 1);
        assert.ok(b.count >= 1);
        assert.ok(b.count === 1 || b.body.length <= maxBytes, `${b.body.length} > ${maxBytes}`);
        const records = decodeRecords(b.body, b.count);
        records.forEach((rec, k) => {
          const seq = b.firstSeq + k;
          const other = extra.get(seq);
          if (other) {
            assert.equal(rec.ts, other.ts);
            assert.deepEqual(Buffer.from(rec.payload), other.payload);
          } else assert.deepEqual(lines([rec])[0], want[byLine.get(seq)!], `seq ${seq}`);
        });
        afterSeq = b.firstSeq + b.count - 1;
        n += b.count;
      }
      return { afterSeq, n };
    };
    // Everything at once in large batches, then in small ones.
    assert.equal(check(0, 16 * 1024 * 1024, Infinity).afterSeq, last);
    assert.equal(check(0, 3000, Infinity).afterSeq, last);
    // Reads that start at random seqs (mostly inside a block), a few batches each.
    for (let k = 0; k < 200; k++) {
      const from = Math.floor(r() * last);
      check(from, 200 + Math.floor(r() * 200_000), 3);
    }
    // The same after a reopen: the frames are found again and checked (lineBlockCount).
    await spool.close();
    const again = await Spool.open({ dir, maxBytes: 64 * 1024 * 1024 });
    t.after(() => again.close());
    assert.equal(again.lastSeq, last);
    const got: StreamRecord[] = [];
    for (let b = again.read(0, 1 << 20); b; b = again.read(b.firstSeq + b.count - 1, 1 << 20))
      got.push(...decodeRecords(b.body, b.count));
    assert.deepEqual(lines(got.filter((_, i) => !extra.has(i + 1))), want);
  });
}

test('a block is the bytes read plus one header: ~1.01 bytes of spool per captured byte at 100-byte lines', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir, syncIntervalMs: 0 });
  t.after(() => spool.close());
  const data = Buffer.from(`${'x'.repeat(99)}\n`.repeat(40_000));
  const { blocks } = blocksOf(data, 1);
  spool.appendLineBlocks(blocks);
  assert.ok(spool.bytes / data.length < 1.01, `${spool.bytes / data.length}`);
  const b = spool.read(39_990, 1 << 20)!;
  assert.equal(b.count, 10);
  assert.deepEqual(
    lines(decodeRecords(b.body, b.count)).map(([l]) => l),
    Array<string>(10).fill('x'.repeat(99)),
  );
});

/** The lines of `text` (whole lines only) as one block. */
function block(text: string): LineBlock[] {
  const src = Buffer.from(text);
  const cuts: number[] = [];
  assert.equal(scanLines(src, Infinity, cuts), src.length);
  return [{ head, ts: TS, src, start: 0, end: src.length, count: cuts[1]!, partial: false }];
}

/** A segment as agents wrote it before line blocks: record frames, `u32 len | u32 crc | f64 seq | u32 count | records`. */
function oldSegment(firstSeq: number, records: StreamRecord[][]): Buffer {
  const frames: Buffer[] = [];
  let seq = firstSeq;
  for (const group of records) {
    const body = Buffer.concat([Buffer.alloc(12), encodeRecords(group)]);
    body.writeDoubleBE(seq, 0);
    body.writeUInt32BE(group.length, 8);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(body.length, 0);
    header.writeUInt32BE(crc32(body), 4);
    frames.push(header, body);
    seq += group.length;
  }
  return Buffer.concat(frames);
}

test('a spool written before line blocks (record frames only) opens, reads, and takes blocks after it', async (t) => {
  const dir = tempDir(t);
  const old = (n: number): StreamRecord => ({
    ts: TS - 1000,
    payload: encodeLogLine({
      process: 'web',
      stream: 'stdout',
      line: Buffer.from(`old ${n}`),
      continued: false,
    }),
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${String(1).padStart(20, '0')}.seg`),
    oldSegment(1, [
      [old(1), old(2), old(3)],
      [old(4), old(5)],
    ]),
  );
  writeFileSync(join(dir, 'state.json'), `${JSON.stringify({ ackedSeq: 1, droppedRecords: 0 })}\n`);
  const spool = await Spool.open({ dir, syncIntervalMs: 0 });
  t.after(() => spool.close());
  assert.equal(spool.lastSeq, 5);
  assert.equal(spool.ackedSeq, 1);
  const data = Buffer.from('new 1\nnew 2\r\nnew 3\n');
  const { blocks } = blocksOf(data, 2);
  assert.deepEqual(spool.appendLineBlocks(blocks), { firstSeq: 6, lastSeq: 8 });
  // One read across both kinds, starting inside the old frames.
  const b = spool.read(2, 1 << 20)!;
  assert.equal(b.firstSeq, 3);
  assert.equal(b.count, 6);
  const got = decodeRecords(b.body, b.count).map((rec) => [
    rec.ts,
    Buffer.from(decodeLogLine(rec.payload)!.line).toString(),
  ]);
  assert.deepEqual(got, [
    [TS - 1000, 'old 3'],
    [TS - 1000, 'old 4'],
    [TS - 1000, 'old 5'],
    [TS, 'new 1'],
    [TS, 'new 2'],
    [TS, 'new 3'],
  ]);
  // The old segment's bytes are untouched: what was written before stays as it was written.
  const seg = readdirSync(dir).filter((n) => n.endsWith('.seg'));
  assert.equal(seg.length, 1);
  assert.deepEqual(
    readFileSync(join(dir, seg[0]!)).subarray(0, oldSegment(1, [[old(1), old(2), old(3)]]).length),
    oldSegment(1, [[old(1), old(2), old(3)]]),
  );
});

test('a torn block at the tail, or one whose bytes do not make its count, is cut at open', async (t) => {
  const dir = tempDir(t);
  const segPath = () =>
    join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.seg'))!,
    );
  {
    const spool = await Spool.open({ dir, syncIntervalMs: 0 });
    spool.appendLineBlocks(block('a\nb\n'));
    spool.appendLineBlocks(block('c\nd\ne\n'));
    await spool.close();
  }
  const whole = readFileSync(segPath());
  // Torn: the last frame's last bytes never reached the disk.
  writeFileSync(segPath(), whole.subarray(0, whole.length - 2));
  {
    const spool = await Spool.open({ dir, syncIntervalMs: 0 });
    assert.equal(spool.lastSeq, 2);
    assert.deepEqual(spool.appendLineBlocks(block('c2\n')), { firstSeq: 3, lastSeq: 3 });
    await spool.close();
  }
  // A block whose count word says 3 lines where its bytes hold 1 (CRC made to match): cut.
  const now = readFileSync(segPath());
  const second = whole.readUInt32BE(0) + 8;
  const bad = Buffer.from(now);
  bad.writeUInt32BE((0x80000000 | 3) >>> 0, second + 8 + 8);
  bad.writeUInt32BE(crc32(bad.subarray(second + 8)), second + 4);
  writeFileSync(segPath(), bad);
  const spool = await Spool.open({ dir, syncIntervalMs: 0 });
  t.after(() => spool.close());
  assert.equal(spool.lastSeq, 2);
  const b = spool.read(0, 1 << 20)!;
  assert.deepEqual(
    decodeRecords(b.body, b.count).map((rec) => Buffer.from(decodeLogLine(rec.payload)!.line).toString()),
    ['a', 'b'],
  );
});

test('an append of blocks larger than the whole spool keeps its newest lines and counts the rest', async (t) => {
  const dir = tempDir(t);
  const spool = await Spool.open({ dir, maxBytes: 64 * 1024, syncIntervalMs: 0 });
  t.after(() => spool.close());
  const data = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join(''));
  const { blocks, count } = blocksOf(data, 5);
  const { firstSeq, lastSeq } = spool.appendLineBlocks(blocks);
  assert.deepEqual([firstSeq, lastSeq], [1, count]);
  assert.ok(spool.droppedRecords > 0);
  const got: string[] = [];
  for (let b = spool.read(0, 1 << 20); b; b = spool.read(b.firstSeq + b.count - 1, 1 << 20))
    got.push(
      ...decodeRecords(b.body, b.count).map((r) => Buffer.from(decodeLogLine(r.payload)!.line).toString()),
    );
  assert.equal(got.length + spool.droppedRecords, 20_000);
  assert.equal(got.at(-1), 'line 19999');
  assert.equal(got[0], `line ${spool.droppedRecords}`);
});
