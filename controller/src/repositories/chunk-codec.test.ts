// Proves the stream chunk codecs: LZ4 (new chunks) and deflate (chunks written before it) each
// round-trip log text and binary records; data no codec makes smaller is stored raw; and a chunk
// whose codec is unknown or whose data does not decode (garbage, truncated, a corrupt size prefix
// that would make LZ4 allocate gigabytes) is a ChunkDecodeError, never a crash or a hang.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import { chunkCodec } from '../db/schema/streams.ts';
import {
  CHUNK_CODEC,
  ChunkDecodeError,
  decodeChunk,
  encodeChunk,
  MAX_DECODED_CHUNK_BYTES,
} from './chunk-codec.ts';

/** ~256 KiB of log records, as a chunk holds them. */
function logChunk(): Buffer {
  const records = [];
  for (let n = 1; n <= 2_400; n++) {
    const text = `n ${String(n).padStart(9, '0')} INFO api[${1000 + (n % 32)}]: GET /api/v1/items/${(n * 7919) % 100000} 200 ${n % 250}ms`;
    records.push({
      ts: Date.UTC(2026, 10, 30) + n,
      payload: encodeLogLine({ process: 'web', stream: 'stdout', line: Buffer.from(text), continued: false }),
    });
  }
  return encodeRecords(records);
}

const isDecodeError = (codec: number) => (err: unknown) =>
  err instanceof ChunkDecodeError && err.codec === codec && /does not decode/.test(err.message);

test('new chunks are LZ4; LZ4 and deflate chunks round-trip', async () => {
  assert.equal(CHUNK_CODEC, chunkCodec.lz4);
  const raw = logChunk();
  const lz4 = await encodeChunk(raw);
  assert.equal(lz4.codec, chunkCodec.lz4);
  assert.ok(lz4.data.length < raw.length / 2, `lz4: ${raw.length} -> ${lz4.data.length}`);
  assert.deepEqual(await decodeChunk(lz4.codec, lz4.data), raw);
  const deflate = await encodeChunk(raw, chunkCodec.deflateRaw);
  assert.equal(deflate.codec, chunkCodec.deflateRaw);
  assert.deepEqual(await decodeChunk(deflate.codec, deflate.data), raw);
  // What chunks written before LZ4 hold: deflateRawSync at level 1.
  assert.deepEqual(await decodeChunk(chunkCodec.deflateRaw, deflateRawSync(raw, { level: 1 })), raw);
  assert.deepEqual(await decodeChunk(chunkCodec.deflateRaw, deflateRawSync(raw), raw.length), raw);
  // Binary records, and one record bigger than a chunk's usual 256 KiB.
  const big = encodeRecords([
    { ts: 1, payload: Buffer.concat([randomBytes(1000), Buffer.alloc(600_000, 7)]) },
  ]);
  const bigLz4 = await encodeChunk(big);
  assert.equal(bigLz4.codec, chunkCodec.lz4);
  assert.deepEqual(await decodeChunk(bigLz4.codec, bigLz4.data), big);
});

test('data no codec makes smaller is stored raw', async () => {
  const noise = randomBytes(8192);
  for (const codec of [chunkCodec.lz4, chunkCodec.deflateRaw]) {
    const out = await encodeChunk(noise, codec);
    assert.equal(out.codec, chunkCodec.none);
    assert.equal(out.data, noise);
  }
  assert.equal(await decodeChunk(chunkCodec.none, noise), noise);
});

test('an unknown codec or data that does not decode is a ChunkDecodeError', async () => {
  const raw = logChunk();
  const lz4 = (await encodeChunk(raw)).data;
  await assert.rejects(decodeChunk(9, lz4), isDecodeError(9));
  await assert.rejects(decodeChunk(chunkCodec.lz4, Buffer.alloc(0)), isDecodeError(chunkCodec.lz4));
  await assert.rejects(decodeChunk(chunkCodec.lz4, Buffer.from([1, 2])), isDecodeError(chunkCodec.lz4));
  await assert.rejects(
    decodeChunk(chunkCodec.lz4, lz4.subarray(0, lz4.length >> 1)),
    isDecodeError(chunkCodec.lz4),
  );
  // A corrupt size prefix is refused before anything is allocated for it (lz4 would reserve 4 GiB).
  const huge = Buffer.from(lz4);
  huge.writeUInt32LE(0xffffffff, 0);
  const started = performance.now();
  await assert.rejects(decodeChunk(chunkCodec.lz4, huge), isDecodeError(chunkCodec.lz4));
  assert.ok(performance.now() - started < 1_000);
  // A prefix within bounds that does not match the block.
  const wrong = Buffer.from(lz4);
  wrong.writeUInt32LE(raw.length - 100, 0);
  await assert.rejects(decodeChunk(chunkCodec.lz4, wrong), isDecodeError(chunkCodec.lz4));
  wrong.writeUInt32LE(Math.min(MAX_DECODED_CHUNK_BYTES, raw.length + 100), 0);
  await assert.rejects(decodeChunk(chunkCodec.lz4, wrong), isDecodeError(chunkCodec.lz4));
  // Garbage of every kind, for both codecs: errors, never a crash.
  for (let i = 0; i < 200; i++) {
    const junk = randomBytes(1 + ((i * 37) % 3000));
    if (i % 2) junk.writeUInt32LE(raw.length, 0);
    for (const codec of [chunkCodec.lz4, chunkCodec.deflateRaw]) {
      await decodeChunk(codec, junk).then(
        () => {}, // random bytes can be a valid block
        (err: unknown) => assert.ok(isDecodeError(codec)(err), String(err)),
      );
    }
  }
  await assert.rejects(
    decodeChunk(chunkCodec.deflateRaw, Buffer.from('not deflate at all')),
    isDecodeError(1),
  );
});
