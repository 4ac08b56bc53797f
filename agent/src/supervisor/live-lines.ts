// The live output channel's messages, built per read rather than per line: each line becomes
// `{"s":"out","t":<ms>,"l":"<text>"}` and a newline, exactly what
// `JSON.stringify({ s, t, l: line.toString('utf8') })` gives, written straight into one buffer for
// the whole read. No Buffer, string or object per line: a line of printable ASCII (the common
// case) is checked and copied four bytes at a time; `"`, `\` and control bytes are escaped as
// JSON.stringify escapes them; a line with any byte over 0x7f (UTF-8, or invalid bytes that
// toString replaces with U+FFFD) goes through toString and JSON.stringify, so it is the same text.
// Building a string per line this way cost ~20 % of the agent's CPU while a live view was open
// (docs/benchmarks.md, logs).

/** JSON.stringify's escape of each control byte (0x00-0x1f). */
const CONTROL = Array.from({ length: 32 }, (_, b) =>
  Buffer.from(JSON.stringify(String.fromCharCode(b)).slice(1, -1)),
);

/** Encodes lines into one buffer as the live channel's JSON lines. */
export class LiveLines {
  #buf: Buffer;
  #view: DataView;
  #off = 0;
  /** `{"s":"<s>","t":<t>,"l":"` for the current read. */
  #prefix: Buffer = Buffer.alloc(0);
  /** Lines added since the last `take`. */
  count = 0;

  constructor(bytes = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(bytes);
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.length);
  }

  /** Sets the stream and time of the lines added next (one time per read, as they were read together). */
  begin(s: string, t: number): void {
    const p = JSON.stringify({ s, t, l: '' });
    this.#prefix = Buffer.from(p.slice(0, -2)); // without the empty string's closing quote and brace
  }

  #reserve(bytes: number): void {
    if (this.#off + bytes <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#off + bytes));
    this.#buf.copy(grown, 0, 0, this.#off);
    this.#buf = grown;
    this.#view = new DataView(grown.buffer, grown.byteOffset, grown.length);
  }

  /** Adds the line `src[start, end)` (its bytes as they are: no newline). */
  add(src: Buffer, start: number, end: number): void {
    const len = end - start;
    const prefix = this.#prefix;
    // At most 6 bytes per byte (\u00XX), the prefix and `"}\n`.
    this.#reserve(prefix.length + len * 6 + 3);
    const buf = this.#buf;
    const ov = this.#view;
    const lineAt = this.#off;
    prefix.copy(buf, lineAt);
    let o = lineAt + prefix.length;
    const sv = new DataView(src.buffer, src.byteOffset, src.length);
    let i = start;
    for (;;) {
      // Words of printable ASCII other than `"` and `\` (no byte under 0x20 or over 0x7f, none
      // equal to 0x22 or 0x5c: the "has a byte less than" test on the word and on its XORs).
      while (i + 4 <= end) {
        const w = sv.getUint32(i, true);
        const q = w ^ 0x22222222;
        const b = w ^ 0x5c5c5c5c;
        if ((((w - 0x20202020) & ~w) | w | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b)) & 0x80808080)
          break;
        ov.setUint32(o, w, true);
        i += 4;
        o += 4;
      }
      if (i >= end) break;
      // The word that needs a look, byte by byte (then back to words).
      const stop = i + 4 < end ? i + 4 : end;
      for (; i < stop; i++) {
        const c = src[i]!;
        if (c >= 0x80) {
          // UTF-8 or not: the same text as toString and JSON.stringify give.
          const text = JSON.stringify(src.toString('utf8', start, end));
          this.#off = lineAt;
          this.#reserve(prefix.length + Buffer.byteLength(text) + 2);
          const again = this.#buf;
          prefix.copy(again, lineAt);
          let at = lineAt + prefix.length - 1; // over the prefix's opening quote
          at += again.write(text, at, 'utf8');
          again[at++] = 0x7d; // }
          again[at++] = 0x0a;
          this.#off = at;
          this.count++;
          return;
        }
        if (c === 0x22 || c === 0x5c) {
          buf[o++] = 0x5c;
          buf[o++] = c;
        } else if (c < 0x20) {
          const e = CONTROL[c]!;
          e.copy(buf, o);
          o += e.length;
        } else buf[o++] = c;
      }
    }
    buf[o++] = 0x22; // "
    buf[o++] = 0x7d; // }
    buf[o++] = 0x0a;
    this.#off = o;
    this.count++;
  }

  /** Bytes encoded since the last take, as a buffer of their own (the port keeps it queued). */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.#off);
    this.#buf.copy(out, 0, 0, this.#off);
    this.#off = 0;
    this.count = 0;
    return out;
  }
}
