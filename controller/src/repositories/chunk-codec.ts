// The encodings of a stream chunk's `data` (stream_chunks.codec). New chunks are LZ4 blocks
// (lz4-napi: lz4_flex behind N-API, the block prefixed with its decoded size as a 32-bit
// little-endian number); chunks written before are raw deflate (level 1) and stay readable: every
// reader (reads, resends, search, the retention job) decodes through here. On log text LZ4 costs
// ~3x less CPU to compress and ~2-3x less to decode than deflate level 1, for chunks ~1.6x larger
// (docs/benchmarks.md, logs). Compression and decoding run on libuv's thread pool, off the event
// loop. A chunk whose codec is unknown or whose data does not decode is a `ChunkDecodeError`, never
// a crash: a decoded-size prefix is checked before anything is allocated for it.
import { promisify } from 'node:util';
import { deflateRaw, inflateRaw } from 'node:zlib';
import { compress as lz4Compress, uncompress as lz4Uncompress } from 'lz4-napi';
import { chunkCodec, type ChunkCodec } from '../db/schema/streams.ts';

/** The codec new chunks are written with. */
export const CHUNK_CODEC: ChunkCodec = chunkCodec.lz4;

/**
 * Largest decoded chunk accepted. Chunks hold at most 256 KiB of records, or one record when a
 * single one is larger (a record is at most a frame: a few MiB); a size prefix past this is
 * corrupt data, refused before lz4 allocates for it.
 */
export const MAX_DECODED_CHUNK_BYTES = 64 * 1024 * 1024;

const deflateRawAsync = promisify(deflateRaw);
const inflateRawAsync = promisify(inflateRaw);

/** A chunk that cannot be decoded: unknown codec, or data its codec rejects. */
export class ChunkDecodeError extends Error {
  constructor(
    readonly codec: number,
    detail: string,
  ) {
    super(`stream chunk does not decode (codec ${codec}): ${detail}`);
    this.name = 'ChunkDecodeError';
  }
}

/**
 * Encodes one chunk's records with `codec` (default: CHUNK_CODEC); stored raw (`none`) when the
 * encoding does not make it smaller.
 */
export async function encodeChunk(
  raw: Buffer,
  codec: ChunkCodec = CHUNK_CODEC,
): Promise<{ codec: ChunkCodec; data: Buffer }> {
  let data: Buffer;
  if (codec === chunkCodec.lz4) data = await lz4Compress(raw);
  else if (codec === chunkCodec.deflateRaw) data = await deflateRawAsync(raw, { level: 1 });
  else return { codec: chunkCodec.none, data: raw };
  return data.length < raw.length ? { codec, data } : { codec: chunkCodec.none, data: raw };
}

/** Decodes a stored chunk's data into its record body. Throws ChunkDecodeError. */
export async function decodeChunk(codec: number, data: Buffer, sizeHint?: number): Promise<Buffer> {
  if (codec === chunkCodec.none) return data;
  if (codec === chunkCodec.lz4) {
    if (data.length < 4) throw new ChunkDecodeError(codec, 'shorter than its size prefix');
    const size = data.readUInt32LE(0);
    if (size > MAX_DECODED_CHUNK_BYTES) {
      throw new ChunkDecodeError(codec, `decoded size ${size} exceeds ${MAX_DECODED_CHUNK_BYTES}`);
    }
    let out: Buffer;
    try {
      out = await lz4Uncompress(data);
    } catch (err) {
      throw new ChunkDecodeError(codec, (err as Error).message);
    }
    if (out.length !== size)
      throw new ChunkDecodeError(codec, `decoded ${out.length} bytes, expected ${size}`);
    return out;
  }
  if (codec === chunkCodec.deflateRaw) {
    try {
      // One output step for a whole chunk (one thread-pool round trip, not one per 16 KiB).
      return await inflateRawAsync(data, {
        ...(sizeHint !== undefined && { chunkSize: Math.max(64, sizeHint) }),
        maxOutputLength: MAX_DECODED_CHUNK_BYTES,
      });
    } catch (err) {
      throw new ChunkDecodeError(codec, (err as Error).message);
    }
  }
  throw new ChunkDecodeError(codec, 'unknown codec');
}
