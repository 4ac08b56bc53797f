// Proves the console's ANSI parser: SGR colours (16, 256, 24-bit, colon forms), bold/underline and
// resets become styled segments; every other escape sequence and control character is removed;
// markup in output is plain text; colours keep WCAG AA contrast on both themes' console background.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applySgr,
  CONSOLE_THEMES,
  contrast,
  highlight,
  parseAnsi,
  plainText,
  segmentAttrs,
  toRgb,
} from './ansi.ts';

const E = '\u001b';

test('SGR codes become styled segments; reset and partial resets end them', () => {
  assert.deepEqual(parseAnsi(`${E}[1;31mfail${E}[0m ok`), [
    { text: 'fail', style: { bold: true, fg: 1 } },
    { text: ' ok', style: {} },
  ]);
  assert.deepEqual(parseAnsi(`${E}[4munder${E}[24m plain${E}[m`), [
    { text: 'under', style: { underline: true } },
    { text: ' plain', style: {} },
  ]);
  assert.deepEqual(parseAnsi(`${E}[92mbright${E}[39m${E}[104mbg`), [
    { text: 'bright', style: { fg: 10 } },
    { text: 'bg', style: { bg: 12 } },
  ]);
  // Same style twice in a row is one segment.
  assert.deepEqual(parseAnsi(`${E}[31ma${E}[31mb`), [{ text: 'ab', style: { fg: 1 } }]);
});

test('256-colour and truecolour, with semicolons and with colons', () => {
  assert.deepEqual(parseAnsi(`${E}[38;5;208morange`)[0]!.style, { fg: 208 });
  assert.deepEqual(parseAnsi(`${E}[48;5;22mx`)[0]!.style, { bg: 22 });
  assert.deepEqual(parseAnsi(`${E}[38;2;255;100;0mx`)[0]!.style, { fg: [255, 100, 0] });
  assert.deepEqual(parseAnsi(`${E}[38:2::1:2:3mx`)[0]!.style, { fg: [1, 2, 3] });
  assert.deepEqual(parseAnsi(`${E}[38:2:4:5:6mx`)[0]!.style, { fg: [4, 5, 6] });
  assert.deepEqual(parseAnsi(`${E}[38:5:99mx`)[0]!.style, { fg: 99 });
  // Out-of-range values are clamped, codes after an extended colour still apply.
  assert.deepEqual(applySgr({}, '38;2;999;-1;7;1'), { fg: [255, 0, 7], bold: true });
  assert.deepEqual(toRgb(16), [0, 0, 0]);
  assert.deepEqual(toRgb(231), [255, 255, 255]);
  assert.deepEqual(toRgb(196), [255, 0, 0]);
  assert.deepEqual(toRgb(244), [128, 128, 128]);
});

test('other escape sequences and control characters are removed, text kept', () => {
  const junk =
    `a${E}[2J${E}[1;1H` + // clear screen, cursor home
    `b${E}]0;window title${'\u0007'}` + // OSC title (BEL)
    `c${E}]8;;http://evil.example${E}\\link${E}]8;;${E}\\` + // OSC 8 hyperlink (ST)
    `d${E}P1$r0m${E}\\` + // DCS
    `e${E}7${E}(B${E}c` + // save cursor, charset, reset
    `f\u009b31mg\u0000\u0008\u007f\rh\u009d2;t\u0007i${E}[?25l${E}[31;1`; // C1 CSI/OSC, controls, unfinished CSI
  assert.equal(plainText(junk), 'abclinkdefghi');
  // The C1 CSI is a real SGR: g is red.
  assert.deepEqual(
    parseAnsi(`\u009b31mg`).map((s) => s.style),
    [{ fg: 1 }],
  );
  assert.equal(plainText(`tab\tkept`), 'tab\tkept');
  assert.equal(plainText(`${E}`), '');
  assert.equal(plainText(`x${E}`), 'x');
});

test('markup in output stays inert text in the segments', () => {
  const line = `<img src=x onerror=alert(1)> ${E}[31m<script>alert(2)</script>${E}[0m ${E}]0;<b>t</b>${'\u0007'}&amp;`;
  const segments = parseAnsi(line);
  assert.equal(
    segments.map((s) => s.text).join(''),
    '<img src=x onerror=alert(1)> <script>alert(2)</script> &amp;',
  );
  assert.deepEqual(segments[1], { text: '<script>alert(2)</script>', style: { fg: 1 } });
  // The attributes of a span are computed from codes only: class names and hex colours, never text.
  for (const s of segments) {
    const attrs = segmentAttrs(s.style);
    assert.match(attrs.class, /^[a-z0-9 -]*$/);
    assert.match(attrs.style, /^(--[a-z]+-[dl]:#[0-9a-f]{6};?)*$/);
  }
});

test('colours are readable (4.5:1) on the dark and light console, whatever the codes', () => {
  const styles = [
    ...Array.from({ length: 256 }, (_, i) => ({ fg: i })),
    { fg: [0, 0, 0] as const },
    { fg: [255, 255, 255] as const },
    { fg: [255, 255, 0] as const, bg: [255, 255, 255] as const },
    { bg: 3 },
    { fg: 0, inverse: true },
    { dim: true },
  ];
  for (const style of styles) {
    const { class: cls, style: css } = segmentAttrs(style);
    assert.match(cls, /ansi-color/);
    const prop = (name: string) => {
      const m = new RegExp(`--${name}:#([0-9a-f]{6})`).exec(css);
      if (!m) return null;
      const v = parseInt(m[1]!, 16);
      return [v >> 16, (v >> 8) & 255, v & 255] as const;
    };
    for (const [t, name] of [
      ['d', 'dark'],
      ['l', 'light'],
    ] as const) {
      const fg = prop(`fg-${t}`)!;
      const bg = prop(`bg-${t}`) ?? CONSOLE_THEMES[name].bg;
      assert.ok(
        contrast(fg, bg) >= 4.5,
        `${JSON.stringify(style)} on ${name}: ${contrast(fg, bg).toFixed(2)}`,
      );
    }
  }
  assert.equal(
    segmentAttrs({ fg: 1, bold: true }).class.split(' ').sort().join(' '),
    'ansi-bold ansi-color ansi-fg-1',
  );
  assert.match(segmentAttrs({ fg: 208 }).class, /ansi-fg-256/);
  assert.match(segmentAttrs({ bg: [1, 2, 3] }).class, /ansi-bg-rgb ansi-color ansi-bgc/);
  assert.deepEqual(segmentAttrs({ underline: true }), { class: 'ansi-underline', style: '' });
});

test('search hits are cut out across colour changes', () => {
  const segments = parseAnsi(`say ${E}[32mhel${E}[1mlo${E}[0m hello`);
  const parts = highlight(segments, 'hello');
  assert.deepEqual(
    parts.map((p) => [p.text, p.hit]),
    [
      ['say ', false],
      ['hel', true],
      ['lo', true],
      [' ', false],
      ['hello', true],
    ],
  );
  assert.deepEqual(parts[2]!.style, { fg: 2, bold: true });
  assert.deepEqual(
    highlight(segments, 'nothing').map((p) => p.hit),
    [false, false, false, false],
  );
});
