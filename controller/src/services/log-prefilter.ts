// What a log search requires of every line it can match, as literals a chunk's gram filter can be
// asked about (repositories/log-grams.ts): a chunk is skipped only when it provably holds no line
// that could match, so the result is exactly the per-line result of reading everything.
//
// The literals are printable ASCII in lower case, and a line that matches holds one literal of each
// clause as bytes, in either case (the filter and the byte checks fold ASCII case, so a
// case-sensitive search requires its text folded too). What is safe to require:
// - A substring search requires its text, split wherever a character is not printable ASCII. When
//   it ignores case (String#toLowerCase on both sides) `i` and `k` split too: `İ` lower-cases to
//   `i̇` and the Kelvin sign to `k`, so a line can match them without holding either letter.
// - A regular expression (always the `u` flag) requires the runs of its top-level sequence. A run
//   is a small set of strings (at most MAX_ALTERNATIVES; a line holds one of them) built from what
//   matches one of a few known strings: a literal character, a class of at most MAX_CLASS
//   printable ASCII characters (`[Ee]rror` requires `error`; `HTTP/1\.[01] 500`, `http/1.0 500`
//   or `http/1.1 500`), and a group whose every branch is such (`(ab|cd)e`: `abe` or `cde`). A
//   repetition `x{min,max}` with min >= 1 continues the run with min copies of x (`9{5}` is
//   `99999`); when max differs (`+`, `{2,4}`) the run ends there and the next starts with min
//   copies (`a{2,4}b` requires `aab`).
//   When the set would grow past its bound, the run ends and the next starts with the new part. A
//   group that is not a fixed set (and not optional) adds what it requires; an alternation requires
//   one literal from each branch. An optional part (`?`, `*`, `{0,n}`), a larger or negated class,
//   `.`, an escape class, a back reference, an assertion or a lookaround ends a run and adds
//   nothing. With the `i` flag, `k` and `s` end a run (under `iu` the Kelvin sign matches `k` and
//   `ſ` matches `s`), every other ASCII letter is taken in lower case. A pattern this parser does not
//   fully understand requires nothing: everything is read.
//
// Tested by property-style cases in log-prefilter.test.ts: for many patterns and lines, a line the
// pattern matches always passes its chunk's filter.
import { GRAM_BYTES, type LiteralRequirement } from '../repositories/log-grams.ts';

/** Alternatives of one clause beyond this are not worth their probes: the clause is dropped. */
const MAX_ALTERNATIVES = 16;

/**
 * The literals a search requires (see the header); `[]` when nothing can be required. Each literal
 * has at least `minBytes` bytes: the gram filter's GRAM_BYTES by default; shorter ones serve the
 * line byte check (lineLiterals).
 */
export function requiredLiterals(
  query: {
    q: string;
    regex?: boolean;
    caseSensitive?: boolean;
  },
  minBytes = GRAM_BYTES,
): LiteralRequirement {
  const caseSensitive = query.caseSensitive ?? false;
  if (!query.regex) {
    const text = caseSensitive ? query.q : query.q.toLowerCase();
    const runs = splitRuns(text, (c) => isPrintableAscii(c) && (caseSensitive || (c !== 'i' && c !== 'k')));
    return keepLong(
      runs.map((r) => [r.toLowerCase()]),
      minBytes,
    );
  }
  try {
    const parser = new PatternParser(query.q, !caseSensitive, minBytes);
    const { clauses } = parser.parseAlternation();
    if (parser.pos !== query.q.length) return [];
    return keepLong(clauses, minBytes);
  } catch {
    return [];
  }
}

/** ASCII upper case to lower case; every other byte as it is (as the gram filter folds). */
const FOLD = new Uint8Array(256).map((_, i) => (i >= 65 && i <= 90 ? i + 32 : i));

/**
 * A literal's bytes in lower case, and whether it has ASCII letters: one without is found in the
 * body as it is, one with in the folded body (so its own upper case must be folded too: a
 * case-sensitive `Connection Refused` is looked for as `connection refused`).
 */
function foldedLiteral(literal: string): { bytes: Buffer; folded: boolean } {
  const bytes = Buffer.from(literal, 'utf8');
  for (let i = 0; i < bytes.length; i++) bytes[i] = FOLD[bytes[i]!]!;
  return { bytes, folded: bytes.some((b) => b >= 97 && b <= 122) };
}

/**
 * The same requirement checked on a decoded chunk body, after its gram filter let it through: a
 * chunk whose bytes hold none of a clause's literals (in any ASCII case) holds no line that can
 * match, so it need not be scanned — the filter's false positives, and chunks that hold every
 * gram of a literal but not the literal, cost one byte search instead of a scan (as grep skips by
 * a pattern's literal before running it). The body holds record headers and process names too;
 * a literal found there only means the chunk is scanned. Null when nothing is required.
 */
export function bodyCheck(requirement: LiteralRequirement): ((body: Buffer) => boolean) | null {
  if (requirement.length === 0) return null;
  const clauses = requirement.map((clause) => clause.map(foldedLiteral));
  let scratch = Buffer.alloc(0);
  return (body) => {
    let folded: Buffer | null = null;
    for (const clause of clauses) {
      let held = false;
      for (const l of clause) {
        if (l.folded) {
          if (folded === null) {
            if (scratch.length < body.length) scratch = Buffer.allocUnsafe(body.length);
            for (let i = 0; i < body.length; i++) scratch[i] = FOLD[body[i]!]!;
            folded = scratch.subarray(0, body.length);
          }
          held = folded.includes(l.bytes);
        } else held = body.includes(l.bytes);
        if (held) break;
      }
      if (!held) return false;
    }
    return true;
  };
}

/**
 * Where the first clause's literals occur in a decoded chunk body (in any ASCII case): sorted
 * start offsets and each one's length, every occurrence, overlapping ones too (one may start in
 * a record header and another, the line's, one byte later). A line that holds no whole
 * occurrence cannot match, so a search scans only the lines that do. Null when nothing is
 * required.
 */
export function literalHits(
  requirement: LiteralRequirement,
): ((body: Buffer) => { at: number[]; length: number[] }) | null {
  if (requirement.length === 0) return null;
  const literals = requirement[0]!.map(foldedLiteral);
  const bytes = literals.map((l) => l.bytes);
  // A literal without letters is found at the same places in the folded body as in the body.
  const fold = literals.some((l) => l.folded);
  let scratch = Buffer.alloc(0);
  return (body) => {
    let hay = body;
    if (fold) {
      if (scratch.length < body.length) scratch = Buffer.allocUnsafe(body.length);
      for (let i = 0; i < body.length; i++) scratch[i] = FOLD[body[i]!]!;
      hay = scratch.subarray(0, body.length);
    }
    return occurrences(hay, bytes)!;
  };
}

/**
 * Every occurrence of each of `literals` in `hay`, overlapping ones too: sorted start offsets and
 * each one's length (at one offset, in the literals' order); null once there are more than `max`.
 * Self-contained, no closures: the search workers run its source (log-search.ts).
 */
export function occurrences(
  hay: Buffer,
  literals: Buffer[],
  max = Infinity,
): { at: number[]; length: number[] } | null {
  let at: number[] = [];
  let length: number[] = [];
  for (const l of literals) {
    // Merged with what the literals before found (each list is in order: indexOf goes forward).
    const mergedAt: number[] = [];
    const mergedLength: number[] = [];
    let k = 0;
    for (let i = hay.indexOf(l); i >= 0; i = hay.indexOf(l, i + 1)) {
      if (at.length + mergedAt.length - k >= max) return null;
      while (k < at.length && at[k]! <= i) {
        mergedAt.push(at[k]!);
        mergedLength.push(length[k++]!);
      }
      mergedAt.push(i);
      mergedLength.push(l.length);
    }
    while (k < at.length) {
      mergedAt.push(at[k]!);
      mergedLength.push(length[k++]!);
    }
    at = mergedAt;
    length = mergedLength;
  }
  return { at, length };
}

/** The shortest literal the line byte check looks for: one byte would be most lines' bytes. */
const LINE_LITERAL_MIN_BYTES = 2;

/**
 * For a search the gram filter cannot narrow (no literal of GRAM_BYTES), the clause whose literals
 * the search workers look for in the decoded records before matching (log-search.ts): a line that
 * holds none of them cannot match, so it is never made a string nor run through the pattern. Only
 * literals without ASCII letters (digits, punctuation, spaces: a status code, a port, `99.999`),
 * which are the same bytes in any case, so the decoded bytes are searched as they are; of those
 * clauses the one whose shortest literal is longest. Null when there is none.
 * @example lineLiterals({ q: '^n [0-9]*99.999 ', regex: true }) // [Buffer '999 ']
 */
export function lineLiterals(query: {
  q: string;
  regex?: boolean;
  caseSensitive?: boolean;
}): Buffer[] | null {
  let best: string[] | null = null;
  const shortest = (c: string[]) => Math.min(...c.map((l) => Buffer.byteLength(l)));
  for (const clause of requiredLiterals(query, LINE_LITERAL_MIN_BYTES)) {
    if (clause.some((l) => /[a-z]/.test(l))) continue;
    if (best === null || shortest(clause) > shortest(best)) best = clause;
  }
  return best && best.map((l) => Buffer.from(l, 'utf8'));
}

function isPrintableAscii(c: string): boolean {
  const code = c.charCodeAt(0);
  return c.length === 1 && code >= 0x20 && code <= 0x7e;
}

function splitRuns(text: string, keep: (c: string) => boolean): string[] {
  const runs: string[] = [];
  let run = '';
  for (const c of text) {
    if (keep(c)) run += c;
    else {
      runs.push(run);
      run = '';
    }
  }
  runs.push(run);
  return runs;
}

/** Clauses whose every literal has at least `minBytes` bytes, each literal once. */
function keepLong(clauses: LiteralRequirement, minBytes: number): LiteralRequirement {
  const out: LiteralRequirement = [];
  const seen = new Set<string>();
  for (const raw of clauses) {
    // The filter and the byte checks fold ASCII case: so do the literals.
    const clause = raw.map((l) => l.replace(/[A-Z]+/g, (u) => u.toLowerCase()));
    if (clause.length === 0 || clause.length > MAX_ALTERNATIVES) continue;
    if (clause.some((l) => Buffer.byteLength(l) < minBytes)) continue;
    const key = [...new Set(clause)].sort().join('\u0000');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([...new Set(clause)]);
  }
  // A clause another one implies (each of whose literals holds one of it: `abcabc` and `abcabcd`)
  // costs probes for nothing.
  const implies = (d: string[], c: string[]) => d.every((l) => c.some((m) => l.includes(m)));
  return out.filter((c, i) => !out.some((d, j) => j !== i && implies(d, c) && (j < i || !implies(c, d))));
}

class Unsupported extends Error {}

/** A class expands into its characters when it has at most this many (after folding ASCII case). */
const MAX_CLASS = 8;
/** Copies of a counted repetition spelled out (`x{1000}` requires 64 x's, which is plenty). */
const MAX_REPEAT = 64;
/** Longest literal built (a literal's grams are probed at most 4, spread over it). */
const MAX_LITERAL = 64;

/** What one part of a pattern matches, for the literals around it. */
type Piece =
  /** Exactly one of these strings (a literal character, a small class, a fixed group). */
  | { kind: 'set'; set: string[] }
  /** Text of unknown shape that requires these clauses (a group that is not a fixed set). */
  | { kind: 'group'; clauses: LiteralRequirement }
  /** Anything else (`.`, a large class, an anchor, a lookaround, a back reference). */
  | { kind: 'other' };

/** What a sequence or an alternation requires, and the strings it matches when they are few. */
interface Parsed {
  clauses: LiteralRequirement;
  /** Every string it can match (at most MAX_ALTERNATIVES, each at most MAX_LITERAL), or null. */
  exact: string[] | null;
}

/** Each string of `a` followed by each of `b`, once; null past the bounds. */
function concat(a: readonly string[], b: readonly string[]): string[] | null {
  if (a.length * b.length > MAX_ALTERNATIVES) return null;
  const out = new Set<string>();
  for (const x of a) for (const y of b) out.add(x + y);
  const list = [...out];
  return list.some((l) => l.length > MAX_LITERAL) ? null : list;
}

/** A small recursive-descent reader of a JavaScript `u`-mode pattern, for its required literals. */
class PatternParser {
  pos = 0;
  constructor(
    private readonly src: string,
    private readonly ignoreCase: boolean,
    /** The shortest literal a branch of an alternation may be required by (requiredLiterals). */
    private readonly minBytes = GRAM_BYTES,
  ) {}

  private peek(at = 0): string | undefined {
    return this.src[this.pos + at];
  }

  /** alternation := sequence ('|' sequence)* — stops before ')' or at the end. */
  parseAlternation(): Parsed {
    const branches = [this.parseSequence()];
    while (this.peek() === '|') {
      this.pos++;
      branches.push(this.parseSequence());
    }
    if (branches.length === 1) return branches[0]!;
    let exact: string[] | null = [];
    for (const b of branches) exact = exact && b.exact ? [...new Set([...exact, ...b.exact])] : null;
    if (exact && exact.length > MAX_ALTERNATIVES) exact = null;
    // One of the branches holds: require, from each, its best clause (longest shortest literal,
    // then fewest alternatives); if that makes too many alternatives, the fewest from each.
    const usable = branches.map((b) => b.clauses.filter((c) => c.every((l) => l.length >= this.minBytes)));
    if (usable.some((u) => u.length === 0)) return { clauses: [], exact };
    const shortest = (c: string[]) => Math.min(...c.map((l) => l.length));
    const byLength = (a: string[], b: string[]) => shortest(b) - shortest(a) || a.length - b.length;
    const byCount = (a: string[], b: string[]) => a.length - b.length || shortest(b) - shortest(a);
    let merged: string[] = [];
    for (const order of [byLength, byCount]) {
      merged = [...new Set(usable.flatMap((u) => [...u].sort(order)[0]!))];
      if (merged.length <= MAX_ALTERNATIVES) break;
    }
    return { clauses: [merged], exact };
  }

  /** sequence := (atom quantifier?)* */
  private parseSequence(): Parsed {
    const clauses: LiteralRequirement = [];
    // The strings one of which the text matched so far ends with (null: nothing known).
    let run: string[] | null = null;
    const end = () => {
      if (run !== null) clauses.push(run);
      run = null;
    };
    /** The text goes on with one of `set`: the run grows, or starts again when it would be too big. */
    const append = (set: string[]) => {
      const grown = concat(run ?? [''], set);
      if (grown === null) {
        end();
        run = set;
      } else run = grown;
    };
    let exact: string[] | null = [''];
    while (this.pos < this.src.length && this.peek() !== '|' && this.peek() !== ')') {
      const piece = this.parseAtom();
      const q = this.parseQuantifier();
      if (piece.kind !== 'set') {
        exact = null;
        end();
        if (piece.kind === 'group' && (q === null || q.min >= 1)) clauses.push(...piece.clauses);
        continue;
      }
      const { set } = piece;
      if (q === null) {
        append(set);
        exact = exact && concat(exact, set);
        continue;
      }
      if (exact !== null) {
        if (q.min !== q.max || q.min > MAX_REPEAT) exact = null;
        for (let j = 0; j < q.min && exact !== null; j++) exact = concat(exact, set);
      }
      if (q.min === 0) {
        end();
        continue;
      }
      // x{min,max}: min copies continue the run; the last min copies (however many there were)
      // start the next one.
      const copies = Math.min(q.min, MAX_REPEAT);
      for (let j = 0; j < copies; j++) append(set);
      if (q.max !== q.min || q.min > copies) {
        end();
        for (let j = 0; j < copies; j++) append(set);
      }
    }
    end();
    return { clauses, exact };
  }

  private parseQuantifier(): { min: number; max: number } | null {
    const c = this.peek();
    let q: { min: number; max: number } | null = null;
    if (c === '*') q = { min: 0, max: Infinity };
    else if (c === '+') q = { min: 1, max: Infinity };
    else if (c === '?') q = { min: 0, max: 1 };
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
      if (!m) throw new Unsupported('brace');
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      this.pos += m[0].length - 1;
      q = { min, max };
    }
    if (q === null) return null;
    this.pos++;
    if (this.peek() === '?') this.pos++; // lazy
    return q;
  }

  /**
   * One atom: a literal character (`char` null when it is not one the filter can use), a group
   * (what it requires), or anything else (`other`: class, dot, assertion, back reference).
   */
  private parseAtom(): Piece {
    const c = this.src[this.pos]!;
    if (c === '(') {
      this.pos++;
      let lookaround = false;
      if (this.peek() === '?') {
        const rest = this.src.slice(this.pos + 1);
        if (rest.startsWith(':')) this.pos += 2;
        else if (rest.startsWith('=') || rest.startsWith('!')) {
          this.pos += 2;
          lookaround = true;
        } else if (rest.startsWith('<=') || rest.startsWith('<!')) {
          this.pos += 3;
          lookaround = true;
        } else if (rest.startsWith('<')) {
          const close = rest.indexOf('>');
          if (close < 0) throw new Unsupported('group name');
          this.pos += close + 2;
        } else throw new Unsupported('group'); // e.g. modifiers (?i:...)
      }
      const inner = this.parseAlternation();
      if (this.peek() !== ')') throw new Unsupported('unclosed group');
      this.pos++;
      if (lookaround) return { kind: 'other' };
      return inner.exact ? { kind: 'set', set: inner.exact } : { kind: 'group', clauses: inner.clauses };
    }
    if (c === '[') {
      this.pos++;
      const negated = this.peek() === '^';
      if (negated) this.pos++;
      const from = this.pos;
      while (this.pos < this.src.length && this.peek() !== ']') this.pos += this.peek() === '\\' ? 2 : 1;
      if (this.peek() !== ']') throw new Unsupported('unclosed class');
      this.pos++;
      const set = negated ? null : this.classSet(this.src.slice(from, this.pos - 1));
      return set ? { kind: 'set', set } : { kind: 'other' };
    }
    if (c === '.' || c === '^' || c === '$') {
      this.pos++;
      return { kind: 'other' };
    }
    if (c === '\\') return this.parseEscape();
    if (
      c === ')' ||
      c === '|' ||
      c === '*' ||
      c === '+' ||
      c === '?' ||
      c === '{' ||
      c === '}' ||
      c === ']'
    ) {
      throw new Unsupported('syntax');
    }
    const cp = this.src.codePointAt(this.pos)!;
    const ch = String.fromCodePoint(cp);
    this.pos += ch.length;
    return this.char(this.literal(ch));
  }

  /** A literal character as a piece: one string, or `other` when the filter cannot use it. */
  private char(ch: string | null): Piece {
    return ch === null ? { kind: 'other' } : { kind: 'set', set: [ch] };
  }

  /**
   * The characters of a class (its text between `[` and `]`, not negated) in lower case, when
   * they are at most MAX_CLASS printable ASCII characters the filter can use (with the `i` flag no
   * `k` or `s`: the Kelvin sign and `ſ` match them); else null. Members are plain characters,
   * syntax characters escaped, and ranges between them; anything else (`\d`, `\p{…}`, `\b`, which
   * is a backspace here) makes it null. The result is checked against the class itself over every
   * ASCII character, so a misreading gives null, never a wrong set.
   */
  private classSet(text: string): string[] | null {
    const members = new Set<string>();
    let i = 0;
    const atom = (): string | null => {
      const c = text[i];
      if (c === undefined) return null;
      if (c !== '\\') {
        i++;
        return c;
      }
      const e = text[i + 1];
      i += 2;
      return e !== undefined && '^$\\.*+?()[]{}|/-'.includes(e) ? e : null;
    };
    while (i < text.length) {
      const a = atom();
      if (a === null) return null;
      if (text[i] === '-' && i + 1 < text.length) {
        i++;
        const b = atom();
        if (b === null) return null;
        const lo = a.charCodeAt(0);
        const hi = b.charCodeAt(0);
        if (hi < lo || hi - lo >= MAX_CLASS) return null;
        for (let code = lo; code <= hi; code++) members.add(String.fromCharCode(code));
      } else members.add(a);
      if (members.size > MAX_CLASS * 2) return null;
    }
    const set = new Set<string>();
    for (const m of members) {
      const l = this.literal(m);
      if (l === null) return null;
      set.add(l.toLowerCase());
    }
    if (set.size === 0 || set.size > MAX_CLASS) return null;
    // What the class matches, by the engine: exactly the members (in either case with `i`), and
    // neither of the two non-ASCII characters that fold to ASCII letters.
    let re: RegExp;
    try {
      re = new RegExp(`^[${text}]$`, this.ignoreCase ? 'iu' : 'u');
    } catch {
      return null;
    }
    for (let code = 0; code < 128; code++) {
      const c = String.fromCharCode(code);
      const member = this.ignoreCase ? set.has(c.toLowerCase()) : members.has(c);
      if (re.test(c) !== member) return null;
    }
    if (re.test('\u212a') || re.test('\u017f')) return null;
    return [...set];
  }

  private parseEscape(): Piece {
    const e = this.src[this.pos + 1];
    if (e === undefined) throw new Unsupported('trailing backslash');
    this.pos += 2;
    if ('dDwWsSbB'.includes(e)) return { kind: 'other' };
    if ('^$\\.*+?()[]{}|/'.includes(e)) return this.char(this.literal(e));
    if ('tnvfr0'.includes(e)) {
      if (e === '0' && /\d/.test(this.peek() ?? '')) throw new Unsupported('octal');
      return this.char(null);
    }
    if (e === 'c') {
      this.pos++;
      return this.char(null);
    }
    if (/[1-9]/.test(e)) {
      while (/\d/.test(this.peek() ?? '')) this.pos++;
      return { kind: 'other' };
    }
    if (e === 'k') {
      const close = this.src.indexOf('>', this.pos);
      if (this.peek() !== '<' || close < 0) throw new Unsupported('named reference');
      this.pos = close + 1;
      return { kind: 'other' };
    }
    if (e === 'p' || e === 'P') {
      const close = this.src.indexOf('}', this.pos);
      if (this.peek() !== '{' || close < 0) throw new Unsupported('property');
      this.pos = close + 1;
      return { kind: 'other' };
    }
    if (e === 'x') {
      const m = /^[0-9a-fA-F]{2}/.exec(this.src.slice(this.pos));
      if (!m) throw new Unsupported('hex escape');
      this.pos += 2;
      return this.char(this.literal(String.fromCharCode(parseInt(m[0], 16))));
    }
    if (e === 'u') {
      const braced = /^\{([0-9a-fA-F]+)\}/.exec(this.src.slice(this.pos));
      const plain = /^[0-9a-fA-F]{4}/.exec(this.src.slice(this.pos));
      const m = braced ?? plain;
      if (!m) throw new Unsupported('unicode escape');
      this.pos += m[0].length;
      const cp = parseInt(braced ? braced[1]! : m[0], 16);
      // A surrogate (possibly half of a pair) is no ASCII character.
      return this.char(cp > 0x10ffff ? null : this.literal(String.fromCodePoint(cp)));
    }
    throw new Unsupported('escape');
  }

  /** The character as the filter sees it, or null when it cannot be required as one byte. */
  private literal(ch: string): string | null {
    if (!isPrintableAscii(ch)) return null;
    if (!this.ignoreCase) return ch;
    const lower = ch.toLowerCase();
    if (lower === 'k' || lower === 's') return null;
    return lower;
  }
}
