// Proves the plain-JavaScript LZ4 block decoder gives exactly lz4-napi's output for the chunks
// Keel stores (log text, long runs, incompressible bytes, empty and one-byte inputs), decodes into
// the middle of a reused buffer without touching what is around it, and refuses malformed blocks
// (a bad offset, truncation, output past its limit) with an error instead of writing out of range.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { compressSync, uncompressSync } from 'lz4-napi';
import { decodeLz4Block } from './lz4-block.ts';

/** Decodes a stored chunk (size prefix + block) the way the search worker does. */
function decode(data: Buffer, out = Buffer.alloc(data.readUInt32LE(0)), at = 0): Buffer {
  const size = data.readUInt32LE(0);
  const end = decodeLz4Block(data, 4, data.length, out, at, at + size);
  assert.equal(end, at + size);
  return out.subarray(at, end);
}

test('decodes what lz4-napi encodes, byte for byte', () => {
  const lines: string[] = [];
  for (let n = 0; n < 3000; n++) {
    lines.push(
      `n ${String(n).padStart(9, '0')} INFO api[${1000 + (n % 32)}]: GET /api/v1/items/${(n * 7919) % 100000}`,
    );
  }
  const inputs = [
    Buffer.from(lines.join('\n')),
    Buffer.alloc(300_000, 'a'),
    Buffer.concat([Buffer.from('abc'), Buffer.alloc(70_000, 'abcd'), randomBytes(5000)]),
    randomBytes(100_000),
    Buffer.from('x'),
    Buffer.alloc(0),
    Buffer.from('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'.repeat(40)),
  ];
  for (const input of inputs) {
    const data = compressSync(input);
    assert.deepEqual(decode(data), uncompressSync(data));
    assert.deepEqual(decode(data), input);
  }
});

test('decodes into a reused buffer at an offset, leaving the rest as it was', () => {
  const input = Buffer.from('hello hello hello hello hello hello world '.repeat(100));
  const data = compressSync(input);
  const out = Buffer.alloc(input.length + 20, 0x2a);
  assert.deepEqual(decode(data, out, 10), input);
  assert.ok(out.subarray(0, 10).every((b) => b === 0x2a));
  assert.ok(out.subarray(10 + input.length).every((b) => b === 0x2a));
});

test('refuses malformed blocks', () => {
  const out = Buffer.alloc(1024);
  // An offset that points before the output's start.
  assert.throws(
    () => decodeLz4Block(Buffer.from([0x14, 0x61, 0x05, 0x00, 0x10, 0x62]), 0, 6, out, 0, 1024),
    /offset/,
  );
  // A zero offset.
  assert.throws(() => decodeLz4Block(Buffer.from([0x14, 0x61, 0x00, 0x00]), 0, 4, out, 0, 1024), /offset/);
  // Literals longer than the block.
  assert.throws(() => decodeLz4Block(Buffer.from([0x50, 0x61, 0x62]), 0, 3, out, 0, 1024), /literals/);
  // Output past its limit (a valid block for more bytes than allowed).
  const data = compressSync(Buffer.alloc(500, 'z'));
  assert.throws(() => decodeLz4Block(data, 4, data.length, out, 0, 100), /past the end/);
  // Truncated anywhere: an error, never a partial success.
  const full = compressSync(Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(50)));
  const size = full.readUInt32LE(0);
  const big = Buffer.alloc(size);
  for (let cut = 5; cut < full.length; cut += 3) {
    assert.throws(() => {
      if (decodeLz4Block(full, 4, cut, big, 0, size) !== size) throw new Error('lz4: short output');
    });
  }
  // Nothing at all.
  assert.throws(() => decodeLz4Block(Buffer.alloc(0), 0, 0, out, 0, 1024), /truncated/);
});
