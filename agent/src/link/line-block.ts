// The logs stream's line blocks: the lines of one output file as the tailer read them, kept in the
// spool as one frame (one header, the raw bytes, a line count, one capture time) and turned into
// one record per line (`encodeRecords`' format, the logs stream's payload: `encodeLogLine`) only
// when the spool is read for sending. The tailer then only finds where its lines end (`scanLines`:
// no copy, no header per line) and the spool holds ~1.01 bytes per captured byte instead of ~1.19.
//
// What a line is, once for both halves: lines end at LF or CRLF; a line over MAX_LOG_LINE_BYTES is
// cut into parts of that size flagged `continued`; bytes are kept as they are. `scanLines` and
// `encodeLines` cut the same bytes into the same records (agent/src/link/line-block.test.ts checks
// both against `LineSplitter` over random output split at random read boundaries).
//
// A block frame's body in the spool (see spool.ts for the frame around it):
//   f64 BE firstSeq | u32 BE (LINE_BLOCK | count) | f64 BE ts | u8 flags | u8 headLength | head | bytes
// `head` is the records' payload header for a whole line (flags byte, name length, name); a
// `continued` part's header is the same with bit 1 of its first byte set. flags bit 0
// (LINE_BLOCK_PARTIAL): the bytes after the last line are one more record, `continued` (a partial
// line handed out after a second, or at the process's end), kept as they are.
import { MAX_LOG_LINE_BYTES, RECORD_HEADER_BYTES } from '@keel/shared';

const EMPTY = Buffer.alloc(0);

/** Set in a frame's count word: the frame is a line block (record frames' counts stay below 2^31). */
export const LINE_BLOCK = 0x80000000;
/** Block flag: the bytes after the last line are one `continued` record (a partial line). */
export const LINE_BLOCK_PARTIAL = 1;
/** About how many bytes of lines a block holds: reads stop between blocks, or make one whole. */
export const LINE_BLOCK_TARGET_BYTES = 64 * 1024;
/** Bytes of a block's own header before its payload header: ts, flags, head length. */
export const LINE_BLOCK_HEADER_BYTES = 10;

/** A run of one file's lines to append as line-block frames (`Spool.appendLineBlocks`). */
export interface LineBlock {
  /** The records' payload header for a whole line (`encodeLogLine` of an empty line). */
  head: Buffer;
  /** Capture time of every line (epoch ms). */
  ts: number;
  /** The raw bytes: `src[start, end)` (a view is kept until the append returns). */
  src: Buffer;
  start: number;
  end: number;
  /** Records those bytes make (lines and `continued` parts, and the partial line if `partial`). */
  count: number;
  /** The bytes after the last line are one `continued` record (see LINE_BLOCK_PARTIAL). */
  partial: boolean;
}

/** A tick's records, encoded back to back (`encodeRecords`' format) into one growing buffer. */
export class RecordsOut {
  buf: Buffer = EMPTY;
  off = 0;
  count = 0;

  /** Makes room for `bytes` more. */
  reserve(bytes: number): void {
    if (this.off + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + bytes));
    this.buf.copy(grown, 0, 0, this.off);
    this.buf = grown;
  }

  /** One record: u32 length, f64 time, the file's header (flags, name), `src[start, end)`. */
  record(
    head: Buffer,
    time: Buffer,
    src: Buffer,
    start: number,
    end: number,
    listener: ((line: Buffer) => void) | null,
  ): void {
    const buf = this.buf;
    const at = this.off;
    const length = head.length + end - start;
    buf.writeUInt32BE(length, at);
    time.copy(buf, at + 4);
    head.copy(buf, at + RECORD_HEADER_BYTES);
    src.copy(buf, at + RECORD_HEADER_BYTES + head.length, start, end);
    this.off = at + RECORD_HEADER_BYTES + length;
    this.count++;
    if (listener) listener(buf.subarray(this.off - (end - start), this.off));
  }
}

/**
 * Encodes the lines of `src` as records into `out` (`heads`: the file's header for a whole line
 * and for a `continued` part) and returns where the unfinished line begins (`src.length`: none).
 * Lines end at LF or CRLF; a line over MAX_LOG_LINE_BYTES is cut into `continued` parts of that
 * size; bytes are kept as they are. One pass: each byte is looked at and copied once, in place in
 * the record (no indexOf call, view or buffer per line; `LineSplitter.scan` gives the same lines).
 * A line is copied eight bytes (two words) at a time, each word stored before it is tested for
 * an LF (the "has a zero byte" test on the word XOR 0x0a0a0a0a, whose lowest flagged byte is the
 * first LF): the line's last word needs no byte loop, and the bytes it stored past the line's
 * end are overwritten by the next record. A record's time and file header (the same for every record of
 * the call) are stored as words from a template before its line. In isolation on these lines
 * (4 MiB reads of the logs bench's writer, 30 Nov, load 13): 0.76-0.88 CPU-s per GiB, against
 * 1.07-1.44 for a four-byte loop with a byte loop at each line's end and the header stored byte
 * by byte (and 0.90-1.02 for this pass four bytes at a time).
 */
export function encodeLines(
  out: RecordsOut,
  src: Buffer,
  heads: readonly [Buffer, Buffer],
  now: number,
  listener: ((line: Buffer) => void) | null,
): number {
  const max = MAX_LOG_LINE_BYTES;
  const len = src.length;
  const [whole, part] = heads;
  const hl = whole.length;
  // The bytes every record of this call shares after its length (time, then the file's header),
  // as little-endian words; the last word's pad bytes fall where the line's bytes go next.
  const fixed = 8 + hl;
  const words = (fixed + 3) >>> 2;
  const tmpl = Buffer.alloc(words * 4);
  tmpl.writeDoubleBE(now, 0);
  whole.copy(tmpl, 8);
  const tv = new DataView(tmpl.buffer, tmpl.byteOffset, tmpl.length);
  const t0 = tv.getUint32(0, true);
  const t1 = tv.getUint32(4, true);
  const sv = new DataView(src.buffer, src.byteOffset, len);
  let buf = out.buf;
  let ov = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let off = out.off;
  let count = 0;
  let at = 0;
  while (at < len) {
    // Room for this record at its longest (word copies may run up to 7 bytes past its end).
    const need = off + RECORD_HEADER_BYTES + hl + Math.min(len - at, max + 1) + 8;
    if (need > buf.length) {
      out.off = off;
      out.reserve(need - off + (len - at));
      buf = out.buf;
      ov = new DataView(buf.buffer, buf.byteOffset, buf.length);
    }
    ov.setUint32(off + 4, t0, true);
    ov.setUint32(off + 8, t1, true);
    for (let k = 2; k < words; k++) ov.setUint32(off + 4 + 4 * k, tv.getUint32(4 * k, true), true);
    const lineStart = off + RECORD_HEADER_BYTES + hl;
    const stop = at + max + 1 < len ? at + max + 1 : len;
    let i = at;
    let o = lineStart;
    let found = false;
    // Words are copied whole, then checked for an LF byte (the "has a zero byte" test on the word
    // XOR 0x0a0a0a0a; its lowest flagged byte is the first LF): bytes copied past the line's end
    // are overwritten by the next record.
    while (i + 8 <= stop) {
      const w = sv.getUint32(i, true);
      const v = sv.getUint32(i + 4, true);
      ov.setUint32(o, w, true);
      ov.setUint32(o + 4, v, true);
      const x = w ^ 0x0a0a0a0a;
      const y = v ^ 0x0a0a0a0a;
      const m = (x - 0x01010101) & ~x & 0x80808080;
      const n = (y - 0x01010101) & ~y & 0x80808080;
      if ((m | n) !== 0) {
        const k = m !== 0 ? (31 - Math.clz32(m & -m)) >>> 3 : 4 + ((31 - Math.clz32(n & -n)) >>> 3);
        i += k;
        o += k;
        found = true;
        break;
      }
      i += 8;
      o += 8;
    }
    while (!found && i + 4 <= stop) {
      const w = sv.getUint32(i, true);
      ov.setUint32(o, w, true);
      const x = w ^ 0x0a0a0a0a;
      const m = (x - 0x01010101) & ~x & 0x80808080;
      if (m !== 0) {
        const k = (31 - Math.clz32(m & -m)) >>> 3;
        i += k;
        o += k;
        found = true;
        break;
      }
      i += 4;
      o += 4;
    }
    if (!found) {
      while (i < stop) {
        const b = src[i]!;
        if (b === 10) {
          found = true;
          break;
        }
        buf[o++] = b;
        i++;
      }
    }
    if (found) {
      // A newline within the bound: a whole line (without its CR).
      if (o > lineStart && buf[o - 1] === 13) o--;
      at = i + 1;
    } else if (i - at >= max) {
      o = lineStart + max;
      buf[off + RECORD_HEADER_BYTES] = part[0]!;
      at += max;
    } else break; // unfinished: held for the next read
    ov.setUint32(off, hl + o - lineStart);
    if (listener) listener(buf.subarray(lineStart, o));
    off = o;
    count++;
  }
  out.off = off;
  out.count += count;
  return at;
}

/**
 * Finds the records `encodeLines` would make of `src` without copying anything: for each run of
 * about `target` bytes of whole records (ended at a record's end) pushes its end offset and record
 * count to `cuts` (`[end, count, end, count, …]`), and returns where the unfinished line begins
 * (`src.length`: none). Eight bytes a step, the same LF test as `encodeLines`.
 */
export function scanLines(src: Buffer, target: number, cuts: number[]): number {
  const max = MAX_LOG_LINE_BYTES;
  const len = src.length;
  const sv = new DataView(src.buffer, src.byteOffset, len);
  let at = 0;
  let from = 0;
  let n = 0;
  while (at < len) {
    const stop = at + max + 1 < len ? at + max + 1 : len;
    let i = at;
    let found = false;
    while (i + 8 <= stop) {
      const x = sv.getUint32(i, true) ^ 0x0a0a0a0a;
      const y = sv.getUint32(i + 4, true) ^ 0x0a0a0a0a;
      const m = (x - 0x01010101) & ~x & 0x80808080;
      const k = (y - 0x01010101) & ~y & 0x80808080;
      if ((m | k) !== 0) {
        i += m !== 0 ? (31 - Math.clz32(m & -m)) >>> 3 : 4 + ((31 - Math.clz32(k & -k)) >>> 3);
        found = true;
        break;
      }
      i += 8;
    }
    if (!found) {
      while (i < stop) {
        if (src[i] === 10) {
          found = true;
          break;
        }
        i++;
      }
    }
    if (found) at = i + 1;
    else if (i - at >= max) at += max;
    else break; // unfinished: held for the next read
    n++;
    if (at - from >= target) {
      cuts.push(at, n);
      from = at;
      n = 0;
    }
  }
  if (n > 0) cuts.push(at, n);
  return at;
}

/** Most bytes the records of a block take: every record at most its header, the head and its bytes. */
export function lineBlockRecordBytes(rawBytes: number, count: number, headLength: number): number {
  return rawBytes + count * (RECORD_HEADER_BYTES + headLength);
}

/** `ts` as the 8 bytes of a record's time (`RecordsOut.record`). */
function timeBytes(ts: number): Buffer {
  const time = Buffer.allocUnsafe(8);
  time.writeDoubleBE(ts, 0);
  return time;
}

/** The records of a block's bytes into `out`; how many, or -1 when they do not make whole records. */
function linesToRecords(out: RecordsOut, raw: Buffer, head: Buffer, ts: number, partial: boolean): number {
  const part = Buffer.from(head);
  part[0]! |= 2;
  const before = out.count;
  out.reserve(lineBlockRecordBytes(raw.length, 1, head.length) + 8);
  const rest = encodeLines(out, raw, [head, part], ts, null);
  if (partial) {
    if (rest === raw.length) return -1;
    out.reserve(RECORD_HEADER_BYTES + head.length + raw.length - rest);
    out.record(part, timeBytes(ts), raw, rest, raw.length, null);
  } else if (rest !== raw.length) return -1;
  return out.count - before;
}

/** The records of a block about to be appended (a spool that cannot take it as a block). */
export function lineBlockRecords(out: RecordsOut, block: LineBlock): void {
  const n = linesToRecords(
    out,
    block.src.subarray(block.start, block.end),
    block.head,
    block.ts,
    block.partial,
  );
  if (n !== block.count) throw new RangeError(`line block of ${block.count} records makes ${n}`);
}

/** Splits a block frame's body after its seq and count word (it starts at its ts): null when malformed. */
function parseBlock(body: Buffer): { ts: number; partial: boolean; head: Buffer; raw: Buffer } | null {
  if (body.length < LINE_BLOCK_HEADER_BYTES) return null;
  const flags = body[8]!;
  const hl = body[9]!;
  if (hl < 1 || body.length < LINE_BLOCK_HEADER_BYTES + hl || flags > LINE_BLOCK_PARTIAL) return null;
  return {
    ts: body.readDoubleBE(0),
    partial: flags === LINE_BLOCK_PARTIAL,
    head: body.subarray(LINE_BLOCK_HEADER_BYTES, LINE_BLOCK_HEADER_BYTES + hl),
    raw: body.subarray(LINE_BLOCK_HEADER_BYTES + hl),
  };
}

/**
 * The records of one block frame's body after its seq and count word (`body` starts at its ts),
 * appended to `out`; false when the block is malformed (its bytes do not make `count` records).
 */
export function expandLineBlock(out: RecordsOut, body: Buffer, count: number): boolean {
  const b = parseBlock(body);
  return b !== null && linesToRecords(out, b.raw, b.head, b.ts, b.partial) === count;
}

/**
 * Checks a block frame's body (after its seq and count word) without making its records: its
 * head length when its bytes make exactly `count` records, else -1 (the spool's check at open).
 */
export function lineBlockCount(body: Buffer, count: number): number {
  const b = parseBlock(body);
  if (!b) return -1;
  const cuts: number[] = [];
  const rest = scanLines(b.raw, Infinity, cuts);
  let n = cuts.length > 0 ? cuts[1]! : 0;
  if (b.partial) {
    if (rest === b.raw.length) return -1;
    n++;
  } else if (rest !== b.raw.length) return -1;
  return n === count ? b.head.length : -1;
}
