// What a log search requires of every line it can match, as literals a chunk's gram filter can be
// asked about (repositories/log-grams.ts): a chunk is skipped only when it provably holds no line
// that could match, so the result is exactly the per-line result of reading everything.
//
// The literals are ASCII, lower case, and a line that matches holds each of them as bytes, in
// either case (the filter folds ASCII case). What is safe to require:
// - A substring search requires its text, split wherever a character is not printable ASCII. When
//   it ignores case (String#toLowerCase on both sides) `i` and `k` split too: `İ` lower-cases to
//   `i̇` and the Kelvin sign to `k`, so a line can match them without holding either letter.
// - A regular expression (always the `u` flag) requires the runs of literal characters of its
//   top-level sequence; a group (not optional) adds what it requires, an alternation requires one
//   literal from each branch. An optional part (`?`, `*`, `{0,n}`), a class, `.`, an escape class,
//   a back reference, an assertion or a lookaround ends a run and adds nothing. With the `i` flag,
//   `k` and `s` end a run (under `iu` the Kelvin sign matches `k` and `ſ` matches `s`), every other
//   ASCII letter is taken in lower case. A pattern this parser does not fully understand requires
//   nothing: everything is read.
//
// Tested by property-style cases in log-prefilter.test.ts: for many patterns and lines, a line the
// pattern matches always passes its chunk's filter.
import { GRAM_BYTES, type LiteralRequirement } from '../repositories/log-grams.ts';

/** Alternatives of one clause beyond this are not worth their probes: the clause is dropped. */
const MAX_ALTERNATIVES = 16;

/** The literals a search requires (see the header); `[]` when nothing can be required. */
export function requiredLiterals(query: {
  q: string;
  regex?: boolean;
  caseSensitive?: boolean;
}): LiteralRequirement {
  const caseSensitive = query.caseSensitive ?? false;
  if (!query.regex) {
    const text = caseSensitive ? query.q : query.q.toLowerCase();
    const runs = splitRuns(text, (c) => isPrintableAscii(c) && (caseSensitive || (c !== 'i' && c !== 'k')));
    return keepLong(runs.map((r) => [r.toLowerCase()]));
  }
  try {
    const parser = new PatternParser(query.q, !caseSensitive);
    const clauses = parser.parseAlternation();
    if (parser.pos !== query.q.length) return [];
    return keepLong(clauses);
  } catch {
    return [];
  }
}

/** ASCII upper case to lower case; every other byte as it is (as the gram filter folds). */
const FOLD = new Uint8Array(256).map((_, i) => (i >= 65 && i <= 90 ? i + 32 : i));

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
  const clauses = requirement.map((clause) =>
    clause.map((literal) => {
      const bytes = Buffer.from(literal, 'latin1');
      // A literal without ASCII letters is found as it is; one with letters in the folded body.
      return { bytes, folded: bytes.some((b) => b >= 97 && b <= 122) };
    }),
  );
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
  const literals = requirement[0]!.map((literal) => {
    const bytes = Buffer.from(literal, 'latin1');
    return { bytes, folded: bytes.some((b) => b >= 97 && b <= 122) };
  });
  let scratch = Buffer.alloc(0);
  return (body) => {
    let folded: Buffer | null = null;
    const found: [number, number][] = [];
    for (const l of literals) {
      let hay = body;
      if (l.folded) {
        if (folded === null) {
          if (scratch.length < body.length) scratch = Buffer.allocUnsafe(body.length);
          for (let i = 0; i < body.length; i++) scratch[i] = FOLD[body[i]!]!;
          folded = scratch.subarray(0, body.length);
        }
        hay = folded;
      }
      for (let at = hay.indexOf(l.bytes); at >= 0; at = hay.indexOf(l.bytes, at + 1)) {
        found.push([at, l.bytes.length]);
      }
    }
    if (literals.length > 1) found.sort((a, b) => a[0] - b[0]);
    return { at: found.map((f) => f[0]), length: found.map((f) => f[1]) };
  };
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

/** Clauses whose every literal is long enough for the filter, each literal once. */
function keepLong(clauses: LiteralRequirement): LiteralRequirement {
  const out: LiteralRequirement = [];
  const seen = new Set<string>();
  for (const clause of clauses) {
    if (clause.length === 0 || clause.length > MAX_ALTERNATIVES) continue;
    if (clause.some((l) => Buffer.byteLength(l) < GRAM_BYTES)) continue;
    const key = [...new Set(clause)].sort().join('\u0000');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([...new Set(clause)]);
  }
  return out;
}

class Unsupported extends Error {}

/** A small recursive-descent reader of a JavaScript `u`-mode pattern, for its required literals. */
class PatternParser {
  pos = 0;
  constructor(
    private readonly src: string,
    private readonly ignoreCase: boolean,
  ) {}

  private peek(at = 0): string | undefined {
    return this.src[this.pos + at];
  }

  /** alternation := sequence ('|' sequence)* — stops before ')' or at the end. */
  parseAlternation(): LiteralRequirement {
    const branches = [this.parseSequence()];
    while (this.peek() === '|') {
      this.pos++;
      branches.push(this.parseSequence());
    }
    if (branches.length === 1) return branches[0]!;
    // One of the branches holds: require, from each, its best clause (longest shortest literal).
    const merged: string[] = [];
    for (const clauses of branches) {
      const usable = clauses.filter((c) => c.every((l) => l.length >= GRAM_BYTES));
      if (usable.length === 0) return [];
      const best = usable.reduce((a, b) =>
        Math.min(...b.map((l) => l.length)) > Math.min(...a.map((l) => l.length)) ? b : a,
      );
      merged.push(...best);
    }
    return [merged];
  }

  /** sequence := (atom quantifier?)* */
  private parseSequence(): LiteralRequirement {
    const clauses: LiteralRequirement = [];
    let run = '';
    const end = () => {
      if (run.length > 0) clauses.push([run]);
      run = '';
    };
    while (this.pos < this.src.length && this.peek() !== '|' && this.peek() !== ')') {
      const atom = this.parseAtom();
      const q = this.parseQuantifier();
      if (atom.kind === 'char') {
        if (atom.char === null) {
          end();
          continue;
        }
        if (q === null) {
          run += atom.char;
        } else if (q.min >= 1) {
          // The first repetition continues the run; the last one starts the next.
          run += atom.char;
          end();
          if (q.max !== 1) run = atom.char;
        } else {
          end();
        }
        continue;
      }
      end();
      if (atom.kind === 'group' && (q === null || q.min >= 1)) clauses.push(...atom.clauses);
    }
    end();
    return clauses;
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
  private parseAtom():
    | { kind: 'char'; char: string | null }
    | { kind: 'group'; clauses: LiteralRequirement }
    | { kind: 'other' } {
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
      const clauses = this.parseAlternation();
      if (this.peek() !== ')') throw new Unsupported('unclosed group');
      this.pos++;
      return lookaround ? { kind: 'other' } : { kind: 'group', clauses };
    }
    if (c === '[') {
      this.pos++;
      if (this.peek() === '^') this.pos++;
      while (this.pos < this.src.length && this.peek() !== ']') this.pos += this.peek() === '\\' ? 2 : 1;
      if (this.peek() !== ']') throw new Unsupported('unclosed class');
      this.pos++;
      return { kind: 'other' };
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
    return { kind: 'char', char: this.literal(ch) };
  }

  private parseEscape(): { kind: 'char'; char: string | null } | { kind: 'other' } {
    const e = this.src[this.pos + 1];
    if (e === undefined) throw new Unsupported('trailing backslash');
    this.pos += 2;
    if ('dDwWsSbB'.includes(e)) return { kind: 'other' };
    if ('^$\\.*+?()[]{}|/'.includes(e)) return { kind: 'char', char: this.literal(e) };
    if ('tnvfr0'.includes(e)) {
      if (e === '0' && /\d/.test(this.peek() ?? '')) throw new Unsupported('octal');
      return { kind: 'char', char: null };
    }
    if (e === 'c') {
      this.pos++;
      return { kind: 'char', char: null };
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
      return { kind: 'char', char: this.literal(String.fromCharCode(parseInt(m[0], 16))) };
    }
    if (e === 'u') {
      const braced = /^\{([0-9a-fA-F]+)\}/.exec(this.src.slice(this.pos));
      const plain = /^[0-9a-fA-F]{4}/.exec(this.src.slice(this.pos));
      const m = braced ?? plain;
      if (!m) throw new Unsupported('unicode escape');
      this.pos += m[0].length;
      const cp = parseInt(braced ? braced[1]! : m[0], 16);
      // A surrogate (possibly half of a pair) is no ASCII character.
      return { kind: 'char', char: cp > 0x10ffff ? null : this.literal(String.fromCodePoint(cp)) };
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
