// The WebAssembly line encoder against LineSplitter (the reference for what a line is) and the
// shared record format: random output with LF, CRLF, lone CRs, empty lines, binary bytes and lines
// around and over the bound (a small bound here, so parts are many), encoded in reads of random
// sizes with the unfinished line carried over, and a records region too small at first (it grows).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLogLine, decodeRecords, encodeLogLine } from '@keel/shared';
import { LineEncoder } from './encode-lines.ts';
import { LineSplitter } from './log-tail.ts';
import { seededRandom as rng } from '../../../test/helpers/seeded-random.ts';

function output(seed: number, bytes: number, max: number): Buffer {
  const r = rng(seed);
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes;) {
    const kind = r();
    const len =
      kind < 0.1
        ? 0
        : kind < 0.2
          ? max - 2 + Math.floor(r() * 5)
          : kind < 0.25
            ? max * 3
            : Math.floor(r() * 40);
    const binary = r() < 0.2;
    for (let k = 0; k < len && i < bytes; k++, i++) {
      const b = binary ? Math.floor(r() * 256) : 32 + Math.floor(r() * 95);
      out[i] = b === 10 ? 11 : b;
    }
    const end = r();
    for (const b of end < 0.2 ? [13, 10] : end < 0.25 ? [13] : [10]) if (i < bytes) out[i++] = b;
  }
  return out;
}

for (const seed of [1, 2, 3]) {
  test(`LineEncoder finds LineSplitter's lines and writes them as records (seed ${seed})`, () => {
    const max = 37 + seed * 13;
    const data = output(seed, 200_000, max);
    const heads = [false, true].map((continued) =>
      encodeLogLine({ process: 'game-1', stream: 'stderr', line: Buffer.alloc(0), continued }),
    ) as [Buffer, Buffer];
    const splitter = new LineSplitter(max);
    const want = splitter.push(data);
    const r = rng(seed + 100);
    const readBytes = 4096;
    // A records region of 64 bytes: it grows while encoding.
    const enc = new LineEncoder(readBytes + max, max, 64);
    const time = Buffer.alloc(8);
    const got: { line: Buffer; continued: boolean; ts: number }[] = [];
    let pending = Buffer.alloc(0);
    for (let at = 0, tick = 0; at < data.length; tick++) {
      const n = Math.min(1 + Math.floor(r() * readBytes), data.length - at);
      enc.reset();
      time.writeDoubleBE(1_700_000_000_000 + tick, 0);
      pending.copy(enc.read, 0);
      data.copy(enc.read, pending.length, at, at + n);
      at += n;
      const len = pending.length + n;
      const rest = enc.encode(len, heads, time);
      assert.ok(len - rest < max, 'an unfinished line is shorter than the bound');
      pending = Buffer.from(enc.read.subarray(rest, len));
      const body = Buffer.from(enc.records());
      for (const rec of decodeRecords(body, enc.count)) {
        const l = decodeLogLine(rec.payload)!;
        assert.equal(l.process, 'game-1');
        assert.equal(l.stream, 'stderr');
        assert.equal(rec.ts, 1_700_000_000_000 + tick);
        got.push({ line: Buffer.from(l.line), continued: l.continued, ts: rec.ts });
      }
    }
    assert.ok(want.length > 1000);
    assert.ok(want.some((l) => l.continued));
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) {
      assert.deepEqual(got[i]!.line, want[i]!.line, `line ${i}`);
      assert.equal(got[i]!.continued, want[i]!.continued, `line ${i}`);
    }
    assert.deepEqual(pending, splitter.flush()?.line ?? Buffer.alloc(0));
  });
}

test('LineEncoder hands each record written from an offset on to eachLine, and appends one by record', () => {
  const heads = [false, true].map((continued) =>
    encodeLogLine({ process: 'p', stream: 'stdout', line: Buffer.alloc(0), continued }),
  ) as [Buffer, Buffer];
  const enc = new LineEncoder(1024, 64);
  const time = Buffer.alloc(8);
  enc.reset();
  Buffer.from('one\r\ntwo\n').copy(enc.read);
  assert.equal(enc.encode(9, heads, time), 9);
  const from = enc.outBytes;
  Buffer.from('\nthree\nfou').copy(enc.read);
  assert.equal(enc.encode(10, heads, time), 7);
  enc.record(heads[1], time, Buffer.from('fou'));
  const seen: string[] = [];
  enc.eachLine(from, heads[0].length, (line) => seen.push(line.toString()));
  assert.deepEqual(seen, ['', 'three', 'fou']);
  const all = decodeRecords(Buffer.from(enc.records()), enc.count).map((r) => decodeLogLine(r.payload)!);
  assert.deepEqual(
    all.map((l) => [l.line.toString(), l.continued]),
    [
      ['one', false],
      ['two', false],
      ['', false],
      ['three', false],
      ['fou', true],
    ],
  );
});
