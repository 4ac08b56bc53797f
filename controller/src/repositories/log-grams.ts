// The skip index of the `logs` stream: per stored chunk, a Bloom filter of the 5-byte grams of
// every line's text (ASCII folded to lower case; grams never cross a line), kept beside the chunk
// in `stream_chunks.grams`. A search that needs a literal (services/log-prefilter.ts) asks, inside
// the database, whether each of the literal's grams may be in the chunk, and reads only the chunks
// where all may be — as Loki's bloom filters and ClickHouse's ngrambf skip indexes do. A Bloom
// filter has false positives (a chunk read for nothing), never false negatives: a chunk holding a
// line with the literal always has every one of its grams set.
//
// Size: a filter starts at one bit per byte of line text (at most 2^18 bits, 32 KiB, for a
// 256 KiB chunk), four bits per gram, and is folded in halves (OR of the two halves: the same
// filter for `hash mod bits/2`) while it stays at most FILL_TARGET full, so repetitive text takes
// a few hundred bytes and high-entropy text (request ids, numbers) up to 1/8 of its size.
//
// Format 2 (migration 0022 dropped the filters of format 1, which the summary pass then rebuilt):
// four probes per gram from murmur3-mixed hashes. Format 1 set two bits from a weakly mixed hash:
// on the logs bench's lines the two bits of `99999` were set in 42 % and 58 % of the chunks
// (similar grams, digit runs, landed on them; the filters were 24 % full), so it passed 22 % of
// the chunks that lack it, where a fill of 24 % should give ~6 %.
import { sql, type SQL } from 'drizzle-orm';

/** Bytes per gram: a literal shorter than this cannot use the filter. */
export const GRAM_BYTES = 5;
/** Largest filter, in bits (32 KiB). */
const MAX_BITS = 1 << 18;
/** Smallest filter, in bits (64 bytes). */
const MIN_BITS = 1 << 9;
/** A filter is folded while at most this share of its bits would be set. */
const FILL_TARGET = 0.35;
/** Grams of one literal that are probed (spread over it): more cost a probe each, per chunk. */
const MAX_GRAMS_PER_LITERAL = 4;

/** ASCII upper case to lower case; every other byte as it is. */
const FOLD = new Uint8Array(256).map((_, i) => (i >= 65 && i <= 90 ? i + 32 : i));

/** Bits set per gram (double hashing: probe j is h1 + j * h2). */
const PROBES = 4;

/** murmur3's 32-bit finaliser: every input bit reaches every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * The gram's two hashes (signed 32-bit; a probe is taken unsigned, mod the filter's bits). `w`
 * holds the gram's last four bytes, `first` its first byte. The second is the first rotated (its
 * high bits, which the low bits of a probe do not use otherwise), odd so that the probes of one
 * gram differ at every filter size.
 */
function gramHash1(w: number, first: number): number {
  return fmix32(w ^ Math.imul(first + 1, 0x27d4eb2d));
}
function gramHash2(h1: number): number {
  return (h1 >>> 17) | (h1 << 15) | 1;
}
/** The gram's PROBES bit positions (unsigned 32-bit; a filter of `bits` uses them mod bits). */
function probesOf(h1: number): number[] {
  const h2 = gramHash2(h1);
  const out: number[] = [];
  for (let j = 0; j < PROBES; j++) out.push((h1 + Math.imul(j, h2)) >>> 0);
  return out;
}

function popcount(bytes: Uint8Array, length: number): number {
  let n = 0;
  for (let i = 0; i < length; i++) {
    let b = bytes[i]!;
    b = b - ((b >> 1) & 0x55);
    b = (b & 0x33) + ((b >> 2) & 0x33);
    n += (b + (b >> 4)) & 0x0f;
  }
  return n;
}

/**
 * The filter of a decoded `logs` chunk (`count` records, encodeRecords' format, payloads in
 * encodeLogLine's format). A record that is not a log line (a tombstone, malformed) adds nothing.
 */
export function buildGramFilter(body: Buffer, count: number): Buffer {
  let textBytes = 0;
  for (let off = 0, k = 0; k < count && off + 12 <= body.length; k++) {
    const end = off + 12 + body.readUInt32BE(off);
    textBytes += end - off;
    off = end;
  }
  let bits = MIN_BITS;
  while (bits < MAX_BITS && bits < textBytes) bits *= 2;
  const filter = new Uint8Array(bits >> 3);
  const mask = bits - 1;
  let off = 0;
  for (let k = 0; k < count && off + 12 <= body.length; k++) {
    const p = off + 12;
    const end = Math.min(body.length, p + body.readUInt32BE(off));
    off = end;
    if (end - p < 2) continue;
    const start = p + 2 + body[p + 1]!;
    if (end - start < GRAM_BYTES) continue;
    // The first four bytes, then one gram per byte after them.
    let w =
      (FOLD[body[start]!]! << 24) |
      (FOLD[body[start + 1]!]! << 16) |
      (FOLD[body[start + 2]!]! << 8) |
      FOLD[body[start + 3]!]!;
    for (let i = start + GRAM_BYTES - 1; i < end; i++) {
      const first = w >>> 24;
      w = (w << 8) | FOLD[body[i]!]!;
      // PROBES (4) bits: h1 + j * h2 for j = 0..3, unrolled.
      const h1 = gramHash1(w, first);
      const h2 = gramHash2(h1);
      // (32-bit additions throughout: `| 0` keeps V8 on integers, and the low bits are the same.)
      let v = h1;
      let a = v & mask;
      filter[a >> 3]! |= 1 << (a & 7);
      v = (v + h2) | 0;
      a = v & mask;
      filter[a >> 3]! |= 1 << (a & 7);
      v = (v + h2) | 0;
      a = v & mask;
      filter[a >> 3]! |= 1 << (a & 7);
      v = (v + h2) | 0;
      a = v & mask;
      filter[a >> 3]! |= 1 << (a & 7);
    }
  }
  // Fold while the half would stay sparse enough.
  let length = filter.length;
  let set = popcount(filter, length);
  while (length * 8 > MIN_BITS && set / (length * 4) <= FILL_TARGET) {
    const half = length >> 1;
    for (let i = 0; i < half; i++) filter[i]! |= filter[i + half]!;
    length = half;
    set = popcount(filter, length);
  }
  return Buffer.from(filter.buffer, 0, length);
}

/**
 * The probes of one literal: for up to MAX_GRAMS_PER_LITERAL of its grams (spread over it), the
 * gram's PROBES bit positions. Empty when the literal is shorter than a gram.
 */
export function literalProbes(literal: string): number[][] {
  const bytes = Buffer.from(literal, 'utf8');
  const grams: number[][] = [];
  let w = 0;
  for (let i = 0; i < bytes.length; i++) {
    const first = (w >>> 24) & 255;
    w = (w << 8) | FOLD[bytes[i]!]!;
    if (i >= GRAM_BYTES - 1) grams.push(probesOf(gramHash1(w, first)));
  }
  if (grams.length <= MAX_GRAMS_PER_LITERAL) return grams;
  // First and last, and evenly between: the literal's ends are its most telling parts as often as not.
  const picked: number[][] = [];
  for (let j = 0; j < MAX_GRAMS_PER_LITERAL; j++) {
    picked.push(grams[Math.round((j * (grams.length - 1)) / (MAX_GRAMS_PER_LITERAL - 1))]!);
  }
  return picked;
}

/** Whether a filter may hold the gram with these probes (JavaScript side; tests and callers). */
export function filterMayHold(filter: Buffer, probes: readonly (readonly number[])[]): boolean {
  const bits = filter.length * 8;
  return probes.every((pair) =>
    pair.every((v) => {
      const i = v % bits;
      return (filter[i >> 3]! & (1 << (i & 7))) !== 0;
    }),
  );
}

/**
 * What a search requires of a chunk: every clause must hold, and a clause holds when one of its
 * literals may be in the chunk. `[]` requires nothing (every chunk is read).
 */
export type LiteralRequirement = string[][];

/**
 * The SQL condition over a `grams` column that is false only for chunks that cannot hold a line
 * meeting `requirement` (null grams: not indexed yet, always true); undefined when nothing can be
 * checked. Each probe reads one byte of the filter (`substring` of an EXTERNAL value fetches only
 * the TOAST chunk holding it), and AND stops at the first bit that is not set.
 */
export function gramFilterSql(grams: SQL | unknown, requirement: LiteralRequirement): SQL | undefined {
  const clauses: SQL[] = [];
  for (const clause of requirement) {
    const alternatives = clause.map(literalProbes);
    // A clause with a literal that cannot be probed holds for every chunk.
    if (alternatives.length === 0 || alternatives.some((p) => p.length === 0)) continue;
    clauses.push(
      sql`(${sql.join(
        alternatives.map((probes) => {
          // Each gram's first probe, then each one's second, and so on: an absent gram usually
          // fails at its first or second.
          const order: number[] = [];
          for (let j = 0; j < PROBES; j++) for (const p of probes) order.push(p[j]!);
          return sql`(${sql.join(
            order.map(
              (v) =>
                // The numbers are ours (never the user's text): inlined, not one parameter each.
                sql`get_bit(substring(${grams} from ((${sql.raw(String(v))}::bigint % (octet_length(${grams})::bigint * 8)) / 8 + 1)::int for 1), ${sql.raw(String(v % 8))}) = 1`,
            ),
            sql` and `,
          )})`;
        }),
        sql` or `,
      )})`,
    );
  }
  if (clauses.length === 0) return undefined;
  return sql`(${grams} is null or (${sql.join(clauses, sql` and `)}))`;
}
