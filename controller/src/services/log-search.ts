// Log search across the fleet: a substring or a regular expression, within a time range, over one
// process, one host or every host the caller may read logs of (logs.read, per host). Results are
// produced as they are found (an async generator the route streams as NDJSON) and bounded: at
// most `limit` matches, at most `maxSeconds` of scanning, stopped as soon as the client goes.
//
// Regular expressions are JavaScript's, which can backtrack catastrophically (`(a+)+$` on a long
// line of `a`s takes longer than the universe). So a pattern is at most 512 characters, and it
// runs in a worker thread: each batch of lines (at most 1 MiB of text) must come back within
// REGEX_BATCH_MS, or the worker is terminated — the controller's event loop never runs a
// user's pattern — and the search ends with reason `pattern-too-slow`.
//
// Speed (within a small factor of grep): stored chunks are walked in place (a record becomes an
// object only when it matches); a batch is the lines' bytes joined by '\n', handed to the worker
// without a copy, decoded there as one string. The worker runs the pattern once over the whole
// batch with the `m` flag, and then per line only on the lines a match touched, which gives the
// exact per-line result: a path that matches within one line also matches in the batch (with `m`,
// `^` and `$` hold at line ends as they do at a lone line's ends, and `\b` sees '\n' as a
// non-word character like the end of a line), so the batch pass misses no line that matches; what
// it finds beyond (a match across lines, `^` after a lone \r) is dropped by the per-line check.
// Patterns with lookaround (which may look past a line's end) or that match the empty string run
// per line as before. A pattern anchored at line starts that cannot match a line end
// (linesStartOnly: `^n \d+ ERROR`) is tried at each line's start only (the `y` flag at the line's
// offset), not at every position of the batch: 0.33 against 0.80 CPU-s per GiB of the bench's
// lines for that step alone (docs/benchmarks.md).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { KeelError, decodeLogLine } from '@keel/shared';
import { chunkCodec } from '../db/schema/streams.ts';
import { ChunkDecodeError, MAX_DECODED_CHUNK_BYTES } from '../repositories/chunk-codec.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type { LogChunk, LogSearchRepository, StoredLogChunk } from '../repositories/log-search.ts';
import { decodeLz4Block } from '../repositories/lz4-block.ts';
import { CHUNK_MAX_RAW_BYTES } from '../repositories/streams.ts';
import { hasHostPermission, requireAccess, requireHostAccess } from './access.ts';
import { bodyCheck, lineLiterals, literalHits, occurrences, requiredLiterals } from './log-prefilter.ts';
import type { ProcessActor } from './processes.ts';

/** What to look for, and where. */
export interface LogSearchQuery {
  q: string;
  regex?: boolean;
  caseSensitive?: boolean;
  hostId?: string;
  process?: string;
  stream?: 'stdout' | 'stderr' | 'both';
  since?: number;
  until?: number;
  limit?: number;
  maxSeconds?: number;
}

/** One line found, with the ranges that matched ([start, end) in UTF-16 units of `text`). */
export interface LogSearchMatch {
  type: 'match';
  hostId: string;
  hostName: string;
  process: string;
  seq: number;
  ts: number;
  stream: 'stdout' | 'stderr';
  text: string;
  /** The line was longer than MAX_TEXT and `text` is its start. */
  cut: boolean;
  ranges: [number, number][];
}

export type LogSearchEvent =
  | LogSearchMatch
  | { type: 'host'; hostId: string; hostName: string; matches: number; scannedLines: number }
  | {
      type: 'end';
      matches: number;
      scannedLines: number;
      /** Records read from storage (all processes of the chunks read). */
      readRecords: number;
      hosts: number;
      /** done: everything in range was read; limit / time: a bound ended it; pattern-too-slow: see above. */
      reason: 'done' | 'limit' | 'time' | 'pattern-too-slow' | 'cancelled';
      elapsedMs: number;
    };

export const MAX_PATTERN = 512;
export const MAX_MATCHES = 2_000;
export const MAX_SECONDS = 120;
/** Longest line text sent back (the match ranges are clipped to it). */
const MAX_TEXT = 4_096;
/** A regex batch must come back within this, or the pattern is stopped. */
export const REGEX_BATCH_MS = 2_000;
/**
 * Searches running at once in this controller. Each holds up to two regex workers and, on
 * PostgreSQL, two reserved pool connections while it reads; one more is refused with
 * `search.busy` (429, Retry-After) before anything is read, so searches cannot take the pool or
 * the cores from the gateway's writes.
 */
export const MAX_RUNNING_SEARCHES = 3;

/** A running search's events; `return()` stops it (and frees its place among the running). */
export type LogSearchEvents = AsyncIterableIterator<LogSearchEvent> &
  Required<Pick<AsyncIterator<LogSearchEvent>, 'return' | 'throw'>>;
/** Largest batch of line text sent to the regex worker at once. */
const REGEX_BATCH_BYTES = 1024 * 1024;
/** A batch's buffer: REGEX_BATCH_BYTES and room for one more whole chunk (256 KiB of records). */
const BATCH_CAPACITY = REGEX_BATCH_BYTES + CHUNK_MAX_RAW_BYTES + 1024;
/** Ranges reported per line. */
const MAX_RANGES = 32;
/**
 * Regex workers per search: the batches go to whichever is free (started when a batch finds none
 * free), results are taken in order. Two: this controller's machine class has two cores.
 */
const REGEX_WORKERS = 2;
/** Batches handed to the workers and not yet taken back (bounds memory and work ahead). */
const MAX_INFLIGHT = 2 * REGEX_WORKERS;

/**
 * Where lz4-napi (chunk-codec.ts's codec) loads from, for the workers: its native decoder is ~2x
 * faster than decodeLz4Block (1.7-2.5 vs 4.5 CPU-s per GiB searched, docs/benchmarks.md). A worker
 * that cannot load it decodes with decodeLz4Block (same output, tested against it).
 */
const LZ4_NAPI = (() => {
  try {
    return createRequire(import.meta.url).resolve('lz4-napi');
  } catch {
    return null;
  }
})();

// Plain JavaScript (CommonJS) evaluated as the worker: no loader needed, bundles as a string.
// A batch: bytes holding the lines with only '\n' between them, and where each line starts and ends.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Buffer, isAscii } = require('node:buffer');
const { inflateRawSync } = require('node:zlib');
const re = new RegExp(workerData.pattern, workerData.flags);
// The whole-batch pass (see the header), unless the pattern may look past a line or matches nothing.
const whole =
  /\\(\\?<?[=!]/.test(workerData.pattern) || re.test('')
    ? null
    : new RegExp(workerData.pattern, workerData.flags + 'm');
re.lastIndex = 0;
// A pattern every match of which starts at a line's start and stays in it (linesStartOnly): tried
// at each line's start only (sticky), not at every position of the batch.
const sticky =
  whole !== null && workerData.anchored ? new RegExp(workerData.pattern, workerData.flags + 'my') : null;
function rangesOf(t) {
  re.lastIndex = 0;
  const ranges = [];
  let hit = false;
  let m;
  while ((m = re.exec(t)) !== null) {
    hit = true;
    if (m[0].length === 0) {
      re.lastIndex++;
      if (re.lastIndex > t.length) break;
      continue;
    }
    ranges.push([m.index, m.index + m[0].length]);
    if (ranges.length >= ${MAX_RANGES}) break;
  }
  return hit ? ranges : null;
}
// Whole chunks (segs: base, length, record count per chunk, each followed by one '\\n'): the records
// are walked here, off the event loop — a record's header, name and any record not selected (time
// range, process, stream) become '\\n', and each selected line's bounds and place are noted (with
// line literals, the lines kept are moved together after the walk instead, and nothing is blanked).
const { since, until, name, stream } = workerData;
let cap = 0;
let st, en, segOf, atOf, kOf;
function room(n) {
  if (n < cap) return;
  const grow = (a, c) => { const b = new Uint32Array(c); if (a) b.set(a); return b; };
  const c = Math.max(4096, cap * 2);
  st = grow(st, c); en = grow(en, c); segOf = grow(segOf, c); atOf = grow(atOf, c); kOf = grow(kOf, c);
  cap = c;
}
// The line literals (lineLiterals in log-prefilter.ts: stored chunks of a search the gram filter
// cannot narrow): a selected line holding none of them, found as bytes in the decoded records
// before the walk, is skipped (counted as scanned) rather than made a string and matched.
const literals = workerData.literals ? workerData.literals.map((l) => Buffer.from(l)) : null;
let skipped = 0;
const occurrences = ${occurrences.toString()};
function walk(buf, segs, hits) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let n = 0;
  let h = 0;
  for (let s = 0; s < segs.length; s += 3) {
    const base = segs[s];
    const len = segs[s + 1];
    const cnt = segs[s + 2];
    let off = 0;
    for (let k = 0; k < cnt; k++) {
      // A record: u32 length, f64 time, payload (flags, name length, name, line). A malformed
      // chunk is read up to where it breaks.
      if (off + 12 > len) break;
      const at = off;
      const p = off + 12;
      const end = p + dv.getUint32(base + off);
      if (end > len) break;
      off = end;
      let take = true;
      if (since !== null || until !== null) {
        const ts = dv.getFloat64(base + at + 4);
        if (since !== null && ts < since) take = false;
        if (until !== null && ts >= until) take = false;
      }
      const nameLength = end - p < 2 ? 0 : buf[base + p + 1];
      const lineStart = p + 2 + nameLength;
      if (end - p < 2 || lineStart > end) take = false;
      else if (name !== null) {
        if (nameLength !== name.length) take = false;
        else for (let i = 0; take && i < nameLength; i++) take = buf[base + p + 2 + i] === name[i];
      }
      if (take && stream !== 'both' && ((buf[base + p] & 1) === 1) !== (stream === 'stderr')) take = false;
      if (take && hits !== null) {
        // An occurrence wholly inside the line's text? (The first at or after its start.)
        const from = base + lineStart;
        const to = base + end;
        while (h < hits.at.length && hits.at[h] < from) h++;
        let inside = false;
        for (let x = h; !inside && x < hits.at.length && hits.at[x] < to; x++) {
          inside = hits.at[x] + hits.length[x] <= to;
        }
        if (!inside) {
          skipped++;
          take = false;
        }
      }
      // (With hits, the lines kept are moved together after the walk: nothing else is read, so
      // nothing is blanked.)
      if (!take) {
        if (hits === null) buf.fill(10, base + at, base + end);
        continue;
      }
      room(n);
      if (hits === null) for (let i = base + at; i < base + lineStart; i++) buf[i] = 10;
      st[n] = base + lineStart;
      en[n] = base + end;
      segOf[n] = s / 3;
      atOf[n] = at;
      kOf[n] = k;
      n++;
    }
    // What follows the last whole record (a malformed tail) is no line either.
    if (off < len && hits === null) buf.fill(10, base + off, base + len);
  }
  return n;
}
// Stored chunks (chunks: base, length, record count, codec per chunk) are decoded here, into one
// buffer the worker keeps (grown when a batch needs more), each followed by one '\\n'.
const decodeLz4Block = ${decodeLz4Block.toString()};
let lz4 = null;
try {
  if (workerData.lz4Path) lz4 = require(workerData.lz4Path);
} catch {
  lz4 = null;
}
let decoded = Buffer.alloc(0);
function chunkError(codec, message) {
  const err = new Error(message);
  err.codec = codec;
  return err;
}
function decodeInto(src, chunks) {
  const segs = new Uint32Array((chunks.length / 4) * 3);
  let used = 0;
  for (let c = 0, s = 0; c < chunks.length; c += 4, s += 3) {
    const base = chunks[c];
    const len = chunks[c + 1];
    const codec = chunks[c + 3];
    let size;
    let inflated = null;
    if (codec === ${chunkCodec.lz4}) {
      if (len < 4) throw chunkError(codec, 'shorter than its size prefix');
      size = src.readUInt32LE(base);
      if (size > ${MAX_DECODED_CHUNK_BYTES}) {
        throw chunkError(codec, 'decoded size ' + size + ' exceeds ${MAX_DECODED_CHUNK_BYTES}');
      }
    } else if (codec === ${chunkCodec.deflateRaw}) {
      try {
        inflated = inflateRawSync(src.subarray(base, base + len), { maxOutputLength: ${MAX_DECODED_CHUNK_BYTES} });
      } catch (err) {
        throw chunkError(codec, err.message);
      }
      size = inflated.length;
    } else if (codec === ${chunkCodec.none}) {
      size = len;
    } else {
      throw chunkError(codec, 'unknown codec');
    }
    if (used + size + 1 > decoded.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(decoded.length * 2, used + size + 1, ${2 * BATCH_CAPACITY}));
      decoded.copy(bigger, 0, 0, used);
      decoded = bigger;
    }
    if (codec === ${chunkCodec.lz4} && lz4 !== null) {
      // A new native buffer per chunk, but in this worker's small heap; copied into the one kept.
      let out;
      try {
        out = lz4.uncompressSync(src.subarray(base, base + len));
      } catch (err) {
        throw chunkError(codec, err.message);
      }
      if (out.length !== size) throw chunkError(codec, 'decoded ' + out.length + ' bytes, expected ' + size);
      out.copy(decoded, used);
    } else if (codec === ${chunkCodec.lz4}) {
      let end;
      try {
        end = decodeLz4Block(src, base + 4, base + len, decoded, used, used + size);
      } catch (err) {
        throw chunkError(codec, err.message);
      }
      if (end !== used + size) throw chunkError(codec, 'decoded ' + (end - used) + ' bytes, expected ' + size);
    } else if (inflated !== null) {
      inflated.copy(decoded, used);
    } else {
      src.copy(decoded, used, base, base + len);
    }
    segs[s] = used;
    segs[s + 1] = size;
    segs[s + 2] = chunks[c + 2];
    used += size;
    decoded[used++] = 10;
  }
  return { buf: decoded.subarray(0, used), segs };
}
// One stored chunk decoded again on its own (it decoded once already): the walk blanked its record
// headers, and a matching line's time, stream and process are read from them. Only chunks with a
// match are decoded twice (cheaper than keeping every header: they are few).
function decodeAlone(src, base, len, codec) {
  if (codec === ${chunkCodec.lz4}) {
    if (lz4 !== null) return lz4.uncompressSync(src.subarray(base, base + len));
    const size = src.readUInt32LE(base);
    const out = Buffer.allocUnsafe(size);
    decodeLz4Block(src, base + 4, base + len, out, 0, size);
    return out;
  }
  if (codec === ${chunkCodec.deflateRaw}) {
    return inflateRawSync(src.subarray(base, base + len), { maxOutputLength: ${MAX_DECODED_CHUNK_BYTES} });
  }
  return src.subarray(base, base + len);
}
parentPort.on('message', (msg) => {
  const { id, bytes, chunks } = msg;
  const src = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let buf = src;
  let { starts, ends, count, segs } = msg;
  if (chunks) {
    try {
      ({ buf, segs } = decodeInto(buf, chunks));
    } catch (err) {
      parentPort.postMessage({ id, error: { codec: err.codec ?? -1, message: err.message }, spent: bytes.buffer }, [bytes.buffer]);
      return;
    }
  }
  skipped = 0;
  if (segs) {
    let hits = null;
    if (chunks && literals !== null) {
      // More occurrences than a quarter of the records: the literal is in most lines, no check.
      let records = 0;
      for (let c = 2; c < chunks.length; c += 4) records += chunks[c];
      hits = occurrences(buf, literals, records >> 2);
    }
    count = walk(buf, segs, hits);
    starts = st;
    ends = en;
    if (hits !== null) {
      // The lines kept, moved together at the front (each still followed by one '\\n'): the text
      // made of the batch is theirs, not every skipped line's blank.
      let w = 0;
      for (let i = 0; i < count; i++) {
        const len = en[i] - st[i];
        if (st[i] !== w) buf.copyWithin(w, st[i], en[i]);
        st[i] = w;
        en[i] = w + len;
        w += len;
        buf[w++] = 10;
      }
      buf = buf.subarray(0, w);
    }
  }
  // ASCII (the usual log) decodes as latin1, far faster than utf8 and the same text; the bytes
  // between lines are all '\\n', so byte offsets are text offsets. Otherwise the lines are decoded
  // one by one and joined by '\\n'.
  let text;
  let at = starts;
  let to = ends;
  if (isAscii(buf)) {
    text = buf.toString('latin1');
  } else {
    const parts = [];
    at = new Uint32Array(count);
    to = new Uint32Array(count);
    let p = 0;
    for (let i = 0; i < count; i++) {
      const t = buf.toString('utf8', starts[i], ends[i]);
      parts.push(t);
      at[i] = p;
      to[i] = p + t.length;
      p += t.length + 1;
    }
    text = parts.join('\\n');
  }
  const line = (i) => text.slice(at[i], to[i]);
  const out = [];
  if (whole === null) {
    for (let i = 0; i < count; i++) {
      const ranges = rangesOf(line(i));
      if (ranges) out.push([i, ranges]);
    }
  } else if (sticky !== null) {
    // A line that matches on its own matches at its start in the batch (as the whole pass, below,
    // relies on); the per-line check keeps exactly those.
    for (let i = 0; i < count; i++) {
      sticky.lastIndex = at[i];
      if (!sticky.test(text)) continue;
      const ranges = rangesOf(line(i));
      if (ranges) out.push([i, ranges]);
    }
  } else {
    // The line holding text position p (the '\\n' after a line belongs to it).
    let lo = 0;
    const lineAt = (p) => {
      let hi = count - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (at[mid] <= p) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    };
    whole.lastIndex = 0;
    let m;
    while ((m = whole.exec(text)) !== null) {
      const first = lineAt(m.index);
      const last = lineAt(Math.max(m.index, m.index + m[0].length - 1));
      for (let i = first; i <= last; i++) {
        const ranges = rangesOf(line(i));
        if (ranges) out.push([i, ranges]);
      }
      // The lines it touched are settled: go on at the next one.
      if (last + 1 >= count) break;
      whole.lastIndex = at[last + 1];
    }
  }
  if (chunks) {
    // Decoded here only: each matching line's chunk index and record index, time, stderr flag,
    // process and text (at most ${MAX_TEXT} + 1 characters: the caller cuts it and says so).
    const again = new Map();
    const records = out.map(([i]) => {
      const c = segOf[i];
      let d = again.get(c);
      if (d === undefined) {
        d = decodeAlone(src, chunks[c * 4], chunks[c * 4 + 1], chunks[c * 4 + 3]);
        again.set(c, d);
      }
      const at = atOf[i];
      const t = line(i);
      return [
        c,
        kOf[i],
        d.readDoubleBE(at + 4),
        d[at + 12] & 1,
        d.toString('utf8', at + 14, at + 14 + d[at + 13]),
        t.length > ${MAX_TEXT} ? t.slice(0, ${MAX_TEXT} + 1) : t,
      ];
    });
    parentPort.postMessage({ id, out, records, taken: count + skipped, spent: bytes.buffer }, [bytes.buffer]);
  } else if (segs) {
    // Where each matching line is: its chunk (index in segs), record offset and index.
    const where = out.map(([i]) => [segOf[i], atOf[i], kOf[i]]);
    parentPort.postMessage({ id, out, where, taken: count + skipped, spent: bytes.buffer }, [bytes.buffer]);
  } else {
    parentPort.postMessage({ id, out, spent: bytes.buffer }, [bytes.buffer]);
  }
});
`;

/**
 * A batch of lines: bytes holding them with only '\n' between them, where each starts and ends;
 * or (regex only) whole chunks' records, `segs` saying where each chunk is (base, length, record
 * count), which the worker walks itself.
 */
interface Batch {
  bytes: Buffer;
  starts: Uint32Array;
  ends: Uint32Array;
  count: number;
  segs?: Uint32Array;
  /** Stored chunks, not decoded (regex only): base, length, record count and codec per chunk. */
  chunks?: Uint32Array;
}

/** A matching line of a stored-chunks batch: chunk index, record index, time, stderr, process, text. */
type FoundRecord = [number, number, number, number, string, string];

/** What a batch gave: line index -> ranges, in line order; for whole chunks also where each is. */
interface BatchResult {
  hits: [number, [number, number][]][];
  /** Whole chunks: per hit, [chunk index in segs, record offset, record index]. */
  where?: [number, number, number][];
  /** Whole chunks: the lines selected (scanned) in them. */
  taken?: number;
  /** Stored chunks: per hit, the line as the worker decoded it. */
  records?: FoundRecord[];
  /** Stored chunks: one did not decode. */
  error?: ChunkDecodeError;
}

/** A line's match ranges as sent: those that start within the text sent, cut to it. */
function clipped(ranges: [number, number][]): [number, number][] {
  return ranges.filter(([st]) => st < MAX_TEXT).map(([st, e]) => [st, Math.min(e, MAX_TEXT)]);
}

/** Whether `buf[at, at + length)` holds exactly the bytes of `want`. */
function sameBytes(buf: Buffer, at: number, length: number, want: Buffer): boolean {
  if (length !== want.length) return false;
  for (let i = 0; i < length; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}

type Matcher = {
  /** The lines that match; null when the pattern ran out of time. */
  match(batch: Batch): Promise<BatchResult | null>;
  /** A buffer for the next batch: one the worker handed back, or a new one. */
  buffer(size: number): Buffer;
  close(): void;
};

function substringMatcher(needle: string, caseSensitive: boolean): Matcher {
  const n = caseSensitive ? needle : needle.toLowerCase();
  return {
    match(batch) {
      const out = new Map<number, [number, number][]>();
      const texts: string[] = [];
      for (let i = 0; i < batch.count; i++)
        texts.push(batch.bytes.toString('utf8', batch.starts[i], batch.ends[i]));
      texts.forEach((t, i) => {
        const hay = caseSensitive ? t : t.toLowerCase();
        const ranges: [number, number][] = [];
        for (
          let at = hay.indexOf(n);
          at >= 0 && ranges.length < MAX_RANGES;
          at = hay.indexOf(n, at + n.length)
        ) {
          ranges.push([at, at + n.length]);
        }
        if (ranges.length > 0) out.set(i, ranges);
      });
      return Promise.resolve({ hits: [...out.entries()] });
    },
    buffer: (size) => Buffer.allocUnsafeSlow(size),
    close() {},
  };
}

/** Which records of a whole chunk the worker selects (as the in-place walk below does). */
interface RecordSelection {
  since: number | null;
  until: number | null;
  name: Uint8Array | null;
  stream: 'stdout' | 'stderr' | 'both';
  /** Stored chunks: a line holding none of these bytes is not matched (lineLiterals). */
  literals: Uint8Array[] | null;
}

/**
 * Whether a (valid, `u`-mode, no `s` flag) pattern can be tried at line starts only: it begins with
 * `^`, has no `|` outside groups and classes (so every match starts at a line's start), and
 * nothing in it can match a line terminator (no `\s`, `\D`, `\W`, negated class, `\n`-style or
 * code escape, property, control character), so a try from one line's start never runs on into
 * the next lines (where `^[\s\S]*x` would read the rest of the batch from every line).
 * @example linesStartOnly('^n (a|b) \\d+') === true; linesStartOnly('^a|b') === false
 */
export function linesStartOnly(pattern: string): boolean {
  if (!pattern.startsWith('^')) return false;
  for (const c of pattern) if (c < ' ' || c === '\u2028' || c === '\u2029') return false;
  let depth = 0;
  for (let i = 1; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      // Escapes that cannot match a line terminator: syntax characters, \d \w \S, \b \B, back
      // references (their group cannot either) and named ones.
      const e = pattern[++i] ?? '';
      if (!/[\^$\\.*+?()[\]{}|/\-dwSbBk1-9]/.test(e)) return false;
    } else if (c === '[') {
      if (pattern[i + 1] === '^') return false;
      for (i++; i < pattern.length && pattern[i] !== ']'; i++) {
        if (pattern[i] === '\\' && !/[\^$\\.*+?()[\]{}|/\-dwSbB]/.test(pattern[++i] ?? '')) return false;
      }
    } else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return false;
  }
  return true;
}

function regexMatcher(pattern: string, caseSensitive: boolean, select: RecordSelection): Matcher {
  const flags = `g${caseSensitive ? '' : 'i'}u`;
  let nextId = 0;
  // Batch buffers the workers handed back (transferred), used again: a search allocates a few, not
  // one per MiB of lines (less garbage for the event loop's collector).
  const spare: ArrayBuffer[] = [];
  type RegexWorker = {
    worker: Worker;
    pending: Map<number, (out: BatchResult | null) => void>;
    queueTail: Promise<unknown>;
    dead: boolean;
  };
  const pool: RegexWorker[] = [];
  const start = (): RegexWorker => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { pattern, flags, anchored: linesStartOnly(pattern), lz4Path: LZ4_NAPI, ...select },
    });
    worker.unref();
    const w: RegexWorker = { worker, pending: new Map(), queueTail: Promise.resolve(), dead: false };
    worker.on(
      'message',
      ({
        id,
        out,
        where,
        taken,
        records,
        error,
        spent,
      }: {
        id: number;
        out: BatchResult['hits'];
        spent: ArrayBuffer;
        error?: { codec: number; message: string };
      } & Omit<BatchResult, 'hits' | 'error'>) => {
        if (spent.byteLength === BATCH_CAPACITY && spare.length < 2 * MAX_INFLIGHT) spare.push(spent);
        w.pending.get(id)?.(
          error
            ? { hits: [], error: new ChunkDecodeError(error.codec, error.message) }
            : { hits: out, ...(where && { where, taken }), ...(records && { records, taken }) },
        );
        w.pending.delete(id);
      },
    );
    const fail = () => {
      w.dead = true;
      for (const resolve of w.pending.values()) resolve(null);
      w.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', fail);
    pool.push(w);
    return w;
  };
  return {
    buffer(size) {
      const back = size === BATCH_CAPACITY ? spare.pop() : undefined;
      return back ? Buffer.from(back) : Buffer.allocUnsafeSlow(size);
    },
    async match(batch) {
      // A free worker, else a new one while there are fewer than REGEX_WORKERS, else the one with
      // the fewest batches queued. A worker stopped for a slow pattern ends the search.
      let w = pool.find((x) => x.pending.size === 0) ?? null;
      if (w === null && pool.length < REGEX_WORKERS) w = start();
      w ??= pool.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      if (w.dead || pool.some((x) => x.dead)) return null;
      const { worker, pending } = w;
      const id = nextId++;
      // Batches queue in a worker: a batch's time counts from when the one before it there is done.
      const before = w.queueTail;
      const result = new Promise<BatchResult | null>((resolve) => {
        let timer: NodeJS.Timeout | null = null;
        pending.set(id, (out) => {
          if (timer) clearTimeout(timer);
          resolve(out);
        });
        void before.then(() => {
          if (!pending.has(id)) return;
          timer = setTimeout(() => {
            pending.delete(id);
            resolve(null);
            void worker.terminate();
          }, REGEX_BATCH_MS);
        });
        // The bytes and offsets are handed over (transferred), not copied.
        const { bytes, starts, ends, count, segs, chunks } = batch;
        worker.postMessage({ id, bytes, starts, ends, count, segs, chunks }, [
          bytes.buffer as ArrayBuffer,
          ...(chunks
            ? [chunks.buffer as ArrayBuffer]
            : segs
              ? [segs.buffer as ArrayBuffer]
              : [starts.buffer as ArrayBuffer, ends.buffer as ArrayBuffer]),
        ]);
      });
      w.queueTail = result;
      return result;
    },
    close() {
      for (const w of pool) void w.worker.terminate();
    },
  };
}

/** Fleet log search. */
export function createLogSearchService(deps: {
  hosts: HostRepository;
  logs: LogSearchRepository;
  /** Searches running at once (default MAX_RUNNING_SEARCHES). */
  maxRunning?: number;
}) {
  const { hosts, logs } = deps;
  const maxRunning = deps.maxRunning ?? MAX_RUNNING_SEARCHES;
  let running = 0;
  return {
    /** Searches started and not yet ended. */
    get running(): number {
      return running;
    },
    /**
     * Checks the query and the caller's access (throws before anything is streamed), then returns
     * the search as an async generator of events; `signal` aborts it (the client went away). At
     * most `maxRunning` run at once: the attempt is counted before anything is looked up or read,
     * and released once, when the search ends however it ends (finished, failed, refused, or
     * stopped before or after its first event).
     */
    async start(actor: ProcessActor, query: LogSearchQuery, signal?: AbortSignal): Promise<LogSearchEvents> {
      requireAccess(actor, 'logs.read');
      if (running >= maxRunning) {
        throw Object.assign(new KeelError('search.busy'), { retryAfterSeconds: 2 });
      }
      running += 1;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        running -= 1;
      };
      let events: AsyncGenerator<LogSearchEvent>;
      try {
        events = await open(actor, query, signal);
      } catch (err) {
        release();
        throw err;
      }
      // A generator returned before its first next() never enters its body (a finally there would
      // not run), so the release is wired to the iterator's own ends.
      const settle = (step: Promise<IteratorResult<LogSearchEvent>>) =>
        step.then(
          (r) => {
            if (r.done) release();
            return r;
          },
          (err: unknown) => {
            release();
            throw err;
          },
        );
      const counted: LogSearchEvents = {
        next: () => settle(events.next()),
        return: (value?: unknown) => events.return(value as never).finally(release),
        throw: (err?: unknown) => settle(events.throw(err)),
        [Symbol.asyncIterator]() {
          return counted;
        },
      };
      return counted;
    },
  };

  async function open(
    actor: ProcessActor,
    query: LogSearchQuery,
    signal?: AbortSignal,
  ): Promise<AsyncGenerator<LogSearchEvent>> {
    {
      if (!query.q || query.q.length > MAX_PATTERN) {
        throw new KeelError('request.invalid', `The search text is 1 to ${MAX_PATTERN} characters.`);
      }
      if (query.regex) {
        try {
          new RegExp(query.q, 'gu');
        } catch (err) {
          throw new KeelError(
            'search.invalid_pattern',
            `Not a valid regular expression: ${(err as Error).message}`,
          );
        }
      }
      let targets: { id: string; name: string }[];
      if (query.hostId) {
        requireHostAccess(actor, 'logs.read', [query.hostId]);
        const host = await hosts.get(query.hostId);
        if (!host) throw new KeelError('host.not_found');
        targets = [{ id: host.id, name: host.name }];
      } else {
        targets = (await hosts.list())
          .filter((h) => hasHostPermission(actor, 'logs.read', h.id))
          .map((h) => ({ id: h.id, name: h.name }));
      }
      const limit = Math.min(query.limit ?? 500, MAX_MATCHES);
      const deadline = Date.now() + Math.min(query.maxSeconds ?? 30, MAX_SECONDS) * 1000;
      const caseSensitive = query.caseSensitive ?? false;
      const stream = query.stream ?? 'both';
      const processName = query.process === undefined ? null : Buffer.from(query.process, 'utf8');
      // Chunks that provably hold no line with these literals are skipped unread (log-prefilter.ts).
      const required = requiredLiterals(query);
      // And a chunk read (its filter said maybe) whose bytes lack them is not scanned.
      const mayHold = bodyCheck(required);
      // In a chunk that holds it, only the lines holding an occurrence of the first clause's
      // literals can match: where those are few, only they are copied and matched.
      const hitsOf = literalHits(required);
      // A regex with no literal to narrow it reads every chunk: they come as stored, and the
      // workers decode, walk and match them (the event loop copies compressed bytes, nothing more).
      const readStored = query.regex === true && mayHold === null && hitsOf === null;
      // Such a search's workers skip the lines that lack a shorter literal it requires (`99.999`).
      const literals = readStored ? lineLiterals(query) : null;
      return (async function* run(): AsyncGenerator<LogSearchEvent> {
        const started = Date.now();
        const matcher = query.regex
          ? regexMatcher(query.q, caseSensitive, {
              since: query.since ?? null,
              until: query.until ?? null,
              name: processName && new Uint8Array(processName),
              stream,
              literals: literals && literals.map((l) => new Uint8Array(l)),
            })
          : substringMatcher(query.q, caseSensitive);
        let matches = 0;
        let scannedLines = 0;
        let readRecords = 0;
        let reason: Extract<LogSearchEvent, { type: 'end' }>['reason'] = 'done';
        try {
          scan: for (const host of targets) {
            let hostMatches = 0;
            let hostLines = 0;
            const range = { since: query.since, until: query.until, process: query.process, required };
            const pages: AsyncGenerator<LogChunk[] | StoredLogChunk[]> = readStored
              ? logs.storedPages(host.id, range)
              : logs.pages(host.id, range);
            // Batches in flight: while the worker matches one, the next is gathered (two cores).
            const inflight: {
              found: Promise<BatchResult | null>;
              chunks: LogChunk[];
              /** Stored chunks: the batch's chunks, in the order sent. */
              stored: StoredLogChunk[] | null;
              /** Whole chunks: the index in `chunks` of each chunk the batch holds. */
              segChunk: number[] | null;
              lineChunk: number[];
              lineAt: number[];
              lineSeq: number[];
            }[] = [];
            const yieldQueue: LogSearchEvent[] = [];
            /** Turns the oldest batch's result into match events; false when the search ends. */
            const settle = async (): Promise<boolean> => {
              const b = inflight.shift()!;
              const found = await b.found;
              if (found === null) {
                reason = 'pattern-too-slow';
                return false;
              }
              if (found.error) throw found.error;
              if (found.taken !== undefined) {
                hostLines += found.taken;
                scannedLines += found.taken;
              }
              const hits = found.hits
                .map((h, n) => ({
                  i: h[0],
                  ranges: h[1],
                  where: found.where?.[n],
                  record: found.records?.[n],
                }))
                .sort((x, y) => x.i - y.i);
              for (const { i, ranges, where, record } of hits) {
                if (signal?.aborted) {
                  reason = 'cancelled';
                  return false;
                }
                let match: Pick<LogSearchMatch, 'process' | 'seq' | 'ts' | 'stream'> & { text: string };
                if (record && b.stored) {
                  // Decoded and walked in the worker: it sent the line's fields.
                  const [c, k, ts, stderr, process, text] = record;
                  match = {
                    process,
                    seq: b.stored[c]!.firstSeq + k,
                    ts,
                    stream: stderr ? 'stderr' : 'stdout',
                    text,
                  };
                } else {
                  const chunk = b.chunks[where && b.segChunk ? b.segChunk[where[0]]! : b.lineChunk[i]!]!;
                  const body = chunk.body;
                  const at = where ? where[1] : b.lineAt[i]!;
                  const l = decodeLogLine(body.subarray(at + 12, at + 12 + body.readUInt32BE(at)))!;
                  match = {
                    process: l.process,
                    seq: where ? chunk.firstSeq + where[2] : b.lineSeq[i]!,
                    ts: body.readDoubleBE(at + 4),
                    stream: l.stream,
                    text: Buffer.from(l.line).toString('utf8'),
                  };
                }
                matches++;
                hostMatches++;
                yieldQueue.push({
                  type: 'match',
                  hostId: host.id,
                  hostName: host.name,
                  ...match,
                  text: match.text.slice(0, MAX_TEXT),
                  cut: match.text.length > MAX_TEXT,
                  ranges: clipped(ranges),
                });
                if (matches >= limit) {
                  reason = 'limit';
                  return false;
                }
              }
              return true;
            };
            let go = true;
            try {
              for await (const chunks of pages) {
                for (const c of chunks) readRecords += c.count;
                if (signal?.aborted) {
                  reason = 'cancelled';
                  break scan;
                }
                if (Date.now() > deadline) {
                  reason = 'time';
                  break scan;
                }
                // The lines of this page that are in range, then matched in batches of bounded size.
                // Records are read in place; only a line that matches becomes an object.
                let bytes = matcher.buffer(BATCH_CAPACITY);
                let used = 0;
                let starts: number[] = [];
                let ends: number[] = [];
                // Per line of the batch: its chunk (index in `chunks`), record offset and seq.
                let lineChunk: number[] = [];
                let lineAt: number[] = [];
                let lineSeq: number[] = [];
                // Whole chunks (a regex: the worker walks their records): base, length, count each.
                let segs: number[] = [];
                let segChunk: number[] = [];
                // Stored chunks (readStored): base, length, count and codec each; the chunks; and
                // what they decode to (the batch's size bound counts decoded bytes).
                let zs: number[] = [];
                let batchStored: StoredLogChunk[] = [];
                let decodedUsed = 0;
                /** Hands the batch to the matcher (its bytes are transferred: a new buffer after). */
                const send = () => {
                  const count = starts.length;
                  if (count === 0 && segs.length === 0 && zs.length === 0) return;
                  const whole = segs.length > 0;
                  inflight.push({
                    found: matcher.match({
                      bytes: bytes.subarray(0, used),
                      starts: Uint32Array.from(starts),
                      ends: Uint32Array.from(ends),
                      count,
                      ...(whole && { segs: Uint32Array.from(segs) }),
                      ...(zs.length > 0 && { chunks: Uint32Array.from(zs) }),
                    }),
                    chunks: readStored ? [] : (chunks as LogChunk[]),
                    stored: zs.length > 0 ? batchStored : null,
                    segChunk: whole ? segChunk : null,
                    lineChunk,
                    lineAt,
                    lineSeq,
                  });
                  bytes = matcher.buffer(BATCH_CAPACITY);
                  used = 0;
                  starts = [];
                  ends = [];
                  lineChunk = [];
                  lineAt = [];
                  lineSeq = [];
                  segs = [];
                  segChunk = [];
                  zs = [];
                  batchStored = [];
                  decodedUsed = 0;
                };
                /**
                 * Sends the batch gathered so far; when too many are in flight, waits for the oldest
                 * (`go` false: the search ends); yields the matches found meanwhile.
                 */
                async function* flush(): AsyncGenerator<LogSearchEvent> {
                  send();
                  if (inflight.length >= MAX_INFLIGHT) go = await settle();
                  for (const e of yieldQueue.splice(0)) {
                    if (signal?.aborted) break;
                    yield e;
                  }
                }
                for (const chunk of readStored ? (chunks as StoredLogChunk[]) : []) {
                  const { data, codec } = chunk;
                  // What it decodes to: LZ4's size prefix; deflate (chunks from before LZ4) guessed.
                  const size =
                    codec === chunkCodec.lz4 && data.length >= 4
                      ? data.readUInt32LE(0)
                      : codec === chunkCodec.deflateRaw
                        ? data.length * 4
                        : data.length;
                  if (used > 0 && decodedUsed + size >= REGEX_BATCH_BYTES) {
                    yield* flush();
                    if (!go) break;
                  }
                  if (used + data.length > bytes.length) {
                    const bigger = Buffer.allocUnsafeSlow(used + data.length + BATCH_CAPACITY);
                    bytes.copy(bigger, 0, 0, used);
                    bytes = bigger;
                  }
                  data.copy(bytes, used);
                  zs.push(used, data.length, chunk.count, codec);
                  batchStored.push(chunk);
                  used += data.length;
                  decodedUsed += size;
                }
                for (let ci = 0; !readStored && ci < chunks.length && go; ci++) {
                  const { body, count, firstSeq } = (chunks as LogChunk[])[ci]!;
                  if (mayHold !== null && !mayHold(body)) continue;
                  const hits = hitsOf === null ? null : hitsOf(body);
                  // Few lines hold the literal: those lines are copied one by one, the rest is not
                  // matched at all (a line without a whole occurrence of it cannot match).
                  const few = hits !== null && hits.at.length <= count / 8;
                  // A regex over a whole chunk: copied as it is, the worker walks its records (the
                  // event loop does one copy per chunk, nothing per line). A batch holds either
                  // whole chunks or selected lines, up to REGEX_BATCH_BYTES.
                  const walkInWorker = query.regex === true && !few;
                  if (
                    used > 0 &&
                    (used + body.length >= REGEX_BATCH_BYTES || walkInWorker !== segs.length > 0)
                  ) {
                    yield* flush();
                    if (!go) break;
                  }
                  if (used + body.length + 1 > bytes.length) {
                    bytes = Buffer.allocUnsafeSlow(used + body.length + 1 + BATCH_CAPACITY);
                  }
                  if (walkInWorker) {
                    segs.push(used, body.length, count);
                    segChunk.push(ci);
                    body.copy(bytes, used, 0, body.length);
                    used += body.length;
                    bytes[used++] = 10;
                    continue;
                  }
                  let h = 0;
                  // Otherwise the chunk is copied whole (one copy, not one per line); then every byte
                  // that is not a selected line's text (record headers, names, other lines) becomes '\n'.
                  const base = used;
                  if (!few) {
                    body.copy(bytes, base, 0, body.length);
                    used += body.length;
                    bytes[used++] = 10;
                  }
                  let off = 0;
                  for (let k = 0; k < count; k++) {
                    // A record: u32 length, f64 time, payload (encodeLogLine: flags, name length,
                    // name, line). A malformed chunk is read up to where it breaks.
                    if (off + 12 > body.length) break;
                    const at = off;
                    const p = off + 12;
                    const end = p + body.readUInt32BE(off);
                    if (end > body.length) break;
                    off = end;
                    let take = true;
                    if (query.since !== undefined || query.until !== undefined) {
                      const ts = body.readDoubleBE(at + 4);
                      if (query.since !== undefined && ts < query.since) take = false;
                      if (query.until !== undefined && ts >= query.until) take = false;
                    }
                    const nameLength = end - p < 2 ? 0 : body[p + 1]!;
                    const lineStart = p + 2 + nameLength;
                    if (end - p < 2 || lineStart > end) take = false;
                    else if (processName && !sameBytes(body, p + 2, nameLength, processName)) take = false;
                    else if (stream !== 'both' && ((body[p]! & 1) === 1) !== (stream === 'stderr'))
                      take = false;
                    if (few) {
                      if (!take) continue;
                      hostLines++;
                      scannedLines++;
                      // The first occurrence at or after the line's start; one wholly inside it?
                      while (h < hits.at.length && hits.at[h]! < lineStart) h++;
                      let inside = false;
                      for (let x = h; !inside && x < hits.at.length && hits.at[x]! < end; x++) {
                        inside = hits.at[x]! + hits.length[x]! <= end;
                      }
                      if (!inside) continue;
                      starts.push(used);
                      body.copy(bytes, used, lineStart, end);
                      used += end - lineStart;
                      ends.push(used);
                      bytes[used++] = 10;
                    } else {
                      if (!take) {
                        bytes.fill(10, base + at, base + end);
                        continue;
                      }
                      for (let i = base + at; i < base + lineStart; i++) bytes[i] = 10;
                      hostLines++;
                      scannedLines++;
                      starts.push(base + lineStart);
                      ends.push(base + end);
                    }
                    lineChunk.push(ci);
                    lineAt.push(at);
                    lineSeq.push(firstSeq + k);
                  }
                  // What follows the last whole record (a malformed tail) is no line either.
                  if (!few && off < body.length) bytes.fill(10, base + off, base + body.length);
                }
                if (go) send();
                // At most a batch per worker waits while the next page is read.
                while (go && inflight.length > REGEX_WORKERS) go = await settle();
                for (const e of yieldQueue.splice(0)) {
                  if (signal?.aborted) {
                    reason = 'cancelled';
                    go = false;
                    break;
                  }
                  yield e;
                }
                if (!go) break scan;
              }
              // The host's last batches, before its `host` event.
              while (go && inflight.length > 0) go = await settle();
              for (const e of yieldQueue.splice(0)) {
                if (signal?.aborted) {
                  reason = 'cancelled';
                  go = false;
                  break;
                }
                yield e;
              }
              if (!go) break scan;
            } finally {
              await pages.return(undefined);
            }
            yield {
              type: 'host',
              hostId: host.id,
              hostName: host.name,
              matches: hostMatches,
              scannedLines: hostLines,
            };
          }
          if (signal?.aborted) reason = 'cancelled';
        } finally {
          matcher.close();
        }
        yield {
          type: 'end',
          matches,
          scannedLines,
          readRecords,
          hosts: targets.length,
          reason,
          elapsedMs: Date.now() - started,
        };
      })();
    }
  }
}

export type LogSearchService = ReturnType<typeof createLogSearchService>;
