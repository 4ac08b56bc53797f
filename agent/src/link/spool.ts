// The on-disk spool of one agent stream: records are appended and numbered (1, 2, 3… for the life
// of the stream, across restarts), read back in batches for the controller, and deleted once the
// controller acknowledges them. It is bounded (the oldest segments are dropped, and counted, when
// it is full), survives kill -9 and power loss, and keeps only a small index in memory.
//
// Layout of the stream's directory:
//   <firstSeq, 20 digits>.seg  segments, each a run of frames
//                              `u32 BE bodyLength | u32 BE crc32(body) | body`,
//                              body = `f64 BE firstSeq | u32 BE count | records` (shared record format),
//                              or, with the count word's top bit set (LINE_BLOCK), a line block:
//                              `f64 BE firstSeq | u32 BE (LINE_BLOCK | count) | ts, flags, head, bytes`
//                              — one output file's lines as read, one record per line once read
//                              (see line-block.ts). Record frames are what older agents wrote and
//                              what every other stream writes; both kinds mix in a segment.
//   state.json                 { ackedSeq, droppedRecords }, replaced atomically when the count
//                              of dropped records changes (and at close)
//   ack-cursor                 the ack cursor, written in place on every ack into one of two
//                              512-byte slots by turns: `u32 BE magic | f64 BE generation |
//                              f64 BE ackedSeq | u32 BE crc32(the 20 bytes before)`
//
// Acks count only what this spool handed out: an ack for a number read() never returned (the
// controller holds records under numbers a wiped or restored spool gives again) is cut down to
// what was read, so new records are never acked away unsent. The controller tells a resend from
// new records under old numbers by comparing them (see controller/src/repositories/streams.ts).
//
// Durability rule (the one PostgreSQL's walsender follows): read() hands out only records that
// have been fdatasync'd. Otherwise a power loss could take back records the controller already
// holds, and their sequence numbers would be given to new records that the controller then
// discards as duplicates — a silent loss. Syncs are group commits: the first append after a quiet
// period syncs at once, a busy stream syncs every `syncIntervalMs`.
//
// What each sync protects: a segment's fdatasync, the rule above; the directory's fsync, that a new
// segment's name (which carries the numbering across a restart) is not lost; state.json's write,
// fsync, rename and directory fsync, that the count of dropped records is on disk before the
// records are gone. The ack cursor is not synced: the controller de-duplicates replays by
// sequence, so a lost ack costs a resend, never a record. Written in place (one pwrite on an open
// file, no fsync, no rename; it was state.json's full atomic replace on every ack, most of an
// agent's CPU at 1 s metrics), it survives a crash of the agent (the page cache holds it); a power
// loss may leave it seconds old, or tear its newest slot (the CRC fails and the other slot is
// used), and the records acked since are sent again. Segments an ack wholly covers are deleted
// at once either way (recovery deletes those a lost unlink left).
import {
  closeSync,
  constants as fsConstants,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  fsync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { open as openAsync, unlink as unlinkAsync } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import {
  decodeRecords,
  indexRecords,
  RECORD_HEADER_BYTES,
  type RecordBatch,
  type StreamRecord,
} from '@keel/shared';
import {
  expandLineBlock,
  LINE_BLOCK,
  LINE_BLOCK_HEADER_BYTES,
  lineBlockCount,
  lineBlockRecordBytes,
  lineBlockRecords,
  RecordsOut,
  type LineBlock,
} from './line-block.ts';

const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);

const EMPTY = Buffer.alloc(0);
/** The transient read buffer kept while nothing is left to send (Spool.read). */
const SMALL_SCRATCH = 16 * 1024;
/** Bytes in front of each frame's body: length and CRC. */
const FRAME_HEADER_BYTES = 8;
/** Bytes at the start of each frame's body: first seq and record count. */
const BODY_HEADER_BYTES = 12;
const FRAME_OVERHEAD = FRAME_HEADER_BYTES + BODY_HEADER_BYTES;
/** A frame's record count in its count word (the top bit marks a line block). */
const COUNT_MASK = 0x7fffffff;
/** A large append is cut into frames of about this many record bytes, so reads can stop between them. */
const FRAME_TARGET_BYTES = 64 * 1024;
/** Largest segment and largest append, so that frame offsets fit the index's u32s. */
const MAX_SEGMENT_BYTES = 1024 * 1024 * 1024;
const SEGMENT_NAME = /^(\d{20})\.seg$/;
const STATE_FILE = 'state.json';
/** The ack cursor (see the header): two slots of ACK_SLOT_BYTES, each ACK_RECORD_BYTES long. */
const ACK_FILE = 'ack-cursor';
const ACK_SLOT_BYTES = 512;
const ACK_RECORD_BYTES = 24;
const ACK_MAGIC = 0x4b41434b; // 'KACK'
/** Directories of the spools open in this process. */
const openDirs = new Set<string>();

/**
 * An append that could not be written (disk full, I/O error). Its records are lost but keep their
 * sequence numbers, so the controller records the hole as a gap; `droppedRecords` counts them.
 */
export class SpoolWriteError extends Error {
  constructor(
    readonly firstSeq: number,
    readonly lastSeq: number,
    readonly cause: unknown,
  ) {
    super(
      `spool write failed, records ${firstSeq}..${lastSeq} lost: ${(cause as Error)?.message ?? String(cause)}`,
    );
    this.name = 'SpoolWriteError';
  }
}

export interface SpoolOptions {
  /** The stream's directory (created, with parents, when missing). */
  dir: string;
  /** Most bytes the segments may take on disk; beyond it the oldest segments are dropped. Default 64 MiB. */
  maxBytes?: number;
  /** Size at which a new segment is started. Default 4 MiB (at most half of maxBytes). */
  segmentBytes?: number;
  /** Group-commit period for fdatasync. Default 200; 0 syncs inside every append. */
  syncIntervalMs?: number;
}

/**
 * Where each frame of a segment starts: its first seq (kept relative to the segment's first seq)
 * and byte offset, 8 bytes a frame in two grow-only typed arrays.
 */
class FrameIndex {
  readonly base: number;
  seqs = new Uint32Array(16);
  offsets = new Uint32Array(16);
  /**
   * Bytes a line-block frame's records may take beyond its body (lineBlockRecordBytes less the
   * body): 0 for a record frame. read() sizes its batches by it.
   */
  extras = new Uint32Array(16);
  length = 0;

  constructor(base: number) {
    this.base = base;
  }

  push(seq: number, offset: number, extra = 0): void {
    if (this.length === this.seqs.length) {
      const seqs = new Uint32Array(this.length * 2);
      seqs.set(this.seqs);
      this.seqs = seqs;
      const offsets = new Uint32Array(this.length * 2);
      offsets.set(this.offsets);
      this.offsets = offsets;
      const extras = new Uint32Array(this.length * 2);
      extras.set(this.extras);
      this.extras = extras;
    }
    this.seqs[this.length] = seq - this.base;
    this.offsets[this.length] = offset;
    this.extras[this.length] = extra;
    this.length++;
  }

  /** First seq of frame i. */
  seq(i: number): number {
    return this.base + this.seqs[i]!;
  }

  /** Index of the last frame whose first seq is <= seq (the frame that holds seq). */
  find(seq: number): number {
    const rel = seq - this.base;
    let lo = 0;
    let hi = this.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.seqs[mid]! <= rel) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

interface Segment {
  /** Seq the file is named by: the first record it holds, or will hold while empty. */
  firstSeq: number;
  /** Last seq it holds (firstSeq - 1 while empty). */
  lastSeq: number;
  path: string;
  fd: number;
  size: number;
  frames: FrameIndex;
}

interface SpoolState {
  ackedSeq: number;
  droppedRecords: number;
}

function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.seg`;
}

function isSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/**
 * A bounded, crash-safe, append-only spool for one stream.
 *
 * @example
 * const spool = await Spool.open({ dir: '/var/lib/keel/streams/events' });
 * spool.append([{ ts: Date.now(), payload: Buffer.from('{"kind":"started"}') }]);
 * spool.onAppend(() => send(spool.read(sentSeq, 256 * 1024)));
 * // later, when the controller acknowledges:
 * spool.ack(ackedSeq);
 */
export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly syncIntervalMs: number;

  #segments: Segment[] = [];
  #dirFd: number;
  #bytes = 0;
  #lastSeq = 0;
  #syncedSeq = 0;
  #ackedSeq = 0;
  /** Highest seq read() has handed out since open (at least ackedSeq): the most an ack can cover. */
  #readSeq = 0;
  #droppedRecords = 0;
  /**
   * Set when numbering continues past the newest segment (a failed write, or a state file whose
   * ack is beyond the segments, written by agents before acks were cut to what was read): the
   * next append must start a new segment.
   */
  #rollNext = false;
  #closed = false;
  /** The buffer `read(…, transient)` reads into (see there). */
  #scratch: Buffer = EMPTY;
  /** The records `read(…, transient)` makes of line blocks (kept and let go as #scratch is). */
  #expanded = new RecordsOut();

  // Group commit.
  #dirty = new Set<Segment>();
  #dirDirty = false;
  #stateGen = 0; // bumped on every change of droppedRecords (acks go to the ack cursor)
  #persistedGen = 0; // generation last renamed into place
  #timer: NodeJS.Timeout | null = null;
  #inflight: Promise<void> | null = null;
  #lastSyncAt = -Infinity;
  #syncError: unknown = null;
  /** fds of deleted segments, closed once no async sync can be using them. */
  #closeLater: number[] = [];
  #listeners = new Set<() => void>();
  /** The ack cursor's file (opened on the first ack), last generation written, and its record. */
  #ackFd = -1;
  #ackGen = 0;
  #ackRecord = Buffer.alloc(ACK_RECORD_BYTES);

  private constructor(opts: Required<SpoolOptions>, dirFd: number) {
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = opts.segmentBytes;
    this.syncIntervalMs = opts.syncIntervalMs;
    this.#dirFd = dirFd;
  }

  /** Opens (creating if needed) the spool in `opts.dir`, recovering whatever a crash left behind. */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    if (!(maxBytes >= 4096)) throw new RangeError('spool maxBytes must be at least 4096');
    const segmentBytes = Math.min(
      opts.segmentBytes ?? 4 * 1024 * 1024,
      Math.floor(maxBytes / 2),
      MAX_SEGMENT_BYTES,
    );
    const syncIntervalMs = opts.syncIntervalMs ?? 200;
    if (!(syncIntervalMs >= 0)) throw new RangeError('spool syncIntervalMs must be >= 0');
    const dir = resolve(opts.dir);
    // Two writers would number over each other; within one process that is a bug to catch early.
    if (openDirs.has(dir)) throw new Error(`spool ${dir} is already open`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const dirFd = openSync(dir, 'r');
    const spool = new Spool({ dir, maxBytes, segmentBytes, syncIntervalMs }, dirFd);
    openDirs.add(dir);
    try {
      spool.#recover();
    } catch (err) {
      spool.#closeAllSync();
      throw err;
    }
    return spool;
  }

  /** Highest seq appended so far (0 when none ever was). */
  get lastSeq(): number {
    return this.#lastSeq;
  }
  /** Highest seq known to be on disk for good; read() returns nothing beyond it. */
  get syncedSeq(): number {
    return this.#syncedSeq;
  }
  /** Highest seq the controller has acknowledged. */
  get ackedSeq(): number {
    return this.#ackedSeq;
  }
  /** Records lost because the spool was full (or its files were damaged), over the stream's life. */
  get droppedRecords(): number {
    return this.#droppedRecords;
  }
  /** Bytes the segments take on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Appends records with one write and returns the seqs they got. When the spool would exceed
   * maxBytes, the oldest whole segments are dropped first (acknowledged or not) and counted.
   * An append larger than the whole spool keeps its newest records that fit: the ones before
   * them get their seqs and are counted as dropped (the controller sees them as a gap), like
   * records dropped from a full spool, never lost without a count.
   */
  append(records: readonly StreamRecord[]): { firstSeq: number; lastSeq: number } {
    if (this.#closed) throw new Error('spool is closed');
    const firstSeq = this.#lastSeq + 1;
    if (records.length === 0) return { firstSeq, lastSeq: this.#lastSeq };

    const fits = Math.min(this.maxBytes - FRAME_OVERHEAD, MAX_SEGMENT_BYTES);
    let { buf, frameStarts } = encodeFrames(records, firstSeq);
    if (buf.length > fits) {
      // Drop from the front until the rest fits (frame headers shrink with the records: re-encode).
      let from = 0;
      while (buf.length > fits && from < records.length) {
        let excess = buf.length - fits;
        while (excess > 0 && from < records.length)
          excess -= RECORD_HEADER_BYTES + records[from++]!.payload.byteLength;
        if (from < records.length)
          ({ buf, frameStarts } = encodeFrames(records.slice(from), firstSeq + from));
      }
      this.#lose(firstSeq, from);
      if (from === records.length) return { firstSeq, lastSeq: this.#lastSeq };
      return { firstSeq, lastSeq: this.append(records.slice(from)).lastSeq };
    }

    const frameSeqs = frameStarts.map((start) => buf.readDoubleBE(start + FRAME_HEADER_BYTES));
    return this.#write(
      { parts: [buf], length: buf.length, frameStarts, frameSeqs, frameExtras: frameSeqs.map(() => 0) },
      firstSeq,
      records.length,
    );
  }

  /**
   * `append` for records already encoded back to back (`encodeRecords`' format): the log tailer
   * builds them so, without an object per line. `count` must be the number of records in `body`.
   */
  appendEncoded(body: Buffer, count: number): { firstSeq: number; lastSeq: number } {
    if (this.#closed) throw new Error('spool is closed');
    const firstSeq = this.#lastSeq + 1;
    if (count === 0) return { firstSeq, lastSeq: this.#lastSeq };
    const fits = Math.min(this.maxBytes - FRAME_OVERHEAD, MAX_SEGMENT_BYTES);
    // Larger than the spool (rare): `append` knows which records to keep and count as dropped.
    if (body.length > fits) return this.append(decodeRecords(body, count));
    const frames = framesOfBody(body, count, firstSeq);
    if (frames.length > fits) return this.append(decodeRecords(body, count));
    return this.#write(frames, firstSeq, count);
  }

  /**
   * Appends lines as the tailer read them, one line-block frame per block (line-block.ts): each
   * block's bytes are written as they are (a view, by the same `pwritev` as its header), and
   * become one record per line when read. Keep blocks near 64 KiB (`scanLines`' target): a read
   * that starts inside a block makes the records of the whole block. The blocks' records get
   * consecutive seqs in order, as `append` gives them; an append larger than the spool is
   * turned into records and goes through `append` (which keeps the newest and counts the rest).
   */
  appendLineBlocks(blocks: readonly LineBlock[]): { firstSeq: number; lastSeq: number } {
    if (this.#closed) throw new Error('spool is closed');
    const firstSeq = this.#lastSeq + 1;
    let count = 0;
    let length = 0;
    let headers = 0;
    for (const b of blocks) {
      if (b.count <= 0) continue;
      if (b.count > COUNT_MASK || b.head.length < 1 || b.head.length > 255)
        throw new RangeError('line block out of range');
      count += b.count;
      headers += FRAME_OVERHEAD + LINE_BLOCK_HEADER_BYTES + b.head.length;
      length += FRAME_OVERHEAD + LINE_BLOCK_HEADER_BYTES + b.head.length + b.end - b.start;
    }
    if (count === 0) return { firstSeq, lastSeq: this.#lastSeq };
    const fits = Math.min(this.maxBytes - FRAME_OVERHEAD, MAX_SEGMENT_BYTES);
    if (length > fits) {
      const out = new RecordsOut();
      for (const b of blocks) if (b.count > 0) lineBlockRecords(out, b);
      return this.appendEncoded(out.buf.subarray(0, out.off), out.count);
    }
    const head = Buffer.allocUnsafe(headers);
    const parts: Buffer[] = [];
    const frameStarts: number[] = [];
    const frameSeqs: number[] = [];
    const frameExtras: number[] = [];
    let h = 0;
    let at = 0;
    let seq = firstSeq;
    for (const b of blocks) {
      if (b.count <= 0) continue;
      const hl = b.head.length;
      const own = FRAME_OVERHEAD + LINE_BLOCK_HEADER_BYTES + hl;
      const raw = b.src.subarray(b.start, b.end);
      head.writeUInt32BE(own - FRAME_HEADER_BYTES + raw.length, h);
      head.writeDoubleBE(seq, h + FRAME_HEADER_BYTES);
      head.writeUInt32BE((LINE_BLOCK | b.count) >>> 0, h + FRAME_HEADER_BYTES + 8);
      head.writeDoubleBE(b.ts, h + FRAME_OVERHEAD);
      head[h + FRAME_OVERHEAD + 8] = b.partial ? 1 : 0;
      head[h + FRAME_OVERHEAD + 9] = hl;
      b.head.copy(head, h + FRAME_OVERHEAD + LINE_BLOCK_HEADER_BYTES);
      const bodyHead = head.subarray(h + FRAME_HEADER_BYTES, h + own);
      head.writeUInt32BE(crc32(raw, crc32(bodyHead)), h + 4);
      parts.push(head.subarray(h, h + own), raw);
      frameStarts.push(at);
      frameSeqs.push(seq);
      frameExtras.push(blockExtra(raw.length, b.count, hl));
      seq += b.count;
      at += own + raw.length;
      h += own;
    }
    return this.#write({ parts, length: at, frameStarts, frameSeqs, frameExtras }, firstSeq, count);
  }

  #write(frames: Frames, firstSeq: number, count: number): { firstSeq: number; lastSeq: number } {
    const { parts, length, frameStarts, frameSeqs, frameExtras } = frames;
    let seg = this.#segments.at(-1);
    if (!seg || this.#rollNext || (seg.size > 0 && seg.size + length > this.segmentBytes)) {
      seg = this.#createSegment(firstSeq);
    }
    if (this.#bytes + length > this.maxBytes) this.#dropOldest(length);

    try {
      if (parts.length === 1) writeFull(seg.fd, parts[0]!, seg.size);
      else writevFull(seg.fd, parts, seg.size);
    } catch (err) {
      // A part of the frames may have landed (e.g. ENOSPC): cut them off so the file stays whole.
      try {
        ftruncateSync(seg.fd, seg.size);
      } catch {
        // Recovery will find and cut the torn tail.
      }
      this.#lose(firstSeq, count);
      throw new SpoolWriteError(firstSeq, firstSeq + count - 1, err);
    }
    for (let i = 0; i < frameStarts.length; i++)
      seg.frames.push(frameSeqs[i]!, seg.size + frameStarts[i]!, frameExtras[i]!);
    seg.size += length;
    seg.lastSeq = firstSeq + count - 1;
    this.#bytes += length;
    this.#lastSeq = seg.lastSeq;

    if (this.syncIntervalMs === 0) {
      fdatasyncSync(seg.fd);
      if (this.#dirDirty) {
        fsyncSync(this.#dirFd);
        this.#dirDirty = false;
      }
      this.#syncedSeq = this.#lastSeq;
      this.#emit();
    } else {
      this.#dirty.add(seg);
      this.#schedule();
    }
    return { firstSeq, lastSeq: this.#lastSeq };
  }

  /**
   * The durable records after `afterSeq` (or from the oldest still held, when those were dropped)
   * as one batch of at most about `maxBytes` of records (always at least one record); null when
   * there is nothing to send. The batch comes from one segment.
   *
   * With `transient`, the body is read into a buffer the spool keeps for the next such read, so it
   * is valid only until then: for a caller that consumes it at once (the stream sender seals it
   * into a frame before it reads again). A fresh buffer per batch cost a page fault per 4 KiB
   * read into it and, as external memory, garbage collections. A large one (a backlog's batches)
   * is let go when a read finds nothing to send; a small one (SMALL_SCRATCH: a tick's metrics,
   * a few log lines) is kept. Letting go of it too made an agent at rest allocate a 256 KiB buffer
   * for every ~1 KB tick, and those that outlived two scavenges stayed until a full collection.
   */
  read(afterSeq: number, maxBytes: number, transient = false): RecordBatch | null {
    if (this.#closed) throw new Error('spool is closed');
    const limit = this.#syncedSeq;
    let want = Math.max(afterSeq + 1, 1);
    if (want > limit) {
      if (transient && this.#scratch.length > SMALL_SCRATCH) this.#scratch = EMPTY;
      if (transient && this.#expanded.buf.length > SMALL_SCRATCH) this.#expanded.buf = EMPTY;
      return null;
    }
    const seg = this.#segmentFor(want);
    if (!seg) return null;
    const frames = seg.frames;
    if (want < frames.seq(0)) want = frames.seq(0);
    if (want > limit) return null;

    const first = frames.find(want);
    const frameEnd = (i: number): number => (i + 1 < frames.length ? frames.offsets[i + 1]! : seg.size);
    const frameLast = (i: number): number => (i + 1 < frames.length ? frames.seq(i + 1) - 1 : seg.lastSeq);

    // Choose whole frames while they fit; the first frame alone may be cut (below) to fit. A line
    // block counts at the most its records can take (its bytes plus a record header per line).
    const recordBytesOf = (i: number): number =>
      frameEnd(i) - frames.offsets[i]! - FRAME_OVERHEAD + frames.extras[i]!;
    let last = first;
    let blocks = frames.extras[first]! > 0;
    let recordBytes = recordBytesOf(first);
    while (last + 1 < frames.length && frameLast(last + 1) <= limit) {
      const next = recordBytesOf(last + 1);
      if (recordBytes + next > maxBytes) break;
      recordBytes += next;
      last++;
      blocks ||= frames.extras[last]! > 0;
    }

    const start = frames.offsets[first]!;
    const size = frameEnd(last) - start;
    let buf: Buffer;
    if (transient) {
      if (this.#scratch.length < size)
        this.#scratch = Buffer.allocUnsafeSlow(
          size <= SMALL_SCRATCH ? SMALL_SCRATCH : Math.max(size, 256 * 1024),
        );
      buf = this.#scratch.subarray(0, size);
    } else buf = Buffer.allocUnsafe(size);
    readFull(seg.fd, buf, start);
    const skip = want - frames.seq(first);
    if (blocks) return this.#readExpanded(buf, want, skip, maxBytes, transient);

    // The first frame: skip the records before `want`; alone, it may also be cut at maxBytes.
    let from = FRAME_OVERHEAD;
    for (let i = 0; i < skip; i++) from += RECORD_HEADER_BYTES + buf.readUInt32BE(from);
    let end = FRAME_HEADER_BYTES + buf.readUInt32BE(0);
    let count = buf.readUInt32BE(FRAME_HEADER_BYTES + 8) - skip;
    if (first === last) {
      if (end - from > maxBytes) ({ end, count } = cutRecords(buf, from, end, maxBytes));
      this.#handOut(want + count - 1);
      return { firstSeq: want, count, body: buf.subarray(from, end) };
    }

    // Several frames: move their records down over the frame headers, in place.
    buf.copyWithin(0, from, end);
    let out = end - from;
    for (let pos = end; pos < buf.length;) {
      const frameEndAt = pos + FRAME_HEADER_BYTES + buf.readUInt32BE(pos);
      count += buf.readUInt32BE(pos + FRAME_HEADER_BYTES + 8);
      buf.copyWithin(out, pos + FRAME_OVERHEAD, frameEndAt);
      out += frameEndAt - pos - FRAME_OVERHEAD;
      pos = frameEndAt;
    }
    this.#handOut(want + count - 1);
    return { firstSeq: want, count, body: buf.subarray(0, out) };
  }

  /**
   * read() of frames among which are line blocks: every frame's records into one buffer (a block's
   * made from its lines), less the first `skip`, cut at maxBytes (at least one record).
   */
  #readExpanded(buf: Buffer, want: number, skip: number, maxBytes: number, transient: boolean): RecordBatch {
    const out = transient ? this.#expanded : new RecordsOut();
    out.off = 0;
    out.count = 0;
    for (let pos = 0; pos < buf.length;) {
      const frameEndAt = pos + FRAME_HEADER_BYTES + buf.readUInt32BE(pos);
      const word = buf.readUInt32BE(pos + FRAME_HEADER_BYTES + 8);
      const body = buf.subarray(pos + FRAME_OVERHEAD, frameEndAt);
      if (word & LINE_BLOCK) {
        // Checked when written or at open (lineBlockCount): only a bug can make this fail.
        if (!expandLineBlock(out, body, word & COUNT_MASK)) throw new Error('spool line block is malformed');
      } else {
        out.reserve(body.length);
        body.copy(out.buf, out.off);
        out.off += body.length;
        out.count += word;
      }
      pos = frameEndAt;
    }
    const records = out.buf;
    let from = 0;
    for (let i = 0; i < skip; i++) from += RECORD_HEADER_BYTES + records.readUInt32BE(from);
    let end = out.off;
    let count = out.count - skip;
    if (end - from > maxBytes) ({ end, count } = cutRecords(records, from, end, maxBytes));
    this.#handOut(want + count - 1);
    return { firstSeq: want, count, body: records.subarray(from, end) };
  }

  #handOut(lastSeq: number): void {
    if (lastSeq > this.#readSeq) this.#readSeq = lastSeq;
  }

  /**
   * Records that the controller holds everything up to `seq`: whole segments at or below it are
   * deleted. An ack is cut down to the highest seq read() has handed out: the controller can hold
   * only what it was sent, and a higher number means it holds other records under it (this
   * spool's directory was wiped or restored from an older copy), which must not take new records
   * with them.
   */
  ack(seq: number): void {
    if (this.#closed || !isSeq(seq)) return;
    seq = Math.min(seq, this.#readSeq);
    if (seq <= this.#ackedSeq) return;
    this.#ackedSeq = seq;
    this.#writeAckCursor();
    // The newest segment stays: its name and frames carry lastSeq across a restart.
    while (this.#segments.length > 1 && this.#segments[0]!.lastSeq <= seq) {
      this.#deleteSegment(this.#segments[0]!);
    }
  }

  /** Writes ackedSeq into the ack cursor's older slot, in place and unsynced (see the header). */
  #writeAckCursor(): void {
    const gen = ++this.#ackGen;
    const r = this.#ackRecord;
    r.writeUInt32BE(ACK_MAGIC, 0);
    r.writeDoubleBE(gen, 4);
    r.writeDoubleBE(this.#ackedSeq, 12);
    r.writeUInt32BE(crc32(r.subarray(0, ACK_RECORD_BYTES - 4)), ACK_RECORD_BYTES - 4);
    try {
      if (this.#ackFd < 0)
        this.#ackFd = openSync(join(this.dir, ACK_FILE), fsConstants.O_WRONLY | fsConstants.O_CREAT, 0o600);
      writeSync(this.#ackFd, r, 0, ACK_RECORD_BYTES, (gen % 2) * ACK_SLOT_BYTES);
    } catch {
      // Losing an ack costs a resend after a restart, which the controller drops by sequence.
    }
  }

  /** The newest valid slot of the ack cursor: its ackedSeq (0 when there is none). */
  #readAckCursor(): number {
    let file: Buffer;
    try {
      file = readFileSync(join(this.dir, ACK_FILE));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let acked = 0;
    for (let at = 0; at + ACK_RECORD_BYTES <= file.length && at < 2 * ACK_SLOT_BYTES; at += ACK_SLOT_BYTES) {
      const r = file.subarray(at, at + ACK_RECORD_BYTES);
      const gen = r.readDoubleBE(4);
      const seq = r.readDoubleBE(12);
      if (
        r.readUInt32BE(0) !== ACK_MAGIC ||
        r.readUInt32BE(ACK_RECORD_BYTES - 4) !== crc32(r.subarray(0, ACK_RECORD_BYTES - 4)) ||
        !isSeq(gen) ||
        !isSeq(seq) ||
        gen <= this.#ackGen
      )
        continue; // torn by a power loss, damaged, or the older of the two
      this.#ackGen = gen;
      acked = seq;
    }
    return acked;
  }

  /**
   * Calls `listener` whenever newly appended records become readable (durable). Returns a function
   * that removes it.
   */
  onAppend(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Syncs everything appended so far and the dropped count now; resolves when they are on disk. */
  async flush(): Promise<void> {
    while (!this.#closed || this.#inflight) {
      if (!this.#inflight) {
        if (!this.#needsSync()) return;
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = null;
        void this.#runSync();
      }
      await this.#inflight;
      if (this.#syncError) throw this.#syncError;
    }
  }

  /** Flushes and closes the spool's files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#inflight) await this.#inflight;
    if (this.#persistedGen !== this.#stateGen) this.#persistStateSync();
    this.#listeners.clear();
    this.#closeAllSync();
  }

  // --- recovery -------------------------------------------------------------------------------

  #recover(): void {
    const state = this.#readState();
    // The cursor is ahead of state.json unless it was lost (then what it had acked is sent again).
    this.#ackedSeq = Math.max(state.ackedSeq, this.#readAckCursor());
    this.#readSeq = this.#ackedSeq;
    this.#droppedRecords = state.droppedRecords;
    const startDropped = state.droppedRecords;

    const names = readdirSync(this.dir);
    for (const name of names) {
      // Leftovers of a state write that crashed before its rename.
      if (name.startsWith(`${STATE_FILE}.`) && name.endsWith('.tmp')) unlinkSync(join(this.dir, name));
    }
    const firstSeqs = names
      .map((n) => SEGMENT_NAME.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number)
      .sort((a, b) => a - b);

    for (let i = 0; i < firstSeqs.length; i++) {
      const firstSeq = firstSeqs[i]!;
      const isNewest = i === firstSeqs.length - 1;
      const seg = this.#scanSegment(firstSeq);
      const nextFirst = firstSeqs[i + 1];
      if (nextFirst !== undefined && seg.segment.lastSeq + 1 < nextFirst && seg.truncated) {
        // Damage inside an older segment: the records between its last whole frame and the next
        // segment are gone. Count the ones the controller did not have.
        const lostFrom = Math.max(seg.segment.lastSeq + 1, this.#ackedSeq + 1);
        if (nextFirst - 1 >= lostFrom) this.#droppedRecords += nextFirst - lostFrom;
      }
      if (seg.segment.size === 0 && !isNewest) {
        closeSync(seg.segment.fd);
        unlinkSync(seg.segment.path);
        continue;
      }
      this.#segments.push(seg.segment);
      this.#bytes += seg.segment.size;
    }

    const newest = this.#segments.at(-1);
    this.#lastSeq = Math.max(newest?.lastSeq ?? 0, this.#ackedSeq);
    if (newest && newest.lastSeq < this.#ackedSeq) this.#rollNext = true;
    this.#syncedSeq = this.#lastSeq; // whatever survived a restart is what the disk holds
    // Segments wholly acknowledged before a crash (the deletion ran ahead of the state write).
    while (this.#segments.length > 1 && this.#segments[0]!.lastSeq <= this.#ackedSeq) {
      this.#deleteSegment(this.#segments[0]!);
    }
    if (this.#droppedRecords !== startDropped) {
      this.#stateGen++;
      this.#persistStateSync();
    }
    this.#persistedGen = this.#stateGen;
  }

  /** Reads one segment frame by frame, cutting it after the last whole, valid frame. */
  #scanSegment(firstSeq: number): { segment: Segment; truncated: boolean } {
    const path = join(this.dir, segmentName(firstSeq));
    const fd = openSync(path, 'r+');
    const fileSize = fstatSync(fd).size;
    const frames = new FrameIndex(firstSeq);
    let expected = firstSeq;
    let offset = 0;
    // Read in chunks of about a segment, so a long file never sits in memory whole.
    const chunkBytes = Math.max(this.segmentBytes, FRAME_TARGET_BYTES * 2);
    let chunk = Buffer.alloc(0);
    let chunkStart = 0;
    const bytesAt = (at: number, length: number): Buffer | null => {
      if (at + length > fileSize) return null;
      if (at < chunkStart || at + length > chunkStart + chunk.length) {
        chunk = Buffer.allocUnsafe(Math.min(Math.max(chunkBytes, length), fileSize - at));
        readFull(fd, chunk, at);
        chunkStart = at;
      }
      return chunk.subarray(at - chunkStart, at - chunkStart + length);
    };
    for (;;) {
      const header = bytesAt(offset, FRAME_HEADER_BYTES);
      if (!header) break;
      const bodyLength = header.readUInt32BE(0);
      const crc = header.readUInt32BE(4);
      if (bodyLength < BODY_HEADER_BYTES + RECORD_HEADER_BYTES) break;
      const body = bytesAt(offset + FRAME_HEADER_BYTES, bodyLength);
      if (!body || crc32(body) !== crc) break;
      const frameFirst = body.readDoubleBE(0);
      const word = body.readUInt32BE(8);
      const count = word & COUNT_MASK;
      if (frameFirst !== expected || count === 0) break;
      let extra = 0;
      if (word & LINE_BLOCK) {
        const hl = lineBlockCount(body.subarray(BODY_HEADER_BYTES), count);
        if (hl < 0) break;
        extra = blockExtra(bodyLength - BODY_HEADER_BYTES - LINE_BLOCK_HEADER_BYTES - hl, count, hl);
      } else if (!indexRecords(body.subarray(BODY_HEADER_BYTES), count)) break;
      frames.push(frameFirst, offset, extra);
      expected += count;
      offset += FRAME_HEADER_BYTES + bodyLength;
    }
    const truncated = offset < fileSize;
    if (truncated) {
      ftruncateSync(fd, offset);
      fdatasyncSync(fd);
    }
    return {
      segment: { firstSeq, lastSeq: expected - 1, path, fd, size: offset, frames },
      truncated,
    };
  }

  #readState(): SpoolState {
    let text: string;
    try {
      text = readFileSync(join(this.dir, STATE_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ackedSeq: 0, droppedRecords: 0 };
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    const s = parsed as Partial<SpoolState> | null;
    if (!s || !isSeq(s.ackedSeq) || !isSeq(s.droppedRecords)) {
      // Only reachable by outside damage (the file is replaced atomically). Starting from zero
      // resends what is still held, which the controller de-duplicates; it does not lose data.
      return { ackedSeq: 0, droppedRecords: 0 };
    }
    return { ackedSeq: s.ackedSeq, droppedRecords: s.droppedRecords };
  }

  /**
   * Records that could not be written keep their numbers, so the loss is explicit: the next
   * records continue after them in a new segment, the controller sees the hole as a gap, and
   * the count goes to `droppedRecords`. The new segment is created empty right away (creating a
   * file needs no data blocks, so it usually works on a full disk): its name keeps the numbering
   * past a restart even if nothing else is written before it.
   */
  #lose(firstSeq: number, count: number): void {
    this.#lastSeq = firstSeq + count - 1;
    this.#droppedRecords += count;
    this.#stateGen++;
    try {
      this.#persistStateSync();
    } catch {
      // The count is kept in memory and written with the next state change.
    }
    try {
      this.#createSegment(this.#lastSeq + 1);
    } catch {
      this.#rollNext = true; // at least in this process, the next append starts a new segment
    }
    // The new segment's directory entry (and the state, if it failed above) go out with the next sync.
    if (this.syncIntervalMs > 0) this.#schedule();
  }

  // --- segments -------------------------------------------------------------------------------

  #segmentFor(seq: number): Segment | undefined {
    // First segment whose lastSeq >= seq (segments are ordered and do not overlap).
    const segs = this.#segments;
    let lo = 0;
    let hi = segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (segs[mid]!.lastSeq < seq) lo = mid + 1;
      else hi = mid;
    }
    const seg = segs[lo];
    return seg && seg.frames.length > 0 ? seg : undefined;
  }

  #createSegment(firstSeq: number): Segment {
    const newest = this.#segments.at(-1);
    if (newest && newest.size === 0) {
      // An empty newest segment (a crash during a roll, or a failed write) is reused when its name fits.
      if (newest.firstSeq === firstSeq) {
        this.#rollNext = false;
        return newest;
      }
      this.#deleteSegment(newest);
    }
    const path = join(this.dir, segmentName(firstSeq));
    const fd = openSync(path, 'wx+', 0o600);
    const seg: Segment = {
      firstSeq,
      lastSeq: firstSeq - 1,
      path,
      fd,
      size: 0,
      frames: new FrameIndex(firstSeq),
    };
    this.#segments.push(seg);
    this.#dirDirty = true;
    this.#rollNext = false;
    return seg;
  }

  /** Drops the oldest segments (never the one being written) until `incoming` more bytes fit. */
  #dropOldest(incoming: number): void {
    const victims: Segment[] = [];
    let bytes = this.#bytes;
    for (const seg of this.#segments.slice(0, -1)) {
      if (bytes + incoming <= this.maxBytes) break;
      victims.push(seg);
      bytes -= seg.size;
    }
    if (victims.length === 0) return;
    let lost = 0;
    for (const seg of victims) {
      const from = Math.max(seg.firstSeq, this.#ackedSeq + 1);
      if (seg.lastSeq >= from) lost += seg.lastSeq - from + 1;
    }
    if (lost > 0) {
      // The count must be on disk before the records are gone, or a crash would make the loss silent.
      this.#droppedRecords += lost;
      this.#stateGen++;
      this.#persistStateSync();
    }
    for (const seg of victims) this.#deleteSegment(seg);
  }

  #deleteSegment(seg: Segment): void {
    const i = this.#segments.indexOf(seg);
    if (i >= 0) this.#segments.splice(i, 1);
    this.#bytes -= seg.size;
    this.#dirty.delete(seg);
    unlinkSync(seg.path);
    if (this.#inflight) this.#closeLater.push(seg.fd);
    else closeSync(seg.fd);
  }

  // --- state and group commit -----------------------------------------------------------------

  #stateText(): string {
    return `${JSON.stringify({ ackedSeq: this.#ackedSeq, droppedRecords: this.#droppedRecords })}\n`;
  }

  /** Writes state.json atomically: temp file, fsync, rename, fsync of the directory. */
  #persistStateSync(): void {
    const gen = this.#stateGen;
    const tmp = join(this.dir, `${STATE_FILE}.${gen}.sync.tmp`);
    const fd = openSync(tmp, 'w', 0o600);
    try {
      try {
        writeSync(fd, this.#stateText());
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, join(this.dir, STATE_FILE));
    } catch (err) {
      // A full disk must not leave a temp file per attempt behind (each would cost an inode).
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
      throw err;
    }
    fsyncSync(this.#dirFd);
    this.#persistedGen = gen;
  }

  /** The same, off the event loop; loses the race (and discards itself) to any newer write. */
  async #persistStateAsync(): Promise<void> {
    const gen = this.#stateGen;
    const tmp = join(this.dir, `${STATE_FILE}.${gen}.async.tmp`);
    const file = await openAsync(tmp, 'w', 0o600);
    try {
      await file.writeFile(this.#stateText());
      await file.sync();
    } catch (err) {
      await file.close().catch(() => undefined);
      await unlinkAsync(tmp).catch(() => undefined);
      throw err;
    }
    await file.close();
    if (gen <= this.#persistedGen || this.#closed) {
      await unlinkAsync(tmp).catch(() => undefined);
      return;
    }
    // Check and rename in one synchronous step, so a newer synchronous write cannot be overtaken.
    renameSync(tmp, join(this.dir, STATE_FILE));
    this.#persistedGen = gen;
    await fsyncAsync(this.#dirFd);
  }

  #needsSync(): boolean {
    return (
      this.#dirty.size > 0 ||
      this.#dirDirty ||
      this.#syncedSeq < this.#lastSeq ||
      this.#persistedGen !== this.#stateGen
    );
  }

  #schedule(): void {
    if (this.#timer || this.#inflight || this.#closed) return;
    const wait = Math.max(0, this.#lastSyncAt + this.syncIntervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#runSync();
    }, wait);
    this.#timer.unref();
  }

  #runSync(): Promise<void> {
    const run = this.#sync().then(
      () => {
        this.#syncError = null;
      },
      (err: unknown) => {
        this.#syncError = err;
      },
    );
    this.#inflight = run.finally(() => {
      this.#inflight = null;
      for (const fd of this.#closeLater.splice(0)) closeSync(fd);
      if (this.#needsSync() && !this.#closed) this.#schedule();
    });
    return this.#inflight;
  }

  async #sync(): Promise<void> {
    this.#lastSyncAt = performance.now();
    const target = this.#lastSeq;
    const segments = [...this.#dirty];
    this.#dirty.clear();
    const dir = this.#dirDirty;
    this.#dirDirty = false;
    try {
      await Promise.all(segments.map((s) => fdatasyncAsync(s.fd)));
      if (dir) await fsyncAsync(this.#dirFd);
    } catch (err) {
      // Leave syncedSeq where it was and try again on the next tick; readers wait meanwhile.
      for (const s of segments) if (this.#segments.includes(s)) this.#dirty.add(s);
      this.#dirDirty ||= dir;
      throw err;
    }
    if (target > this.#syncedSeq) {
      this.#syncedSeq = target;
      this.#emit();
    }
    if (this.#persistedGen !== this.#stateGen) await this.#persistStateAsync();
  }

  #emit(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch {
        // A listener's failure is its own business; the spool and other listeners go on.
      }
    }
  }

  #closeAllSync(): void {
    for (const seg of this.#segments) closeSync(seg.fd);
    this.#segments = [];
    for (const fd of this.#closeLater.splice(0)) closeSync(fd);
    if (this.#ackFd >= 0) closeSync(this.#ackFd);
    this.#ackFd = -1;
    closeSync(this.#dirFd);
    this.#closed = true;
    openDirs.delete(this.dir);
  }
}

/** Encodes records as frames numbered from firstSeq, cutting the run every ~64 KiB of records. */
function encodeFrames(
  records: readonly StreamRecord[],
  firstSeq: number,
): { buf: Buffer; frameStarts: number[] } {
  let total = 0;
  let frames = 0;
  let inFrame = 0;
  for (const r of records) {
    const size = RECORD_HEADER_BYTES + r.payload.byteLength;
    if (inFrame === 0 || inFrame + size > FRAME_TARGET_BYTES) {
      frames++;
      total += FRAME_OVERHEAD;
      inFrame = 0;
    }
    inFrame += size;
    total += size;
  }
  const buf = Buffer.allocUnsafe(total);
  const frameStarts: number[] = [];
  let off = 0;
  let frameStart = -1;
  let frameCount = 0;
  let seq = firstSeq;
  const closeFrame = (): void => {
    if (frameStart < 0) return;
    buf.writeUInt32BE(off - frameStart - FRAME_HEADER_BYTES, frameStart);
    buf.writeUInt32BE(frameCount, frameStart + FRAME_HEADER_BYTES + 8);
    buf.writeUInt32BE(crc32(buf.subarray(frameStart + FRAME_HEADER_BYTES, off)), frameStart + 4);
  };
  for (const r of records) {
    const size = RECORD_HEADER_BYTES + r.payload.byteLength;
    if (frameStart < 0 || off - frameStart - FRAME_OVERHEAD + size > FRAME_TARGET_BYTES) {
      closeFrame();
      frameStart = off;
      frameStarts.push(off);
      buf.writeDoubleBE(seq, off + FRAME_HEADER_BYTES);
      frameCount = 0;
      off += FRAME_OVERHEAD;
    }
    buf.writeUInt32BE(r.payload.byteLength, off);
    buf.writeDoubleBE(r.ts, off + 4);
    buf.set(r.payload, off + RECORD_HEADER_BYTES);
    off += size;
    frameCount++;
    seq++;
  }
  closeFrame();
  if (frameStarts.length !== frames) throw new Error('spool frame layout mismatch');
  return { buf, frameStarts };
}

/**
 * Frames to write: `parts` back to back (`length` bytes), frame i starting at `frameStarts[i]` with
 * first seq `frameSeqs[i]`.
 */
interface Frames {
  parts: Buffer[];
  length: number;
  frameStarts: number[];
  frameSeqs: number[];
  /** Per frame: what its records take beyond its body (FrameIndex.extras; 0 for record frames). */
  frameExtras: number[];
}

/**
 * The records of `buf` from `from` that fit in `maxBytes` (at least one, so a record larger than a
 * batch still goes out alone): where they end, and how many they are.
 */
function cutRecords(
  buf: Buffer,
  from: number,
  end: number,
  maxBytes: number,
): { end: number; count: number } {
  let cut = from + RECORD_HEADER_BYTES + buf.readUInt32BE(from);
  let count = 1;
  while (cut < end) {
    const next = cut + RECORD_HEADER_BYTES + buf.readUInt32BE(cut);
    if (next - from > maxBytes) break;
    cut = next;
    count++;
  }
  return { end: cut, count };
}

/**
 * `encodeFrames` for a body of `count` records already encoded back to back, without copying it:
 * the frames are the body's runs of records (~FRAME_TARGET_BYTES each) with a 20-byte header in
 * front of each, written together by one `pwritev` (the records are not copied into a new buffer;
 * the CRC of each frame is its header's seq and count, continued over its records).
 */
function framesOfBody(body: Buffer, count: number, firstSeq: number): Frames {
  // Where each frame's records begin and end in `body` (frames of about FRAME_TARGET_BYTES).
  const cuts: number[] = [0];
  const counts: number[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  let off = 0;
  let inFrame = 0;
  let n = 0;
  for (let i = 0; i < count; i++) {
    if (off + RECORD_HEADER_BYTES > body.length) throw new RangeError('truncated record header');
    const size = RECORD_HEADER_BYTES + view.getUint32(off);
    if (inFrame > 0 && inFrame + size > FRAME_TARGET_BYTES) {
      cuts.push(off);
      counts.push(n);
      inFrame = 0;
      n = 0;
    }
    inFrame += size;
    off += size;
    n++;
  }
  if (off !== body.length) throw new RangeError('record count mismatch');
  cuts.push(off);
  counts.push(n);
  const frames = counts.length;
  const headers = Buffer.allocUnsafe(frames * FRAME_OVERHEAD);
  const parts: Buffer[] = [];
  const frameStarts: number[] = [];
  const frameSeqs: number[] = [];
  const frameExtras: number[] = [];
  let at = 0;
  let seq = firstSeq;
  for (let f = 0; f < frames; f++) {
    const from = cuts[f]!;
    const to = cuts[f + 1]!;
    const h = f * FRAME_OVERHEAD;
    headers.writeUInt32BE(BODY_HEADER_BYTES + to - from, h);
    headers.writeDoubleBE(seq, h + FRAME_HEADER_BYTES);
    headers.writeUInt32BE(counts[f]!, h + FRAME_HEADER_BYTES + 8);
    const records = body.subarray(from, to);
    const bodyHead = headers.subarray(h + FRAME_HEADER_BYTES, h + FRAME_OVERHEAD);
    headers.writeUInt32BE(crc32(records, crc32(bodyHead)), h + 4);
    parts.push(headers.subarray(h, h + FRAME_OVERHEAD), records);
    frameStarts.push(at);
    frameSeqs.push(seq);
    frameExtras.push(0);
    seq += counts[f]!;
    at += FRAME_OVERHEAD + to - from;
  }
  return { parts, length: at, frameStarts, frameSeqs, frameExtras };
}

/** What a line block's records may take beyond its frame body (> 0: marks a block in the index). */
function blockExtra(rawBytes: number, count: number, headLength: number): number {
  return (
    lineBlockRecordBytes(rawBytes, count, headLength) - (LINE_BLOCK_HEADER_BYTES + headLength + rawBytes)
  );
}

/** Most buffers handed to one pwritev (Linux's IOV_MAX is 1024). */
const WRITEV_MAX_PARTS = 512;
/**
 * Most bytes handed to one write. The page cache gives a write folios as large as the write (up to
 * 2 MiB), and on a VM that returns free memory to its host (free page reporting, as this project's
 * Firecracker VMs do) the large free blocks such folios come from are the ones handed back, so each
 * of their pages costs a host fault when first written: 1 GiB into a new file took 1.8-2.4 CPU-s of
 * system time in 2-4 MiB writes and 0.23-0.39 in 64-512 KiB ones (dd, 1 Dec). The tailer's 4 MiB
 * appends were one such write each: half of its CPU (docs/benchmarks.md, logs, 1 Dec 03:53).
 */
export const WRITE_MAX_BYTES = 256 * 1024;

/**
 * Writes `parts` back to back at `position`, finishing any short write: one pwritev per
 * WRITE_MAX_BYTES (a part larger than that is written in pieces).
 */
function writevFull(fd: number, parts: readonly Buffer[], position: number): void {
  let group: Buffer[] = [];
  let want = 0;
  const flush = () => {
    const done = writevSync(fd, group, position);
    if (done < want) {
      // Short (rare: a signal, a nearly full disk): the rest as one buffer, which reports the error.
      writeFull(fd, Buffer.concat(group).subarray(done), position + done);
    }
    position += want;
    group = [];
    want = 0;
  };
  for (const part of parts) {
    for (let at = 0; at < part.length;) {
      const take = Math.min(part.length - at, WRITE_MAX_BYTES - want);
      group.push(at === 0 && take === part.length ? part : part.subarray(at, at + take));
      want += take;
      at += take;
      if (want === WRITE_MAX_BYTES || group.length === WRITEV_MAX_PARTS) flush();
    }
  }
  if (group.length > 0) flush();
}

/** Writes `buf` at `position`, at most WRITE_MAX_BYTES a call (see there), finishing short writes. */
function writeFull(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    done += writeSync(fd, buf, done, Math.min(buf.length - done, WRITE_MAX_BYTES), position + done);
  }
}

function readFull(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new Error('spool segment is shorter than its index');
    done += n;
  }
}
