// The tailer's line encoder, in WebAssembly: splits what a read of an output file gained into
// lines and writes each as a `logs` record (`encodeRecords`' format: u32 BE length, f64 BE time,
// the file's payload header, the line) straight into the tick's records buffer. The same lines as
// `LineSplitter` (LF or CRLF ends; a line longer than `max` cut into `continued` parts of `max`
// bytes; bytes kept as they are: binary-safe), checked against it in encode-lines.test.ts.
//
// Why WebAssembly: the JavaScript encoder it replaced (four bytes a step through DataViews) was a
// quarter of the capture's CPU in the logs benchmark, ~1.3 CPU-s per GiB (docs/benchmarks.md,
// logs, 30 Nov). This one moves eight bytes a step with plain loads and stores, finds the LF in a
// word with the "has a zero byte" test and `ctz`, and makes no call, object or view per line: ~3x
// less CPU for the same records.
//
// The module is assembled here at first use, from the instructions in `encodeBody` (no binary file
// and no toolchain). Its memory holds everything the encoder touches:
//
//   [0, 1024)           the two record templates of the file being encoded (f64 BE time, then the
//                       payload header: for a whole line at TEMPLATE_WHOLE, for a cut part at
//                       TEMPLATE_PART) and the call's results (COUNT_AT, OUT_AT)
//   [READ_AT, outBase)  the read: a held partial line, then what the file gained
//   [outBase, ...)      the tick's records; the memory grows when they need more
//
// The read and the records handed to the spool are Buffers over this memory: no copy in or out.

/** Where the record templates and results live. */
const TEMPLATE_WHOLE = 0;
const TEMPLATE_PART = 512;
const COUNT_AT = 1016;
const OUT_AT = 1020;
const READ_AT = 1024;
const PAGE = 65536;

// ---- a small assembler for the one function ---------------------------------------------------

const I32 = 0x7f;
const I64 = 0x7e;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const str = (s: string) => [...uleb(s.length), ...Buffer.from(s, 'latin1')];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

/** Emits instructions; blocks and loops are named so branches need no depth counting. */
class Code {
  bytes: number[] = [];
  #labels: string[] = [];
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  get(l: number) {
    return this.op(0x20, ...uleb(l));
  }
  set(l: number) {
    return this.op(0x21, ...uleb(l));
  }
  tee(l: number) {
    return this.op(0x22, ...uleb(l));
  }
  i32(v: number) {
    return this.op(0x41, ...sleb(BigInt(v)));
  }
  i64(v: bigint) {
    return this.op(0x42, ...sleb(BigInt.asIntN(64, v)));
  }
  block(label: string) {
    this.#labels.push(label);
    return this.op(0x02, 0x40);
  }
  loop(label: string) {
    this.#labels.push(label);
    return this.op(0x03, 0x40);
  }
  if() {
    this.#labels.push('');
    return this.op(0x04, 0x40);
  }
  end() {
    this.#labels.pop();
    return this.op(0x0b);
  }
  #depth(label: string): number {
    const at = this.#labels.lastIndexOf(label);
    if (at < 0) throw new Error(`no label ${label}`);
    return this.#labels.length - 1 - at;
  }
  br(label: string) {
    return this.op(0x0c, ...uleb(this.#depth(label)));
  }
  brIf(label: string) {
    return this.op(0x0d, ...uleb(this.#depth(label)));
  }
  // Memory access, unaligned (align 0), no offset.
  load8() {
    return this.op(0x2d, 0, 0);
  }
  store8() {
    return this.op(0x3a, 0, 0);
  }
  store32() {
    return this.op(0x36, 0, 0);
  }
  load64() {
    return this.op(0x29, 0, 0);
  }
  store64() {
    return this.op(0x37, 0, 0);
  }
}

// Opcodes used below.
const I32_EQ = 0x46;
const I32_LT_U = 0x49;
const I32_GT_U = 0x4b;
const I32_GE_U = 0x4f;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;
const I32_AND = 0x71;
const I32_SHR_U = 0x76;
const I64_EQZ = 0x50;
const I64_SUB = 0x7d;
const I64_AND = 0x83;
const I64_XOR = 0x85;
const I64_CTZ = 0x7a;
const I32_WRAP_I64 = 0xa7;
const SELECT = 0x1b;
const RETURN = 0x0f;

// encode(src, len, out, outEnd, tplWhole, tplPart, tl, max) -> bytes of src consumed.
// Params 0-7; i32 locals 8-22; i64 locals 23-25.
const [SRC, LEN, OUT, OUT_END, TPL_W, TPL_P, TL, MAX] = [0, 1, 2, 3, 4, 5, 6, 7];
const [AT, END, O, COUNT, LIM, STOP, LS, I, D, NL, FOUND, LINE, NEXT, K, B] = [
  8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];
const [W, X, M] = [23, 24, 25];

function encodeBody(): number[] {
  const c = new Code();
  // at = src; end = src + len; o = out; count = 0
  c.get(SRC).set(AT);
  c.get(SRC).get(LEN).op(I32_ADD).set(END);
  c.get(OUT).set(O);
  c.i32(0).set(COUNT);
  c.block('done').loop('record');
  {
    // Nothing left: done.
    c.get(AT).get(END).op(I32_GE_U).brIf('done');
    // lim = min(end - at, max + 1): the bytes this record may scan.
    c.get(END).get(AT).op(I32_SUB).get(MAX).i32(1).op(I32_ADD);
    c.get(END).get(AT).op(I32_SUB).get(MAX).i32(1).op(I32_ADD).op(I32_LT_U);
    c.op(SELECT).set(LIM);
    // Room for the record at its longest, plus a word of overshoot: else stop (the caller grows).
    c.get(OUT_END).get(O).op(I32_SUB);
    c.get(TL).get(LIM).op(I32_ADD).i32(12).op(I32_ADD);
    c.op(I32_LT_U).brIf('done');
    c.get(AT).get(LIM).op(I32_ADD).set(STOP);
    c.get(O).i32(4).op(I32_ADD).get(TL).op(I32_ADD).set(LS);
    // The whole-line template (time, payload header) a word at a time; the overshoot lands where
    // the line is copied next.
    c.i32(0).set(K);
    c.loop('tpl');
    c.get(O).i32(4).op(I32_ADD).get(K).op(I32_ADD);
    c.get(TPL_W).get(K).op(I32_ADD).load64();
    c.store64();
    c.get(K).i32(8).op(I32_ADD).tee(K).get(TL).op(I32_LT_U).brIf('tpl');
    c.end();
    // The line: copied a word at a time until a word holds an LF, then byte by byte.
    c.get(AT).set(I);
    c.get(LS).set(D);
    c.i32(0).set(FOUND);
    c.block('scan');
    {
      c.block('bytes');
      c.loop('words');
      {
        c.get(I).i32(8).op(I32_ADD).get(STOP).op(I32_GT_U).brIf('bytes');
        c.get(D).get(I).load64().tee(W).store64();
        // x = w ^ 0x0a..; m = (x - 0x01..) & ~x & 0x80..: the lowest set bit marks the first LF.
        c.get(W).i64(0x0a0a0a0a0a0a0a0an).op(I64_XOR).set(X);
        c.get(X).i64(0x0101010101010101n).op(I64_SUB);
        c.get(X).i64(-1n).op(I64_XOR).op(I64_AND);
        c.i64(0x8080808080808080n).op(I64_AND).tee(M);
        c.op(I64_EQZ).if();
        c.get(I).i32(8).op(I32_ADD).set(I);
        c.get(D).i32(8).op(I32_ADD).set(D);
        c.br('words');
        c.end();
        c.get(I).get(M).op(I64_CTZ).op(I32_WRAP_I64).i32(3).op(I32_SHR_U).op(I32_ADD).set(NL);
        c.i32(1).set(FOUND);
        c.br('scan');
      }
      c.end(); // words
      c.end(); // bytes
      c.loop('byte');
      {
        c.get(I).get(STOP).op(I32_GE_U).brIf('scan');
        c.get(I).load8().tee(B).i32(10).op(I32_EQ).if();
        c.get(I).set(NL);
        c.i32(1).set(FOUND);
        c.br('scan');
        c.end();
        c.get(D).get(B).store8();
        c.get(I).i32(1).op(I32_ADD).set(I);
        c.get(D).i32(1).op(I32_ADD).set(D);
        c.br('byte');
      }
      c.end(); // byte
    }
    c.end(); // scan
    c.get(FOUND).if();
    {
      // A whole line, without the CR of a CRLF: line = nl - at - (nl > at && src[nl - 1] === CR).
      c.get(NL).get(AT).op(I32_SUB);
      c.get(NL).get(AT).op(I32_GT_U);
      c.get(NL).i32(1).op(I32_SUB).load8().i32(13).op(I32_EQ).op(I32_AND);
      c.op(I32_SUB).set(LINE);
      c.get(NL).i32(1).op(I32_ADD).set(NEXT);
    }
    c.op(0x05); // else
    {
      // No LF within the bound: a part of `max` bytes if there are that many, else unfinished.
      c.get(LIM).get(MAX).op(I32_LT_U).brIf('done');
      c.get(MAX).set(LINE);
      c.get(AT).get(MAX).op(I32_ADD).set(NEXT);
      // The part's template over the whole line's, byte by byte (the line is in place behind it).
      c.i32(0).set(K);
      c.loop('part');
      c.get(O).i32(4).op(I32_ADD).get(K).op(I32_ADD);
      c.get(TPL_P).get(K).op(I32_ADD).load8();
      c.store8();
      c.get(K).i32(1).op(I32_ADD).tee(K).get(TL).op(I32_LT_U).brIf('part');
      c.end();
    }
    c.end(); // if found
    // The record's length (payload: header + line), big-endian.
    c.get(TL).i32(8).op(I32_SUB).get(LINE).op(I32_ADD).set(K);
    for (let byte = 0; byte < 4; byte++) {
      c.get(O)
        .i32(byte)
        .op(I32_ADD)
        .get(K)
        .i32(24 - 8 * byte)
        .op(I32_SHR_U)
        .store8();
    }
    c.get(LS).get(LINE).op(I32_ADD).set(O);
    c.get(COUNT).i32(1).op(I32_ADD).set(COUNT);
    c.get(NEXT).set(AT);
    c.br('record');
  }
  c.end().end(); // record, done
  c.i32(COUNT_AT).get(COUNT).store32();
  c.i32(OUT_AT).get(O).get(OUT).op(I32_SUB).store32();
  c.get(AT).get(SRC).op(I32_SUB).op(RETURN);
  c.op(0x0b);
  const locals = [0x02, ...uleb(15), I32, ...uleb(3), I64];
  const body = [...locals, ...c.bytes];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const type = [0x01, 0x60, 0x08, ...new Array<number>(8).fill(I32), 0x01, I32];
  const imports = [0x01, ...str('env'), ...str('memory'), 0x02, 0x00, 0x01];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, type),
    ...section(2, imports),
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, ...str('encode'), 0x00, 0x00]),
    ...section(10, [0x01, ...encodeBody()]),
  ];
  return Uint8Array.from(bytes);
}

/** The parts of the WebAssembly API used here (the agent's TypeScript libs do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => WasmMemory;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object | null = null;

type EncodeFn = (
  src: number,
  len: number,
  out: number,
  outEnd: number,
  tplWhole: number,
  tplPart: number,
  tl: number,
  max: number,
) => number;

/**
 * One tick's read buffer and records buffer in a WebAssembly memory, and the encoder over them.
 * Made when a tick has something to read and dropped when one finds nothing (an idle agent holds
 * none, as with the Buffers before it).
 *
 * @example
 *   const enc = new LineEncoder(4 << 20, 65536);
 *   const n = readSync(fd, enc.read, 0, want, pos);
 *   const rest = enc.encode(n, heads, time);   // records in enc.records(), count in enc.count
 */
export class LineEncoder {
  #memory: WasmMemory;
  #encode: EncodeFn;
  #readBytes: number;
  #outBase: number;
  /** End of the records written so far (relative to OUT_BASE) and how many. */
  outBytes = 0;
  count = 0;
  #view: Buffer;

  constructor(
    readBytes: number,
    readonly max: number,
    outBytes = Math.ceil(readBytes * 1.3),
  ) {
    compiled ??= new wasm.Module(moduleBytes());
    this.#readBytes = readBytes;
    this.#outBase = Math.ceil((READ_AT + readBytes + 16) / 8) * 8;
    const pages = Math.ceil((this.#outBase + outBytes) / PAGE);
    this.#memory = new wasm.Memory({ initial: pages });
    const instance = new wasm.Instance(compiled, { env: { memory: this.#memory } });
    this.#encode = instance.exports.encode as EncodeFn;
    this.#view = Buffer.from(this.#memory.buffer);
  }

  /** The read region: a view valid until the memory grows (take it again after `encode`). */
  get read(): Buffer {
    return this.#view.subarray(READ_AT, READ_AT + this.#readBytes);
  }

  /** The records written since `reset`, as a view valid until the memory grows. */
  records(): Buffer {
    return this.#view.subarray(this.#outBase, this.#outBase + this.outBytes);
  }

  /** Starts a tick's records afresh. */
  reset(): void {
    this.outBytes = 0;
    this.count = 0;
  }

  /** Makes room for `bytes` more records (the memory grows: views taken before are void). */
  reserve(bytes: number): void {
    const need = this.#outBase + this.outBytes + bytes;
    const have = this.#memory.buffer.byteLength;
    if (need <= have) return;
    this.#memory.grow(Math.ceil((need - have) / PAGE));
    this.#view = Buffer.from(this.#memory.buffer);
  }

  /** Appends one record: `head` (a payload header), `time` (f64 BE), then `line`. */
  record(head: Buffer, time: Buffer, line: Buffer): void {
    const length = head.length + line.length;
    this.reserve(12 + length);
    const v = this.#view;
    const at = this.#outBase + this.outBytes;
    v.writeUInt32BE(length, at);
    time.copy(v, at + 4);
    head.copy(v, at + 12);
    line.copy(v, at + 12 + head.length);
    this.outBytes += 12 + length;
    this.count++;
  }

  /**
   * Calls `emit` with the line of each record written from `from` (an `outBytes` taken before)
   * on, as a view valid only during the call. `headBytes`: the payload header's length.
   */
  eachLine(from: number, headBytes: number, emit: (line: Buffer) => void): void {
    const v = this.#view;
    for (let at = this.#outBase + from, end = this.#outBase + this.outBytes; at < end;) {
      const next = at + 12 + v.readUInt32BE(at);
      emit(v.subarray(at + 12 + headBytes, next));
      at = next;
    }
  }

  /**
   * Encodes the lines of the read region's first `len` bytes as records after those written
   * (`heads`: the file's payload header for a whole line and for a part; `time`: the f64 BE
   * capture time) and returns where the unfinished line begins (`len`: none).
   */
  encode(len: number, heads: readonly [Buffer, Buffer], time: Buffer): number {
    const tl = 8 + heads[0].length;
    if (tl > TEMPLATE_PART - TEMPLATE_WHOLE - 8 || heads[1].length !== heads[0].length)
      throw new RangeError('payload header too long');
    const v = this.#view;
    time.copy(v, TEMPLATE_WHOLE);
    heads[0].copy(v, TEMPLATE_WHOLE + 8);
    time.copy(v, TEMPLATE_PART);
    heads[1].copy(v, TEMPLATE_PART + 8);
    let at = 0;
    for (;;) {
      const out = this.#outBase + this.outBytes;
      const end = this.#memory.buffer.byteLength;
      const n = this.#encode(READ_AT + at, len - at, out, end, TEMPLATE_WHOLE, TEMPLATE_PART, tl, this.max);
      const words = new Uint32Array(this.#memory.buffer, COUNT_AT, 2);
      this.count += words[0]!;
      this.outBytes += words[1]!;
      at += n;
      if (at >= len) return at;
      // Stopped for room (or at an unfinished line): grow when the next record may not fit.
      const next = Math.min(len - at, this.max + 1) + tl + 12;
      if (this.#outBase + this.outBytes + next <= end) return at;
      this.reserve(Math.max(next, (len - at) * 2));
    }
  }
}
