// The live channel's per-read encoder gives byte for byte what JSON.stringify of each line's
// { s, t, l: toString('utf8') } gives: printable ASCII, quotes, backslashes, every control byte,
// DEL, UTF-8, invalid UTF-8 and lines of every length around the four-byte words.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveLines } from './live-lines.ts';

const reference = (s: string, t: number, lines: Buffer[]) =>
  lines.map((l) => `${JSON.stringify({ s, t, l: l.toString('utf8') })}\n`).join('');

test('LiveLines: the same bytes as JSON.stringify per line, for any bytes', () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const alphabets = [
    () => 0x20 + rnd(95), // printable ASCII
    () => [0x22, 0x5c, 0x7f, 0x41][rnd(4)]!, // quote, backslash, DEL
    () => rnd(32), // control bytes
    () => rnd(256), // anything (invalid UTF-8 mostly)
  ];
  const utf8 = Buffer.from('héllo — ünïcödé 日本 🙂 "q" \\ \t');
  const enc = new LiveLines(16); // small: it must grow
  for (let round = 0; round < 400; round++) {
    const lines: Buffer[] = [];
    for (let k = rnd(20); k >= 0; k--) {
      const len = rnd(3) === 0 ? rnd(9) : rnd(300);
      const mix = rnd(8);
      const line = Buffer.alloc(len);
      for (let i = 0; i < len; i++) {
        line[i] = mix < 5 ? alphabets[0]!() : alphabets[mix - 4]!();
        if (mix === 7 && rnd(20) === 0) line[i] = alphabets[0]!();
      }
      lines.push(rnd(10) === 0 ? Buffer.concat([line, utf8.subarray(0, rnd(utf8.length))]) : line);
    }
    const s = rnd(2) === 0 ? 'out' : 'err';
    const t = 1_700_000_000_000 + rnd(1e6);
    enc.begin(s, t);
    // Each line at an odd place in a larger buffer (the encoder reads words at any alignment).
    const src = Buffer.concat(lines.flatMap((l) => [Buffer.from('\n'), l]));
    let at = 0;
    for (const l of lines) {
      at += 1;
      enc.add(src, at, at + l.length);
      at += l.length;
    }
    assert.equal(enc.count, lines.length);
    assert.equal(enc.take().toString('utf8'), reference(s, t, lines), `round ${round}`);
    assert.equal(enc.count, 0);
  }
});
