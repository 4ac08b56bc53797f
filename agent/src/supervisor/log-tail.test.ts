// The tailer's one-pass encoder against LineSplitter (the reference for what a line is): the same
// lines, in the same order, with the same `continued` flags, whatever the read boundaries — LF,
// CRLF, a lone CR, empty lines, binary bytes, lines longer than MAX_LOG_LINE_BYTES, and a partial
// line held across reads. Through the real Spool (appendEncoded) and through `append` alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogLine, decodeRecords, type StreamRecord } from '@keel/shared';
import { Spool } from '../link/spool.ts';
import { LogTailer } from './log-tail.ts';
import { seededRandom as rng } from '../../../test/helpers/seeded-random.ts';
import { randomLogOutput, splitterLines } from '../../../test/helpers/log-output.ts';

/** A spool in memory whose last seq before any append is `startSeq`: the records appended, in order. */
function memorySpool(startSeq = 0) {
  const records: StreamRecord[] = [];
  const spool = {
    get lastSeq() {
      return startSeq + records.length;
    },
    append(r: readonly StreamRecord[]) {
      records.push(...r);
      return { firstSeq: startSeq + records.length - r.length + 1, lastSeq: startSeq + records.length };
    },
  };
  return { records, spool };
}

const lines = (records: readonly StreamRecord[]) =>
  records.map((rec) => {
    const l = decodeLogLine(rec.payload)!;
    assert.equal(l.process, 'web');
    return [Buffer.from(l.line).toString('latin1'), l.continued] as [string, boolean];
  });

for (const seed of [1, 2]) {
  test(`LogTailer encodes the lines LineSplitter finds, across read boundaries (seed ${seed})`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-tail-enc-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const data = randomLogOutput(seed, 4 * 1024 * 1024, 'the last words');
    const file = join(dir, 'out.log');
    writeFileSync(file, '');
    for (const d of ['a', 'b']) mkdirSync(join(dir, d));
    const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 64 * 1024 * 1024 });
    t.after(() => spool.close());
    const plain: StreamRecord[] = [];
    const memory = {
      get lastSeq() {
        return plain.length;
      },
      append(records: readonly StreamRecord[]) {
        plain.push(...records);
        return { firstSeq: plain.length - records.length + 1, lastSeq: plain.length };
      },
    };
    // The same file through two tailers: one appending encoded bodies to the real spool, one
    // handing decoded records to `append`. A constant clock: a partial line is never timed out.
    const a = new LogTailer({ dir: join(dir, 'a'), spool, now: () => 1_700_000_000_000 });
    const b = new LogTailer({ dir: join(dir, 'b'), spool: memory, now: () => 1_700_000_000_000 });
    const heard: string[] = [];
    a.onLine((_p, _s, line) => heard.push(line.toString('latin1')));
    for (const tailer of [a, b]) tailer.add({ process: 'web', stream: 'stdout', path: file });
    // Written in pieces of random size (a few bytes to a few MiB), a tick after each.
    const r = rng(seed * 7919);
    for (let at = 0; at < data.length;) {
      const piece = Math.min(data.length - at, Math.floor(r() < 0.3 ? r() * 50 : r() * 3 * 1024 * 1024));
      appendFileSync(file, data.subarray(at, at + piece));
      at += piece;
      a.tick();
      b.tick();
    }
    a.drain();
    b.drain();
    a.tick(true);
    b.tick(true);
    const want = splitterLines(data);
    assert.ok(want.length > 10_000, `${want.length} lines`);
    await spool.flush();
    const records: StreamRecord[] = [];
    for (let batch = spool.read(0, 16 * 1024 * 1024); batch;) {
      records.push(...decodeRecords(batch.body, batch.count));
      batch = spool.read(batch.firstSeq + batch.count - 1, 16 * 1024 * 1024);
    }
    const got = lines(records);
    assert.equal(got.length, want.length);
    assert.deepEqual(got, want);
    assert.deepEqual(lines(plain), want);
    assert.deepEqual(
      heard,
      want.map(([l]) => l),
    );
  });
}

test('the intent is written in place in two page slots, and across a larger one (many files) a restart resumes exactly', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-tail-intent-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const intent = join(dir, 'tail-offsets.json');
  const { records, spool } = memorySpool();
  const one = join(dir, 'one.log');
  writeFileSync(one, 'a\nb\n');
  const a = new LogTailer({ dir, spool });
  a.add({ process: 'web', stream: 'stdout', path: one });
  assert.equal(a.tick(), 2);
  assert.equal(statSync(intent).size, 8192);
  // 60 files with long names: the intent no longer fits a page and is renamed into place.
  const many = Array.from({ length: 60 }, (_, i) => join(dir, `${'x'.repeat(80)}-${i}.log`));
  for (const f of many) {
    writeFileSync(f, 'm\n');
    a.add({ process: 'web', stream: 'stdout', path: f });
  }
  appendFileSync(one, 'c\n');
  assert.equal(a.tick(), 61);
  assert.ok(statSync(intent).size > 8192);
  // Back to one file: two pages again, written whole (not over the longer file's start).
  for (const f of many) a.remove(f);
  appendFileSync(one, 'd\n');
  assert.equal(a.tick(), 1);
  assert.equal(statSync(intent).size, 8192);
  // A restarted tailer resumes after "d": nothing twice, nothing skipped.
  appendFileSync(one, 'e\n');
  const b = new LogTailer({ dir, spool });
  b.add({ process: 'web', stream: 'stdout', path: one });
  assert.equal(b.tick(), 1);
  assert.deepEqual(
    lines(records).map(([l]) => l),
    ['a', 'b', 'c', ...Array<string>(60).fill('m'), 'd', 'e'],
  );
});

test('a torn intent page (power loss) fails its CRC: the other slot resumes exactly, or (its append already in the spool) reads only that append again', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-tail-torn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const intent = join(dir, 'tail-offsets.json');
  const { records, spool } = memorySpool();
  const file = join(dir, 'out.log');
  writeFileSync(file, '1\n2\n');
  const a = new LogTailer({ dir, spool });
  a.add({ process: 'web', stream: 'stdout', path: file });
  assert.equal(a.tick(), 2); // intent 1 (slot 1): seq 2
  appendFileSync(file, '3\n');
  assert.equal(a.tick(), 1); // intent 2 (slot 0): seq 3
  appendFileSync(file, '4\n5\n');
  assert.equal(a.tick(), 2); // intent 3 (slot 1): seq 5
  const saved = readFileSync(intent);
  const tear = (slot: number) => {
    // A page of which only the first sector reached the disk: the rest is the older bytes (here
    // zeros and garbage), as a power loss during write-back can leave it.
    const torn = Buffer.from(saved);
    torn.fill(0x7a, slot * 4096 + 512, slot * 4096 + 4096);
    writeFileSync(intent, torn);
  };
  const restart = () => {
    const b = new LogTailer({ dir, spool });
    b.add({ process: 'web', stream: 'stdout', path: file });
    return b;
  };
  const texts = () => lines(records).map(([l]) => l);

  // 1. The newest page torn while it was being written, before its append: the spool ends at 3,
  //    slot 0 (seq 3) matches exactly and 4, 5 are read once (the single page resumed at 0 here).
  records.splice(3); // the spool as it was when intent 3 was being written
  tear(1);
  const b = restart();
  assert.equal(b.resumeNote, null);
  assert.equal(b.tick(), 2);
  assert.deepEqual(texts(), ['1', '2', '3', '4', '5']);

  // 2. The newest page torn later, by a write-back after its append reached the disk: no slot
  //    matches the spool's 5 (no intent can say where 4, 5 ended without that page). The slot
  //    whose append the spool holds is used, so only that tick's lines are read again, never all.
  tear(1);
  const dup = restart();
  assert.match(dup.resumeNote ?? '', /does not match the spool's last seq 5/);
  assert.equal(dup.tick(), 2);
  assert.deepEqual(texts(), ['1', '2', '3', '4', '5', '4', '5']);
  records.splice(5);
  writeFileSync(intent, saved);

  // 3. The older page torn, the newest whole: the newest one is used, exactly.
  writeFileSync(intent, saved);
  tear(0);
  appendFileSync(file, '6\n');
  const c = restart();
  assert.equal(c.resumeNote, null);
  assert.equal(c.tick(), 1);
  assert.deepEqual(texts(), ['1', '2', '3', '4', '5', '6']);

  // 4. Both torn (outside damage): read from the start, said in resumeNote.
  writeFileSync(intent, Buffer.alloc(8192, 0x7a));
  const d = restart();
  assert.match(d.resumeNote ?? '', /unreadable/);
});

test('an intent written by an older agent (one JSON object, no CRC) is read as before', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-tail-legacy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  writeFileSync(file, 'a\nb\nc\n');
  const { records, spool } = memorySpool(7);
  writeFileSync(
    join(dir, 'tail-offsets.json'),
    JSON.stringify({ seq: 7, offsets: { [file]: 4 }, prev: { [file]: 0 } }).padEnd(4096, ' '),
  );
  const a = new LogTailer({ dir, spool });
  a.add({ process: 'web', stream: 'stdout', path: file });
  assert.equal(a.tick(), 1);
  assert.deepEqual(
    lines(records).map(([l]) => l),
    ['c'],
  );
});

test('through the real spool (line blocks): a crash between the intent and the append, or just after it, resumes with every line once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-tail-crash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  const spoolDir = join(dir, 'spool');
  let spool = await Spool.open({ dir: spoolDir, syncIntervalMs: 0 });
  /** The spool as the tailer sees it, with an append that can be made to die before it writes. */
  let dieBeforeAppend = false;
  const crashing = () => ({
    get lastSeq() {
      return spool.lastSeq;
    },
    append: (r: readonly StreamRecord[]) => spool.append(r),
    appendLineBlocks: (b: Parameters<Spool['appendLineBlocks']>[0]) => {
      if (dieBeforeAppend) throw new Error('killed');
      return spool.appendLineBlocks(b);
    },
  });
  const start = () => {
    const tailer = new LogTailer({ dir, spool: crashing(), now: () => 1_700_000_000_000 });
    tailer.add({ process: 'web', stream: 'stdout', path: file });
    return tailer;
  };
  const numbered = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}\n`).join('');
  writeFileSync(file, numbered(1, 5000));
  const a = start();
  assert.equal(a.tick(), 5000);
  // The agent dies after writing the next intent and before the append (the tailer object is
  // dropped as a killed process would be; its in-memory offsets go with it).
  appendFileSync(file, numbered(5001, 9000));
  dieBeforeAppend = true;
  assert.throws(() => a.tick(), /killed/);
  dieBeforeAppend = false;
  await spool.close();
  spool = await Spool.open({ dir: spoolDir, syncIntervalMs: 0 });
  const b = start();
  assert.equal(b.resumeNote, null);
  assert.equal(b.tick(), 4000);
  // Now it dies just after the append (before anything else): the next start resumes after it.
  appendFileSync(file, numbered(9001, 9500));
  assert.equal(b.tick(), 500);
  await spool.close();
  spool = await Spool.open({ dir: spoolDir, syncIntervalMs: 0 });
  appendFileSync(file, `${numbered(9501, 10_000)}no newline yet`);
  const c = start();
  assert.equal(c.resumeNote, null);
  assert.equal(c.tick(true), 501);
  const got: string[] = [];
  for (
    let batch = spool.read(0, 1 << 20);
    batch;
    batch = spool.read(batch.firstSeq + batch.count - 1, 1 << 20)
  )
    got.push(...lines(decodeRecords(batch.body, batch.count)).map(([l]) => l));
  await spool.close();
  assert.deepEqual(got, [...numbered(1, 10_000).split('\n').slice(0, -1), 'no newline yet']);
});
