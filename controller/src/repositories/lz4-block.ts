// An LZ4 block decoder in plain JavaScript that writes into a buffer the caller owns. Log search
// decodes the stored chunks (chunk-codec.ts: lz4-napi's blocks, a 32-bit little-endian decoded
// size, then the block) in its regex workers, into one buffer a worker keeps: lz4-napi returns a
// new native buffer per chunk, and on the controller's event loop those buffers (1.2 GiB per GiB
// searched) made V8 run a full mark-compact every few dozen chunks (external memory pressure;
// docs/benchmarks.md, logs). The function is self-contained (no closure, no import): the search
// worker embeds its source text.

/**
 * Decodes the LZ4 block `src[from, to)` into `dst` from `at`, writing nothing at or past `limit`;
 * returns where the output ends. Throws on a malformed block (a bad offset, a length past either
 * end). Example: `decodeLz4Block(data, 4, data.length, out, 0, data.readUInt32LE(0))`.
 */
export function decodeLz4Block(
  src: Uint8Array,
  from: number,
  to: number,
  dst: Uint8Array,
  at: number,
  limit: number,
): number {
  let i = from;
  let o = at;
  for (;;) {
    if (i >= to) throw new Error('lz4: truncated block');
    const token = src[i++]!;
    let n = token >>> 4;
    if (n === 15) {
      let b = 255;
      while (b === 255) {
        if (i >= to) throw new Error('lz4: truncated literal length');
        b = src[i++]!;
        n += b;
      }
    }
    if (i + n > to || o + n > limit) throw new Error('lz4: literals past the end');
    if (n < 32) {
      for (let k = 0; k < n; k++) dst[o + k] = src[i + k]!;
    } else {
      dst.set(src.subarray(i, i + n), o);
    }
    i += n;
    o += n;
    // The last sequence is literals only.
    if (i === to) return o;
    if (i + 2 > to) throw new Error('lz4: truncated offset');
    const offset = src[i]! | (src[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > o - at) throw new Error('lz4: offset out of range');
    let m = token & 15;
    if (m === 15) {
      let b = 255;
      while (b === 255) {
        if (i >= to) throw new Error('lz4: truncated match length');
        b = src[i++]!;
        m += b;
      }
    }
    m += 4;
    if (o + m > limit) throw new Error('lz4: match past the end');
    let s = o - offset;
    if (m >= 32 && offset >= m) {
      dst.copyWithin(o, s, s + m);
      o += m;
    } else {
      // Overlapping (offset < length) repeats what it has just written: byte by byte.
      const e = o + m;
      while (o < e) dst[o++] = dst[s++]!;
    }
  }
}
