// The log pipeline's first half: a supervised process writes its stdout and stderr straight into
// files (it keeps writing while the agent is down), and the agent tails those files into the
// `logs` stream's spool, one record per line. The file is the spool before the spool.
//
// Exactly once across an agent crash: before each append to the spool the tailer writes an intent
// `{ seq, prevSeq, offsets, prev }` — the spool's last seq once this append is in and before it,
// the file offsets after it and before it — in place, into one of two checksummed slots by turns.
// On start, the slot whose seq or prevSeq equals the spool's last seq says where to resume: at
// `offsets` (the append is in) or `prev` (it is not). A line is thus never appended twice and
// never skipped; a slot torn by a power loss fails its CRC and the other one is used.
//
// Bounded files during a long run: the process holds its output files open (O_APPEND) for as long
// as it runs, so they cannot be renamed away or truncated without losing what it writes meanwhile.
// Instead, the part of a file already handed to the spool is given back to the file system by
// punching a hole in it (fallocate PUNCH_HOLE): offsets do not move, so the exactly-once
// bookkeeping is untouched, and the disk holds at most `keepBytes` + `punchMaxEveryBytes` of each
// file (4 + 64 MiB; 4 + 16 for a writer slower than 16 MiB/s: see `#punch`). The file's apparent
// size still grows (it is sparse) until the next run truncates it.
import {
  closeSync,
  constants as fsc,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import {
  decodeRecords,
  encodeLogLine,
  MAX_LOG_LINE_BYTES,
  RECORD_HEADER_BYTES,
  type StreamRecord,
} from '@keel/shared';
import {
  encodeLines,
  LINE_BLOCK_TARGET_BYTES,
  RecordsOut,
  scanLines,
  type LineBlock,
} from '../link/line-block.ts';
import { HolePuncher, punchBySpawn } from './hole-puncher.ts';

/**
 * Bytes read from one file per tick: bounds memory (a tick holds the read, its records and the
 * spool's frames: ~3.5x this at ~100-byte lines) and lets the other files have their turn. One
 * tick is one intent write and one spool append, so larger reads mean fewer of both (the intent's
 * write and rename cost ~6 ms on a busy disk: at 1 MiB per tick that capped capture near 100 MiB/s).
 */
const READ_BYTES = 4 * 1024 * 1024;
/** The intent file's size when written in place (see `LogTailer#writeIntent`). */
const INTENT_PAGE = 4096;
/** A partial line (no newline yet) older than this is flushed as a `continued` record. */
const PARTIAL_FLUSH_MS = 1_000;
/** `drain()` reads at most this many chunks of READ_BYTES (256 MiB) before it gives up the loop. */
const DRAIN_MAX_READS = 64;
/**
 * Capture marks kept per file (see `captureTime`): at most this many reads, and none for bytes
 * more than MARK_SPAN_BYTES below the newest read (the live tail's backlog is at most 1 MiB of a
 * file's end, which is at or past the newest read). A mark is two numbers: a file that gains a
 * line every tick keeps 32 KiB of them (~7 minutes of ticks).
 */
const MAX_MARKS = 2048;
const MARK_SPAN_BYTES = 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/** Splits bytes into lines: CRLF or LF, lines over `max` cut into `continued` parts, binary-safe. */
export class LineSplitter {
  #pending: Buffer = EMPTY;
  constructor(readonly max = MAX_LOG_LINE_BYTES) {}

  /** Bytes held for a line not yet ended. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** Lines completed by `chunk` (each with whether it continues in the next one). */
  push(chunk: Buffer): { line: Buffer; continued: boolean }[] {
    const out: { line: Buffer; continued: boolean }[] = [];
    this.each(chunk, (line, continued) => out.push({ line: Buffer.from(line), continued }));
    return out;
  }

  /**
   * Calls `emit` with each line completed by `chunk`, as a view into `chunk` (or into the held
   * partial line) that is valid only during the call: no copy per line. Returns how many.
   */
  each(chunk: Buffer, emit: (line: Buffer, continued: boolean) => void): number {
    return this.scan(chunk, (buf, start, end, continued) => emit(buf.subarray(start, end), continued));
  }

  /**
   * Like `each`, but hands out each line as `buf[start, end)` (no view object per line: the
   * tailer copies the bytes straight into its records). `buf` is valid only during the call.
   */
  scan(chunk: Buffer, emit: (buf: Buffer, start: number, end: number, continued: boolean) => void): number {
    let n = 0;
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const nl = buf.indexOf(10, at);
      if (nl < 0 || nl - at > this.max) {
        if (buf.length - at >= this.max) {
          emit(buf, at, at + this.max, true);
          n++;
          at += this.max;
          continue;
        }
        break;
      }
      emit(buf, at, nl > at && buf[nl - 1] === 13 ? nl - 1 : nl, false);
      n++;
      at = nl + 1;
    }
    this.#pending = at < buf.length ? Buffer.from(buf.subarray(at)) : EMPTY;
    return n;
  }

  /** Hands out the partial line (flagged continued: the rest, if any, follows in the next record). */
  flush(): { line: Buffer; continued: boolean } | null {
    if (this.#pending.length === 0) return null;
    const line = this.#pending;
    this.#pending = EMPTY;
    return { line, continued: true };
  }
}

/** The files of one process's output. */
export interface TailedFile {
  process: string;
  stream: 'stdout' | 'stderr';
  path: string;
}

interface FileState extends TailedFile {
  /** Offset up to which lines were handed to the spool (a held partial line starts here). */
  committed: number;
  /** Offset read up to (committed + the partial line's bytes). */
  readTo: number;
  /** The partial line held (no newline yet; under MAX_LOG_LINE_BYTES): it begins at `committed`. */
  pending: Buffer;
  partialSince: number;
  /** Offset below which the file has been punched out (0: nothing yet). */
  punchedTo: number;
  /** When the last punch of this file began (the tick's clock; -Infinity: none yet). */
  punchedAt: number;
  /** A punch of this file is running (see `#punch`): at most one at a time, and no truncation. */
  punching: boolean;
  /** Counts resets (the file started over): a punch that began before one does not move punchedTo. */
  generation: number;
  /** Each record's payload header (flags, name) for a whole line and for a `continued` part. */
  heads: [Buffer, Buffer];
  /**
   * Capture marks: pairs (offset read up to, the tick's time), oldest first from `markHead`. A
   * line ending at or below a mark's offset was captured at or before its time (see `captureTime`).
   */
  marks: number[];
  markHead: number;
  /** The newest mark let go (offset, time): bytes below it were captured at or before that time. */
  floorAt: number;
  floorTime: number;
}

/** The part of a spool the tailer needs. */
export interface LogSpool {
  readonly lastSeq: number;
  append(records: readonly StreamRecord[]): { firstSeq: number; lastSeq: number };
  /**
   * Appends `count` records already encoded back to back (`encodeRecords`' format), as `append`
   * does (the real Spool has it; without it the tailer decodes them and calls `append`).
   */
  appendEncoded?(body: Buffer, count: number): { firstSeq: number; lastSeq: number };
  /**
   * Appends lines as read, a line-block frame per block (the real Spool has it: see
   * line-block.ts); without it the tailer encodes a record per line itself.
   */
  appendLineBlocks?(blocks: readonly LineBlock[]): { firstSeq: number; lastSeq: number };
  /** Bytes held, its bound and the controller's ack (the real Spool has them): see `#spoolBusy`. */
  readonly bytes?: number;
  readonly maxBytes?: number;
  readonly ackedSeq?: number;
}

/** Spool fill above which the tailer leaves new lines in their files while the controller drains it. */
const SPOOL_HIGH_WATER = 0.75;
/** An ack this recent means the controller is taking the spool's records: slow, not gone. */
const DRAINING_MS = 10_000;
/**
 * A file this many spools behind ends the wait: a writer faster than storage for good would grow
 * its file without bound, so the tailer reads on and the spool's overflow is a counted gap. 16
 * spools (1 GiB by default; was 4): a 10 s burst of a ~100 MiB/s writer (the logs bench on a quiet
 * 2-core VM) ran ~550 MiB ahead of storage at ~45 MiB/s, and with 4 lost ~5 % of its lines as gaps
 * although the file held them and storage caught up seconds later.
 */
const FILE_BACKLOG_SPOOLS = 16;

type Offsets = Record<string, number>;

/** One intent slot (see `LogTailer#writeIntent`); `prevSeq` and `gen` are absent in older agents' files. */
interface Intent {
  gen: number;
  seq: number;
  prevSeq?: number;
  offsets: Offsets;
  prev: Offsets;
}

const isOffsets = (o: unknown): o is Offsets =>
  typeof o === 'object' && o !== null && Object.values(o).every((v) => Number.isSafeInteger(v) && v >= 0);

/** Parses one slot: null when torn or damaged (its CRC or shape does not hold). */
function parseIntent(text: string): Intent | null {
  if (!text.startsWith('{')) return null;
  const at = text.lastIndexOf(',"crc":');
  let body = text;
  if (at >= 0) {
    body = `${text.slice(0, at)}}`;
    if (`${body.slice(0, -1)},"crc":${crc32(body)}}` !== text) return null;
  }
  let o: Partial<Intent>;
  try {
    o = JSON.parse(body) as Partial<Intent>;
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(o.seq) || !isOffsets(o.offsets) || !isOffsets(o.prev)) return null;
  if (at < 0) {
    // An older agent's (no CRC, no generation); a slot of this format without its CRC is torn.
    return o.gen === undefined ? { gen: 0, seq: o.seq!, offsets: o.offsets, prev: o.prev } : null;
  }
  if (!Number.isSafeInteger(o.gen) || !Number.isSafeInteger(o.prevSeq)) return null;
  return { gen: o.gen!, seq: o.seq!, prevSeq: o.prevSeq!, offsets: o.offsets, prev: o.prev };
}

/** Tails the output files of every process into the logs spool. Call `tick()` on a timer. */
export class LogTailer {
  #files = new Map<string, FileState>();
  /** close() was called: no punch starts after it. */
  #closed = false;
  #intentPath: string;
  #resumeAt: Offsets;
  #spool: LogSpool;
  #now: () => number;
  #lineListener: ((process: string, stream: 'stdout' | 'stderr', line: Buffer) => void) | null = null;
  #lineWanted: ((process: string) => boolean) | null = null;
  #onAdd: (() => void) | null = null;

  #keepBytes: number;
  #punchEveryBytes: number;
  #punchMaxEveryBytes: number;
  #punchIntervalMs: number;
  /** Why punching failed (e.g. a file system without hole punching); output then grows as before. */
  punchError: string | null = null;
  /** The long-lived punch helper (hole-puncher.ts); null: one `fallocate` child per punch. */
  #puncher: HolePuncher | null;

  /** The punch helper, when punches go through one (tests check it is started once). */
  get puncher(): HolePuncher | null {
    return this.#puncher;
  }

  constructor(opts: {
    dir: string;
    spool: LogSpool;
    now?: () => number;
    /** Bytes kept below the spooled offset (the live tail's backlog reads them); default 4 MiB. */
    keepBytes?: number;
    /** Punch once this much more has been spooled (and `punchIntervalMs` passed); default 16 MiB. */
    punchEveryBytes?: number;
    /** Punch at once when this much more has been spooled; default 4x `punchEveryBytes` (64 MiB). */
    punchMaxEveryBytes?: number;
    /** Between `punchEveryBytes` and `punchMaxEveryBytes`, at most one punch a file this often; default 1000. */
    punchIntervalMs?: number;
    /** How punches run: through one long-lived helper (default) or one `fallocate` child each. */
    punchBy?: 'helper' | 'spawn';
  }) {
    this.#puncher = opts.punchBy === 'spawn' ? null : new HolePuncher();
    this.#keepBytes = opts.keepBytes ?? 4 * 1024 * 1024;
    this.#punchEveryBytes = opts.punchEveryBytes ?? 16 * 1024 * 1024;
    this.#punchMaxEveryBytes = Math.max(
      this.#punchEveryBytes,
      opts.punchMaxEveryBytes ?? 4 * this.#punchEveryBytes,
    );
    this.#punchIntervalMs = opts.punchIntervalMs ?? 1_000;
    this.#intentPath = join(opts.dir, 'tail-offsets.json');
    this.#spool = opts.spool;
    this.#now = opts.now ?? Date.now;
    this.#resumeAt = this.#readIntent();
  }

  /** The generation of the last intent written (the newest valid one read at start: see below). */
  #intentGen = 0;

  /**
   * Writes the intent before an append. Usually in place: one page, without O_TRUNC, into one of
   * two slots (pages 0 and 1) by turns, so the intent before it stays whole beside it. Each slot
   * is JSON with its generation, the spool's last seq before (`prevSeq`) and after (`seq`) the
   * append, and a CRC32 of the rest (`crc`, last): a page torn by a power loss (a write that
   * reached the disk in part) fails the CRC and the other slot is used (`#readIntent`). The write
   * and rename it replaced took ~3 ms on this disk, once per 4 MiB read, on the event loop; this
   * ~0.1 ms. An intent larger than a page (very many processes) is written to a temporary file and
   * renamed over it (one slot, whole or absent).
   */
  #writeIntent(seq: number, prevSeq: number, offsets: Offsets, prev: Offsets): void {
    const gen = ++this.#intentGen;
    const body = JSON.stringify({ gen, seq, prevSeq, offsets, prev });
    const text = `${body.slice(0, -1)},"crc":${crc32(body)}}`;
    let whole: Buffer;
    if (Buffer.byteLength(text) < INTENT_PAGE) {
      const page = Buffer.alloc(INTENT_PAGE, 0x20);
      page.write(text);
      const slot = (gen % 2) * INTENT_PAGE;
      const fd = openSync(this.#intentPath, fsc.O_WRONLY | fsc.O_CREAT, 0o600);
      try {
        if (fstatSync(fd).size <= 2 * INTENT_PAGE) {
          writeSync(fd, page, 0, INTENT_PAGE, slot);
          return;
        }
      } finally {
        closeSync(fd);
      }
      // One written by rename is longer: replaced once by two pages, this slot and a blank one.
      whole = Buffer.alloc(2 * INTENT_PAGE, 0x20);
      page.copy(whole, slot);
    } else {
      // Longer than two pages whatever its length, so that it is never read as two slots.
      whole = Buffer.from(text.padEnd(2 * INTENT_PAGE + 1, ' '));
    }
    const tmp = `${this.#intentPath}.tmp`;
    writeFileSync(tmp, whole);
    renameSync(tmp, this.#intentPath);
  }

  /**
   * Where to resume each file, from the intent slots and the spool's last seq L. A valid slot
   * (its CRC holds) says: L = `seq` — its append is in the spool, resume at `offsets`; L =
   * `prevSeq` — it is not, resume at `prev`. The newest slot that matches L exactly is used: after
   * a kill -9 that is the newest slot; after a power loss that tore the newest page, the one
   * before it (written and matched the same way). Should no slot match (a power loss that kept
   * spool writes the intent page did not reach, or the reverse), the choice errs towards lines
   * stored twice over lines lost: the newest slot whose append the spool holds, else the oldest
   * slot's `prev` (`resumeNote` says so). Files written by older agents (one JSON object, no CRC)
   * are read as before.
   */
  #readIntent(): Offsets {
    let data: Buffer;
    try {
      data = readFileSync(this.#intentPath);
    } catch {
      return {};
    }
    const slots: Intent[] = [];
    const pages =
      data.length <= 2 * INTENT_PAGE && data.length > INTENT_PAGE
        ? [data.subarray(0, INTENT_PAGE), data.subarray(INTENT_PAGE)]
        : [data];
    for (const page of pages) {
      const slot = parseIntent(page.toString('utf8').trimEnd());
      if (slot) slots.push(slot);
    }
    if (slots.length === 0) {
      if (data.length > 0)
        this.resumeNote = 'the tailer intent file was unreadable: files read from their start';
      return {};
    }
    slots.sort((a, b) => b.gen - a.gen);
    this.#intentGen = slots[0]!.gen;
    const last = this.#spool.lastSeq;
    for (const slot of slots) {
      if (slot.prevSeq === undefined) return last >= slot.seq ? slot.offsets : slot.prev; // an older agent's
      if (last === slot.seq) return slot.offsets;
      if (last === slot.prevSeq) return slot.prev;
    }
    const held = slots.find((slot) => last >= slot.seq);
    this.resumeNote = `the tailer intent (seq ${slots.map((x) => x.seq).join(', ')}) does not match the spool's last seq ${last}: resumed where no line is lost (some may be stored twice)`;
    return held ? held.offsets : slots.at(-1)!.prev;
  }

  /** Set at start when the intent could not be matched exactly (see `#readIntent`); null normally. */
  resumeNote: string | null = null;

  /**
   * Hears every line handed to the spool (the supervisor's output health checks), as a view valid
   * only during the call. `wanted`, asked once per file and tick, limits it to the processes whose
   * lines it needs (no view per line for the others).
   */
  onLine(
    listener: (process: string, stream: 'stdout' | 'stderr', line: Buffer) => void,
    wanted?: (process: string) => boolean,
  ): void {
    this.#lineListener = listener;
    this.#lineWanted = wanted ?? null;
  }

  /** How many files are tailed (none: the continuous loop sleeps until `add`). */
  get fileCount(): number {
    return this.#files.size;
  }

  /** Called after `add` starts tailing a file (tailContinuously wakes its sleeping loop). */
  onAdd(listener: (() => void) | null): void {
    this.#onAdd = listener;
  }

  /** Starts tailing a file, from where an earlier agent left it (or from 0). */
  add(file: TailedFile): void {
    if (this.#files.has(file.path)) return;
    const at = this.#resumeAt[file.path] ?? 0;
    this.#files.set(file.path, {
      ...file,
      committed: at,
      readTo: at,
      pending: EMPTY,
      partialSince: 0,
      punchedTo: 0,
      punchedAt: -Infinity,
      punching: false,
      generation: 0,
      // Bytes below `at` were read by an earlier agent: when is not known (older than any mark).
      marks: [],
      markHead: 0,
      floorAt: at,
      floorTime: -Infinity,
      heads: [false, true].map((continued) =>
        encodeLogLine({ process: file.process, stream: file.stream, line: Buffer.alloc(0), continued }),
      ) as [Buffer, Buffer],
    });
    this.#onAdd?.();
  }

  /** Stops tailing a file (after a last tick, so what it holds is kept). */
  remove(path: string): void {
    this.#files.delete(path);
  }

  /** The offset up to which a file has been handed to the spool. */
  committedOffset(path: string): number | undefined {
    return this.#files.get(path)?.committed;
  }

  /** Restarts a file at offset 0 (it was truncated for a new run). */
  reset(path: string): void {
    const f = this.#files.get(path);
    if (!f) return;
    f.committed = 0;
    f.readTo = 0;
    f.punchedTo = 0;
    f.generation++;
    f.pending = EMPTY;
    clearMarks(f);
  }

  /**
   * When the line of `path` that ends at byte `end` (its newline included) was captured: the
   * time of the tick whose read reached it, the same time its record has in the logs stream.
   * `-Infinity` when it was read by an earlier agent (before this one's first read of the file),
   * `Infinity` when it has not been read yet (newer than everything captured), undefined for a
   * file not tailed. Marks older than MAX_MARKS reads or MARK_SPAN_BYTES give the time of the
   * newest mark let go: an upper bound. Used to merge a process's two files in capture order
   * (the live tail's backlog).
   */
  captureTime(path: string, end: number): number | undefined {
    const f = this.#files.get(path);
    if (!f) return undefined;
    if (end <= f.floorAt) return f.floorTime;
    const m = f.marks;
    let lo = f.markHead / 2;
    let hi = m.length / 2;
    if (lo === hi || m[2 * (hi - 1)]! < end) return Infinity;
    // The first mark at or past `end`.
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (m[2 * mid]! < end) lo = mid + 1;
      else hi = mid;
    }
    return m[2 * lo + 1]!;
  }

  /**
   * Whether a punch of this file is still running: the file must not be truncated meanwhile (the
   * punch would then zero the new run's first bytes). The supervisor leaves such a file as it is.
   */
  punching(path: string): boolean {
    return this.#files.get(path)?.punching ?? false;
  }

  /**
   * Gives back the disk blocks of what was spooled, keeping the last `keepBytes` (see the header).
   * The punch runs in another process (`fallocate`; Node has no fallocate) that the tailer does not
   * wait for: the tick goes on reading while the kernel frees the range. Since 1 Dec it is asked of
   * one long-lived helper shell (hole-puncher.ts), which forks `fallocate` itself, instead of a
   * child the agent forked per punch (a fork of the whole agent: 4-18 ms of its CPU each, with the
   * event loop stopped until the child exec'd); should the helper fail, one child per punch as
   * before. Either way `fallocate` opens the fd the tailer opened (`/proc/<agent>/fd/<fd>`, or
   * `/dev/fd/3` in the child), so it punches this inode even if the path is replaced meanwhile;
   * while it runs the file is not punched again nor truncated (`punching`).
   *
   * How often: once `punchEveryBytes` (16 MiB) more were spooled, but at most once per
   * `punchIntervalMs` (1 s) for a file, unless `punchMaxEveryBytes` (64 MiB) were: a writer up to
   * 16 MiB/s is punched every 16 MiB as before, a faster one every second or 64 MiB. Each punch
   * holds the file's inode lock and a journal handle for milliseconds, during which the writer's
   * `write()` waits (up to ~20 ms measured), and costs the tailer a spawn: a 90-100 MiB/s writer
   * punched every 16 MiB (6 punches a second) wrote 5-9 % slower than one never punched, and as
   * fast every 64 MiB (docs/benchmarks.md, logs, 30 Nov 13:00). The disk bound per file becomes
   * `keepBytes` + `punchMaxEveryBytes`.
   */
  #punch(f: FileState, now: number): void {
    if (this.punchError !== null || f.punching) return;
    const to = Math.floor(Math.max(0, f.committed - this.#keepBytes) / 4096) * 4096;
    const due = to - f.punchedTo;
    if (due < this.#punchEveryBytes) return;
    if (due < this.#punchMaxEveryBytes && now - f.punchedAt < this.#punchIntervalMs) return;
    const from = f.punchedTo;
    let fd: number;
    try {
      fd = openSync(f.path, 'r');
    } catch {
      return; // gone: nothing to give back
    }
    const generation = f.generation;
    f.punching = true;
    f.punchedAt = now;
    const done = (error: string | null) => {
      if (!f.punching) return;
      f.punching = false;
      if (error !== null) this.punchError = `punching spooled output out of ${f.path} failed: ${error}`;
      else if (f.generation === generation) {
        f.punchedTo = Math.max(f.punchedTo, to);
        // What the ticks spooled while this punch ran could not be punched (one at a time): when
        // it reached `punchMaxEveryBytes`, punch it now, since a process that has ended brings no
        // further tick and its file would stay above the bound.
        if (!this.#closed && this.#files.get(f.path) === f) this.#punch(f, f.punchedAt);
      }
    };
    const puncher = this.#puncher;
    if (puncher === null) {
      try {
        punchBySpawn(fd, from, to - from, done);
      } finally {
        closeSync(fd);
      }
      return;
    }
    puncher.punch(fd, from, to - from, (error) => {
      if (error === null) {
        closeSync(fd);
        done(null);
        return;
      }
      // The helper could not do it (it did not start, or cannot reopen the agent's fds): one
      // child per punch from now on, starting with this one; its error, if any, is the real one.
      if (this.#puncher === puncher) {
        this.#puncher = null;
        puncher.close();
      }
      try {
        punchBySpawn(fd, from, to - from, done);
      } finally {
        closeSync(fd);
      }
    });
  }

  /** Ends the punch helper (it ends by itself with the agent too). */
  close(): void {
    this.#closed = true;
    this.#puncher?.close();
  }

  /**
   * Reads every file to its current end (a process that ended or is removed: a tick reads at most
   * READ_BYTES of a file, and a fast writer can be megabytes ahead), handing out partial lines at
   * the end. Bounded by DRAIN_MAX_READS; returns the number of records appended.
   */
  drain(): number {
    let total = 0;
    for (let i = 0; i < DRAIN_MAX_READS; i++) {
      total += this.tick(true);
      if (this.#caughtUp) break;
    }
    return total;
  }

  #caughtUp = true;
  /** The tick's records being built (kept to reuse the object, not the buffer). */
  #out = new RecordsOut();
  /** Records made only for the output health check's listener (line blocks: see `tick`). */
  #heard = new RecordsOut();
  /**
   * The read buffer. It and the records' buffer are kept from one tick to the next while the files
   * keep growing (no fresh 4-5 MiB buffers, whose pages the kernel would map and zero, for every
   * read), and let go by a tick that read nothing (an idle agent holds none).
   */
  #readBuf: Buffer = EMPTY;
  /** The last ack seen and when it changed (-Infinity: no change seen yet, nothing drains). */
  #lastAck = { seq: -1, at: -Infinity };

  /**
   * True while the spool is nearly full but the controller is taking its records (an ack changed
   * within DRAINING_MS): new lines then wait in their output files, which hold them anyway, instead
   * of overflowing the spool (a counted loss) only because storage is slower than the writer. When
   * the controller is gone (no ack moves), the tailer reads on: a spool overflow during a long
   * outage is a counted gap, as designed. Nor does it wait while a file is more than
   * FILE_BACKLOG_SPOOLS spools behind (a writer faster than storage for good).
   */
  #spoolBusy(now: number): boolean {
    const { bytes, maxBytes, ackedSeq } = this.#spool;
    if (bytes === undefined || maxBytes === undefined || ackedSeq === undefined) return false;
    if (this.#lastAck.seq === -1) this.#lastAck = { seq: ackedSeq, at: -Infinity };
    else if (ackedSeq !== this.#lastAck.seq) this.#lastAck = { seq: ackedSeq, at: now };
    if (!(bytes > maxBytes * SPOOL_HIGH_WATER && now - this.#lastAck.at < DRAINING_MS)) return false;
    for (const f of this.#files.values()) {
      try {
        if (statSync(f.path).size - f.readTo > maxBytes * FILE_BACKLOG_SPOOLS) return false;
      } catch {
        // not there: nothing waits in it
      }
    }
    return true;
  }

  /** Whether the last tick found the spool busy (see `#spoolBusy`) and read nothing. */
  waitedForSpool = false;

  /**
   * Whether the last tick read every file to the end it had then. When not, the caller ticks again
   * at once (a fast writer: a tick reads at most READ_BYTES of a file).
   */
  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  /**
   * Reads what the files gained since the last tick (at most READ_BYTES of each) and appends their
   * lines to the spool. `flushPartial` also hands out a partial line at once (a process that
   * ended) once its file has been read to the end: a line is never cut at a read boundary.
   * While the spool is nearly full and draining it reads nothing (`waitedForSpool`; not with
   * `flushPartial`). Returns the number of records appended.
   */
  tick(flushPartial = false): number {
    this.#caughtUp = true;
    // With a spool that takes line blocks, each file's lines go as blocks of the bytes read (views
    // of the read buffer, which then holds every file's read of the tick); otherwise as records,
    // encoded back to back (encodeRecords' format) in one growing buffer. Either way no object or
    // buffer per line.
    const blocks: LineBlock[] | null = this.#spool.appendLineBlocks ? [] : null;
    const out = this.#out;
    out.off = 0;
    out.count = 0;
    let count = 0;
    const prev: Offsets = {};
    const next: Offsets = {};
    const now = this.#now();
    // A process that ended (flushPartial: its files are about to be reset or removed) is read anyway.
    this.waitedForSpool = !flushPartial && this.#spoolBusy(now);
    if (this.waitedForSpool) return 0;
    const time = Buffer.allocUnsafe(8);
    time.writeDoubleBE(now, 0);
    const read: FileState[] = [];
    let readBytes = 0;
    /** Where the next file's read goes in the read buffer (blocks keep views of the earlier ones). */
    let readAt = 0;
    const cuts: number[] = [];
    for (const f of this.#files.values()) {
      prev[f.path] = f.committed;
      read.push(f);
      const wanted =
        this.#lineListener && (this.#lineWanted === null || this.#lineWanted(f.process))
          ? this.#lineListener
          : null;
      const listener = wanted ? (line: Buffer) => wanted(f.process, f.stream, line) : null;
      let fd: number;
      try {
        fd = openSync(f.path, 'r');
      } catch {
        next[f.path] = f.committed;
        continue;
      }
      try {
        const size = fstatSync(fd).size;
        if (size < f.readTo) {
          // Truncated behind our back: start over at its beginning.
          f.committed = 0;
          f.readTo = 0;
          f.punchedTo = 0;
          f.generation++;
          f.pending = EMPTY;
          clearMarks(f);
        }
        if (size > f.readTo) {
          // The held partial line, then what the file gained: one buffer, no concatenation.
          const held = f.pending.length;
          const want = held + Math.min(READ_BYTES, size - f.readTo);
          if (blocks === null) readAt = 0;
          if (this.#readBuf.length < readAt + want) {
            // Blocks of the files read before keep the old buffer alive until the append; the new
            // one has room for them too, so the next tick's reads of the same files fit in it.
            this.#readBuf = Buffer.allocUnsafe(
              blocks === null ? want : Math.max(readAt + want, READ_BYTES + 64 * 1024),
            );
            readAt = 0;
          }
          const buf = this.#readBuf;
          if (held > 0) f.pending.copy(buf, readAt);
          const n = readSync(fd, buf, readAt + held, want - held, f.readTo);
          f.readTo += n;
          readBytes += n;
          if (n > 0) addMark(f, now);
          const src = buf.subarray(readAt, readAt + held + n);
          let rest: number;
          let made: number;
          if (blocks !== null) {
            cuts.length = 0;
            rest = scanLines(src, LINE_BLOCK_TARGET_BYTES, cuts);
            made = 0;
            for (let c = 0, start = 0; c < cuts.length; c += 2) {
              const end = cuts[c]!;
              const n = cuts[c + 1]!;
              blocks.push({ head: f.heads[0], ts: now, src, start, end, count: n, partial: false });
              made += n;
              start = end;
            }
            // The output health check hears the lines through the encoder (rarely wanted: a
            // process whose check waits for a line); its records are not kept.
            if (listener && rest > 0) {
              const heard = this.#heard;
              heard.off = 0;
              heard.count = 0;
              heard.reserve(Math.ceil(rest * 1.25) + 4096);
              encodeLines(heard, src.subarray(0, rest), f.heads, now, listener);
            }
            readAt += src.length;
          } else {
            // Room for ~100-byte lines (a record adds its header and the file's): grows if shorter.
            out.reserve(Math.ceil(src.length * 1.25) + 4096);
            const before = out.count;
            rest = encodeLines(out, src, f.heads, now, listener);
            made = out.count - before;
          }
          count += made;
          f.pending = rest < src.length ? Buffer.from(src.subarray(rest)) : EMPTY;
          // Lines that ended: committed moves to where the held partial line begins.
          f.committed = f.readTo - f.pending.length;
          // The held partial line's age counts from when it began (the last line that ended).
          if (f.pending.length === 0) f.partialSince = 0;
          else if (made > 0 || f.partialSince === 0) f.partialSince = now;
        }
        // A partial line is handed out only at the file's end: behind it, the next read ends it.
        const atEnd = f.readTo >= size;
        if (!atEnd) this.#caughtUp = false;
        if (
          atEnd &&
          f.pending.length > 0 &&
          (flushPartial || (f.partialSince > 0 && now - f.partialSince >= PARTIAL_FLUSH_MS))
        ) {
          const pending = f.pending;
          if (blocks !== null) {
            blocks.push({
              head: f.heads[0],
              ts: now,
              src: pending,
              start: 0,
              end: pending.length,
              count: 1,
              partial: true,
            });
            listener?.(pending);
          } else {
            out.reserve(RECORD_HEADER_BYTES + f.heads[1].length + pending.length);
            out.record(f.heads[1], time, pending, 0, pending.length, listener);
          }
          count++;
          f.pending = EMPTY;
          f.committed = f.readTo;
          f.partialSince = 0;
        }
      } finally {
        closeSync(fd);
      }
      next[f.path] = f.committed;
    }
    const body = out.buf;
    const off = out.off;
    // Records decoded for a spool without appendEncoded may keep views of the buffer: not reused.
    // Otherwise both buffers are kept while the files keep growing, and let go by the first tick
    // that found nothing new (a writer that paused for a tick's interval; an idle agent holds
    // none): a fresh 4-5 MiB buffer per tick cost page faults (system time) and, as external
    // memory, full garbage collections every few ticks.
    if (readBytes === 0 || !(this.#spool.appendEncoded || blocks)) out.buf = EMPTY;
    if (readBytes === 0) {
      this.#readBuf = EMPTY;
      this.#heard.buf = EMPTY;
    }
    if (count === 0) return 0;
    const seq = this.#spool.lastSeq + count;
    this.#writeIntent(seq, this.#spool.lastSeq, next, prev);
    try {
      if (blocks !== null) this.#spool.appendLineBlocks!(blocks);
      else {
        const encoded = body.subarray(0, off);
        if (this.#spool.appendEncoded) this.#spool.appendEncoded(encoded, count);
        else this.#spool.append(decodeRecords(encoded, count));
      }
    } catch (err) {
      // A failed append that kept its sequence numbers is a counted gap (the spool counted it, the
      // controller records it): go on after it. One that took no numbers handed nothing over:
      // read the same lines again next time (as a restarted agent would, from `prev`).
      if (this.#spool.lastSeq < seq) {
        for (const f of read) {
          f.committed = prev[f.path]!;
          f.readTo = f.committed;
          f.pending = EMPTY;
          f.partialSince = 0;
        }
        this.#caughtUp = true;
        out.buf = EMPTY;
        this.#readBuf = EMPTY;
        throw err;
      }
    }
    for (const f of read) this.#punch(f, now);
    return count;
  }
}

/** Forgets a file's capture marks (it starts over at offset 0). */
function clearMarks(f: FileState): void {
  f.marks.length = 0;
  f.markHead = 0;
  f.floorAt = 0;
  f.floorTime = -Infinity;
}

/** Records that `f` was read up to `f.readTo` at `now`, letting the oldest marks go past the bounds. */
function addMark(f: FileState, now: number): void {
  const m = f.marks;
  m.push(f.readTo, now);
  while (m.length - f.markHead > 2 * MAX_MARKS || m[f.markHead]! < f.readTo - MARK_SPAN_BYTES) {
    f.floorAt = m[f.markHead]!;
    f.floorTime = m[f.markHead + 1]!;
    f.markHead += 2;
  }
  // Drop the let-go half at once rather than shifting per mark.
  if (f.markHead >= m.length / 2) {
    m.splice(0, f.markHead);
    f.markHead = 0;
  }
}

/**
 * Ticks `tailer` now and every `everyMs`, and again at once while a tick did not catch up (a writer more
 * than READ_BYTES ahead), yielding to the event loop between ticks. While the tailer has no file (no
 * process configured) the loop sleeps instead of waking every `everyMs`, and `add` wakes it: an idle
 * agent's event loop then wakes only for its own timers (docs/metrics.md, "The agent's footprint:
 * wake-ups when idle"). Returns the function that stops it.
 *
 * @example const stop = tailContinuously(tailer, { everyMs: 200, onError: (err) => log.error({ err }) });
 */
export function tailContinuously(
  tailer: LogTailer,
  opts: { everyMs: number; onError: (err: unknown) => void },
): () => void {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const arm = (ms: number) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(loop, ms);
    timer.unref();
  };
  const loop = () => {
    timer = null;
    try {
      tailer.tick();
    } catch (err) {
      opts.onError(err);
    }
    if (stopped) return;
    // Nothing to tail and nothing left to read: sleep until a file is added.
    if (tailer.fileCount === 0 && tailer.caughtUp) return;
    arm(tailer.caughtUp ? opts.everyMs : 0);
  };
  tailer.onAdd(() => {
    if (!stopped && timer === null) arm(0);
  });
  arm(0);
  return () => {
    stopped = true;
    tailer.onAdd(null);
    if (timer) clearTimeout(timer);
    timer = null;
  };
}
