// Terminal colours in process output, rendered safely: a line is parsed into plain-text segments
// with the style its SGR codes (ESC [ … m) asked for — 16, 256 and 24-bit colours, bold, dim,
// italic, underline, inverse, strike — and every other escape sequence (cursor moves, titles,
// OSC links, DCS) and control character is removed. Nothing here produces HTML: the console
// renders each segment as a text node in a span whose class and inline colour come from
// `segmentAttrs`, so `<script>` in the output stays text.
//
// Colours are made readable in both themes: each is adjusted (mixed towards white on the dark
// console, towards black on the light one) until its contrast with what is behind it reaches
// WCAG AA's 4.5:1, and given to the page as CSS custom properties for each theme
// (`--fg-d`/`--fg-l`, `--bg-d`/`--bg-l`). Each line is parsed on its own: a colour left on at the
// end of a line does not carry to the next (lines may be shown out of order, e.g. search hits).

/** A palette index (0-255) or a 24-bit colour. */
export type AnsiColor = number | readonly [number, number, number];

/** What SGR codes set for a run of text. */
export interface AnsiStyle {
  fg?: AnsiColor;
  bg?: AnsiColor;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
  inverse?: boolean;
  strike?: boolean;
}

/** A run of text with one style; `text` never holds an escape or control character (tabs aside). */
export interface AnsiSegment {
  text: string;
  style: AnsiStyle;
}

const ESC = '\u001b';
const BEL = '\u0007';

/** Control characters other than tab, and C1 controls, removed from the text. */
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

/**
 * Parses one line of output into styled segments (adjacent segments of the same style merged).
 * @example parseAnsi('\u001b[1;31mfail\u001b[0m ok') // [{ text: 'fail', style: { bold: true, fg: 1 } }, { text: ' ok', style: {} }]
 */
export function parseAnsi(line: string): AnsiSegment[] {
  const out: AnsiSegment[] = [];
  let style: AnsiStyle = {};
  let text = '';
  const flush = () => {
    const clean = text.replace(CONTROLS, '');
    text = '';
    if (!clean) return;
    const last = out[out.length - 1];
    if (last && sameStyle(last.style, style)) last.text += clean;
    else out.push({ text: clean, style });
  };
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i]!;
    const csi = c === '\u009b' || (c === ESC && line[i + 1] === '[');
    if (csi) {
      // CSI: parameter bytes 0x30-0x3F, intermediate bytes 0x20-0x2F, one final byte 0x40-0x7E.
      let j = i + (c === ESC ? 2 : 1);
      const pStart = j;
      while (j < n && line.charCodeAt(j) >= 0x30 && line.charCodeAt(j) <= 0x3f) j++;
      const params = line.slice(pStart, j);
      const iStart = j;
      while (j < n && line.charCodeAt(j) >= 0x20 && line.charCodeAt(j) <= 0x2f) j++;
      const intermediates = j > iStart;
      const final = j < n && line.charCodeAt(j) >= 0x40 && line.charCodeAt(j) <= 0x7e ? line[j] : undefined;
      // An unfinished sequence (the line ends, or a byte outside the grammar) is dropped up to there.
      i = final === undefined ? j : j + 1;
      if (final === 'm' && !intermediates && /^[\d;:]*$/.test(params)) {
        flush();
        style = applySgr(style, params);
      }
      continue;
    }
    if (c === ESC || c === '\u009d' || c === '\u0090' || c === '\u009e' || c === '\u009f' || c === '\u0098') {
      const kind =
        c === ESC
          ? line[i + 1]
          : { '\u009d': ']', '\u0090': 'P', '\u009e': '^', '\u009f': '_', '\u0098': 'X' }[c];
      let j = i + (c === ESC ? 2 : 1);
      if (kind === ']' || kind === 'P' || kind === '^' || kind === '_' || kind === 'X') {
        // OSC / DCS / PM / APC / SOS: a string up to BEL (OSC) or ST (ESC \ or 0x9c), or the line's end.
        while (j < n) {
          const d = line[j];
          if (d === BEL || d === '\u009c') {
            j++;
            break;
          }
          if (d === ESC && line[j + 1] === '\\') {
            j += 2;
            break;
          }
          j++;
        }
        i = j;
        continue;
      }
      if (c === ESC) {
        // Other escapes: ESC, intermediates 0x20-0x2F, one final byte 0x30-0x7E (ESC 7, ESC ( B, ESC c).
        j = i + 1;
        while (j < n && line.charCodeAt(j) >= 0x20 && line.charCodeAt(j) <= 0x2f) j++;
        if (j < n && line.charCodeAt(j) >= 0x30 && line.charCodeAt(j) <= 0x7e) j++;
        i = j;
        continue;
      }
    }
    text += c;
    i++;
  }
  flush();
  return out;
}

/** The text of a line with every escape sequence and control character removed. */
export function plainText(line: string): string {
  return parseAnsi(line)
    .map((s) => s.text)
    .join('');
}

function sameStyle(a: AnsiStyle, b: AnsiStyle): boolean {
  return (
    sameColor(a.fg, b.fg) &&
    sameColor(a.bg, b.bg) &&
    !a.bold === !b.bold &&
    !a.dim === !b.dim &&
    !a.italic === !b.italic &&
    !a.underline === !b.underline &&
    !a.inverse === !b.inverse &&
    !a.strike === !b.strike
  );
}

function sameColor(a: AnsiColor | undefined, b: AnsiColor | undefined): boolean {
  if (a === undefined || b === undefined || typeof a === 'number' || typeof b === 'number') return a === b;
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

const byte = (v: number | undefined) =>
  v === undefined || !Number.isFinite(v) ? 0 : Math.min(255, Math.max(0, v));

/** A new style: `style` with the SGR parameters `params` ("1;31", "38;5;208", "38:2::255:0:0") applied. */
export function applySgr(style: AnsiStyle, params: string): AnsiStyle {
  const next: AnsiStyle = { ...style };
  const codes = params === '' ? [''] : params.split(';');
  for (let k = 0; k < codes.length; k++) {
    const code = codes[k]!;
    // Colon sub-parameters (ITU T.416): 38:5:n, 38:2:[colourspace]:r:g:b, 4:3 (curly underline).
    const sub = code.split(':');
    const p = sub[0] === '' ? 0 : Number(sub[0]);
    if (p === 38 || p === 48) {
      let color: AnsiColor | undefined;
      if (sub.length > 1) {
        const mode = Number(sub[1]);
        if (mode === 5) color = byte(Number(sub[2]));
        else if (mode === 2) {
          const rgb = sub.length >= 6 ? sub.slice(3, 6) : sub.slice(2, 5);
          color = [byte(Number(rgb[0])), byte(Number(rgb[1])), byte(Number(rgb[2]))];
        }
      } else {
        const mode = Number(codes[k + 1]);
        if (mode === 5) {
          color = byte(Number(codes[k + 2]));
          k += 2;
        } else if (mode === 2) {
          color = [byte(Number(codes[k + 2])), byte(Number(codes[k + 3])), byte(Number(codes[k + 4]))];
          k += 4;
        } else k += 1;
      }
      if (color !== undefined) next[p === 38 ? 'fg' : 'bg'] = color;
      continue;
    }
    if (p === 0) {
      for (const key of Object.keys(next) as (keyof AnsiStyle)[]) delete next[key];
    } else if (p === 1) next.bold = true;
    else if (p === 2) next.dim = true;
    else if (p === 3) next.italic = true;
    else if (p === 4) next.underline = sub[1] !== '0';
    else if (p === 7) next.inverse = true;
    else if (p === 9) next.strike = true;
    else if (p === 21) next.underline = true;
    else if (p === 22) {
      delete next.bold;
      delete next.dim;
    } else if (p === 23) delete next.italic;
    else if (p === 24) delete next.underline;
    else if (p === 27) delete next.inverse;
    else if (p === 29) delete next.strike;
    else if (p >= 30 && p <= 37) next.fg = p - 30;
    else if (p === 39) delete next.fg;
    else if (p >= 40 && p <= 47) next.bg = p - 40;
    else if (p === 49) delete next.bg;
    else if (p >= 90 && p <= 97) next.fg = p - 90 + 8;
    else if (p >= 100 && p <= 107) next.bg = p - 100 + 8;
    if (next.underline === false) delete next.underline;
  }
  return next;
}

// ---- colours for the page ------------------------------------------------------------------

type Rgb = readonly [number, number, number];

/** The two themes' console background and default text (web/src/app.css: --code-bg, --text). */
export const CONSOLE_THEMES = {
  dark: { bg: [0x0a, 0x0d, 0x11] as Rgb, fg: [0xe4, 0xe7, 0xeb] as Rgb },
  light: { bg: [0xf3, 0xf5, 0xf8] as Rgb, fg: [0x17, 0x1a, 0x1f] as Rgb },
} as const;

/** The 16 basic colours (xterm's defaults); adjusted per theme for contrast when drawn. */
const BASIC: readonly Rgb[] = [
  [0, 0, 0],
  [205, 49, 49],
  [13, 188, 121],
  [229, 229, 16],
  [36, 114, 200],
  [188, 63, 188],
  [17, 168, 205],
  [229, 229, 229],
  [102, 102, 102],
  [241, 76, 76],
  [35, 209, 139],
  [245, 245, 67],
  [59, 142, 234],
  [214, 112, 214],
  [41, 184, 219],
  [255, 255, 255],
];

/** A palette index or 24-bit colour as RGB (xterm's 256-colour cube and grey ramp). */
export function toRgb(color: AnsiColor): Rgb {
  if (typeof color !== 'number') return color as Rgb;
  if (color < 16) return BASIC[color]!;
  if (color < 232) {
    const v = color - 16;
    const step = (x: number) => (x === 0 ? 0 : 55 + x * 40);
    return [step(Math.floor(v / 36)), step(Math.floor(v / 6) % 6), step(v % 6)];
  }
  const g = 8 + (color - 232) * 10;
  return [g, g, g];
}

function luminance([r, g, b]: Rgb): number {
  const f = (c: number) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

/** WCAG contrast ratio of two colours (1-21). */
export function contrast(a: Rgb, b: Rgb): number {
  const la = luminance(a);
  const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

const mix = (a: Rgb, b: Rgb, t: number): Rgb => [
  Math.round(a[0] + (b[0] - a[0]) * t),
  Math.round(a[1] + (b[1] - a[1]) * t),
  Math.round(a[2] + (b[2] - a[2]) * t),
];

/** `fg` moved towards black or white (whichever contrasts more with `bg`) until it reaches `min` on `bg`. */
export function readable(fg: Rgb, bg: Rgb, min = 4.5): Rgb {
  if (contrast(fg, bg) >= min) return fg;
  const toward: Rgb = contrast([255, 255, 255], bg) >= contrast([0, 0, 0], bg) ? [255, 255, 255] : [0, 0, 0];
  for (let t = 0.05; t < 1; t += 0.05) {
    const c = mix(fg, toward, t);
    if (contrast(c, bg) >= min) return c;
  }
  return toward;
}

const hex = ([r, g, b]: Rgb) => `#${((1 << 24) | (r << 16) | (g << 8) | b).toString(16).slice(1)}`;

/** The colours one segment is drawn with in one theme (null: the console's own). */
function themed(style: AnsiStyle, theme: keyof typeof CONSOLE_THEMES): { fg: Rgb; bg: Rgb | null } | null {
  if (style.fg === undefined && style.bg === undefined && !style.inverse && !style.dim) return null;
  const base = CONSOLE_THEMES[theme];
  let fg = style.fg === undefined ? base.fg : toRgb(style.fg);
  let bg: Rgb | null = style.bg === undefined ? null : toRgb(style.bg);
  if (style.inverse) [fg, bg] = [bg ?? base.bg, fg];
  if (style.dim) fg = mix(fg, bg ?? base.bg, 0.3);
  return { fg: readable(fg, bg ?? base.bg), bg };
}

/**
 * The class list and inline style (CSS custom properties only) of a segment's span. Classes name
 * what the codes asked for (`ansi-fg-1`, `ansi-fg-256`, `ansi-fg-rgb`, `ansi-bg-4`, `ansi-bold`,
 * …); `ansi-color` / `ansi-bgc` mark spans whose colour comes from the `--fg-d`/`--fg-l`
 * (`--bg-d`/`--bg-l`) properties for the dark and light themes.
 */
export function segmentAttrs(style: AnsiStyle): { class: string; style: string } {
  const classes: string[] = [];
  const kind = (c: AnsiColor) => (typeof c !== 'number' ? 'rgb' : c < 16 ? String(c) : '256');
  if (style.fg !== undefined) classes.push(`ansi-fg-${kind(style.fg)}`);
  if (style.bg !== undefined) classes.push(`ansi-bg-${kind(style.bg)}`);
  for (const flag of ['bold', 'dim', 'italic', 'underline', 'inverse', 'strike'] as const)
    if (style[flag]) classes.push(`ansi-${flag}`);
  const dark = themed(style, 'dark');
  const light = themed(style, 'light');
  const props: string[] = [];
  if (dark && light) {
    classes.push('ansi-color');
    props.push(`--fg-d:${hex(dark.fg)}`, `--fg-l:${hex(light.fg)}`);
    if (dark.bg && light.bg) {
      classes.push('ansi-bgc');
      props.push(`--bg-d:${hex(dark.bg)}`, `--bg-l:${hex(light.bg)}`);
    }
  }
  return { class: classes.join(' '), style: props.join(';') };
}

/** A segment cut by search hits: `hit` parts are drawn highlighted. */
export interface HighlightedSegment extends AnsiSegment {
  hit: boolean;
}

/**
 * Cuts segments where `needle` occurs in their joined text (case-sensitive, as the logs API's
 * `contains`), so the hits can be drawn as <mark> across colour changes.
 */
export function highlight(segments: AnsiSegment[], needle: string): HighlightedSegment[] {
  if (!needle) return segments.map((s) => ({ ...s, hit: false }));
  const whole = segments.map((s) => s.text).join('');
  const ranges: [number, number][] = [];
  for (let at = whole.indexOf(needle); at >= 0; at = whole.indexOf(needle, at + needle.length))
    ranges.push([at, at + needle.length]);
  if (ranges.length === 0) return segments.map((s) => ({ ...s, hit: false }));
  const out: HighlightedSegment[] = [];
  let offset = 0;
  for (const s of segments) {
    const start = offset;
    const end = offset + s.text.length;
    offset = end;
    // Cut points inside this segment.
    const cuts = new Set<number>([start, end]);
    for (const [a, b] of ranges) {
      if (a > start && a < end) cuts.add(a);
      if (b > start && b < end) cuts.add(b);
    }
    const points = [...cuts].sort((x, y) => x - y);
    for (let k = 0; k + 1 < points.length; k++) {
      const a = points[k]!;
      const b = points[k + 1]!;
      const hit = ranges.some(([x, y]) => a >= x && b <= y);
      out.push({ text: s.text.slice(a - start, b - start), style: s.style, hit });
    }
  }
  return out;
}
