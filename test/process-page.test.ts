// Proves the process page and the Processes tab's edit form in real Chromium against a real
// controller and agent: live output appears, a typed command's answer shows, Pause holds new lines
// (counted, not shown) and Resume shows them; terminal colours are spans with their colour class
// while <script>/<img onerror> and escape junk stay inert text; stored output is searched with
// highlights, jumped to a time, downloaded, and a gap shows as "N lines lost"; editing a process
// made with files, a health check, limits and backoff keeps them; axe WCAG 2.1 A/AA passes on the
// process page (live, and its stored output searched) and the edit form, in the dark and the light
// theme on a desktop and a phone; a console whose channel ends says Disconnected and Reconnect
// opens a new one without a reload.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page, WebSocketRoute } from 'playwright-core';
import { streamGaps } from '../controller/src/db/schema/streams.ts';
import {
  axeViolationsInThemes,
  axeViolationsInViews,
  snapshot,
  type PageDocument,
  type ThemeName,
  type ViewportName,
} from './helpers/browser.ts';
import { startConsoleFleet, type ConsoleFleet } from './helpers/console-fleet.ts';
import { repoRoot, waitFor } from './helpers/fleet.ts';

// Page-side callbacks run in Chromium; this program has no DOM library (see helpers/browser.ts).
declare const document: PageDocument;
declare const innerWidth: number;
declare function getComputedStyle(el: unknown): { color: string };

/** A console program: coloured and hostile lines, one on stderr, then `echo: <line>` for each input line. */
const PROGRAM = String.raw`
const out = (s) => process.stdout.write(s + '\n');
out('ready');
out('\x1b[31mred alert\x1b[0m then \x1b[1;4;38;5;208mbold orange\x1b[0m and \x1b[38;2;10;200;90mtruecolour\x1b[0m');
out('<script>globalThis.pwned=1</script><img src=x onerror="globalThis.pwned=2"> \x1b]0;title\x07\x1b[2J\x1b[?25l\x1bPq#0\x1b\\junk-end');
process.stderr.write('warning: this is stderr\n');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    out('echo: ' + line);
  }
});
`;

let fleet: ConsoleFleet;
let hostId: string;
const shots = join(repoRoot, 'test-results');
const started = Date.now();

before(async () => {
  fleet = await startConsoleFleet('process-page-host', { 'program.cjs': PROGRAM });
  hostId = fleet.hostId;
  const created = await fleet.api.post(`/hosts/${hostId}/processes`, {
    name: 'painter',
    argv: [process.execPath, join(fleet.workDir, 'program.cjs')],
    cwd: fleet.workDir,
    restart: { policy: 'never' },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  mkdirSync(shots, { recursive: true });
});

after(() => fleet?.close());

/** axe in both themes at the page's viewport (the rounds below open a desktop and a phone). */
async function clean(page: Page, where: string): Promise<void> {
  const found = await axeViolationsInThemes(page);
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** axe in both themes on a desktop and a phone, for a state one context reaches. */
async function cleanInViews(page: Page, where: string, shot: string): Promise<void> {
  const found = await axeViolationsInViews(page, { shot });
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** `ms` as a datetime-local value in this machine's time zone (Chromium runs in the same one). */
function localInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

test(
  'process page: live output, a command answered, pause and resume, colours as classes and markup inert',
  { timeout: 180_000 },
  async () => {
    // From the Processes tab, the name links to the process page (by keyboard).
    const { context, page, pageErrors } = await fleet.open({
      viewport: 'desktop',
      theme: 'dark',
      path: `/hosts/${hostId}/processes`,
    });
    try {
      const link = page.locator('[data-testid="process-link"]', { hasText: 'painter' });
      await link.focus();
      await page.keyboard.press('Enter');
      await page.waitForURL(new RegExp(`/hosts/${hostId}/processes/painter$`));
      await page
        .locator('[data-testid="process-state"]', { hasText: 'running' })
        .waitFor({ timeout: 60_000 });
      assert.match(await page.locator('[data-testid="process-pid"]').innerText(), /^\d+$/);

      const output = page.locator('[data-testid="console-output"]');
      await output.filter({ hasText: 'junk-end' }).waitFor({ timeout: 60_000 });
      await output.filter({ hasText: 'warning: this is stderr' }).waitFor();

      // Colours: spans with the class of their code and a colour that is not the console's text.
      const red = output.locator('span.ansi-fg-1', { hasText: 'red alert' });
      await red.waitFor();
      const orange = output.locator('span.ansi-fg-256.ansi-bold.ansi-underline', { hasText: 'bold orange' });
      assert.equal(await orange.count(), 1);
      assert.equal(await output.locator('span.ansi-fg-rgb', { hasText: 'truecolour' }).count(), 1);
      const colors = await red.evaluate((el) => ({
        red: getComputedStyle(el).color,
        text: getComputedStyle((el as { closest(s: string): unknown }).closest('pre')).color,
      }));
      assert.notEqual(colors.red, colors.text, 'the red span has its own colour');
      // Markup and escape junk are text: no element was made from them, no handler ran.
      assert.equal(await output.locator('img, script').count(), 0);
      const hostile = output
        .locator('[data-testid="console-output"] .line, .line')
        .filter({ hasText: 'junk-end' });
      assert.equal(
        await hostile.first().innerText(),
        '<script>globalThis.pwned=1</script><img src=x onerror="globalThis.pwned=2"> junk-end',
      );
      assert.equal(await page.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);
      // stderr is marked.
      const errLine = output.locator('.line[data-stream="stderr"]', { hasText: 'warning: this is stderr' });
      assert.equal(await errLine.locator('.tag').innerText(), 'ERR');

      // A command typed into the console is answered.
      const input = page.locator('[data-testid="console-input"]');
      await input.fill('status please');
      await input.press('Enter');
      await output.filter({ hasText: 'echo: status please' }).waitFor({ timeout: 30_000 });
      assert.equal(await input.inputValue(), '', 'the box is emptied once sent');

      // Pause (by keyboard): answers arrive, are counted, are not shown; Resume shows them at the end.
      await page.locator('[data-testid="console-pause"]').focus();
      await page.keyboard.press('Enter');
      const held = page.locator('[data-testid="console-held"]');
      await held.waitFor();
      for (const word of ['one', 'two', 'three']) {
        await input.fill(`held ${word}`);
        await input.press('Enter');
        await waitFor(async () => (await input.inputValue()) === '', 10_000, `held ${word} sent`);
      }
      await held.filter({ hasText: '3 new lines' }).waitFor({ timeout: 30_000 });
      assert.equal(await output.filter({ hasText: 'echo: held one' }).count(), 0, 'paused: not shown');
      await page.locator('[data-testid="console-resume"]').click();
      await output.filter({ hasText: 'echo: held three' }).waitFor();
      const atEnd = await output.evaluate((el) => {
        const e = el as unknown as { scrollTop: number; scrollHeight: number; clientHeight: number };
        return e.scrollHeight - e.scrollTop - e.clientHeight < 4;
      });
      assert.ok(atEnd, 'resume jumps to the end');
      assert.equal(await held.count(), 0);

      await clean(page, 'process page (desktop)');
      await snapshot(page, { path: join(shots, 'process-page-dark-desktop.png'), fullPage: true });
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  },
);

test(
  'stored output: search highlights, jump to a time, download of the range, a gap as "N lines lost"',
  { timeout: 180_000 },
  async () => {
    // The lines the first test made are stored (the logs stream reaches the controller shortly after).
    await waitFor(
      async () => {
        const res = await fleet.api.get<{ lines: { text: string }[] }>(
          `/hosts/${hostId}/processes/painter/logs?contains=${encodeURIComponent('echo: held three')}&tail=10`,
        );
        return res.body.lines.length > 0;
      },
      60_000,
      'stored answers',
    );
    // A stand-in for lines an agent lost (the spool overflow itself is test/processes-gap.test.ts's):
    // a recorded gap of 7 numbers in this host's logs stream, past everything stored so far.
    const all = await fleet.api.get<{ nextAfter: number; end: boolean }>(
      `/hosts/${hostId}/processes/painter/logs?limit=5000`,
    );
    assert.ok(all.body.end);
    const fromSeq = all.body.nextAfter + 1_000;
    await fleet.ctl.database.db
      .insert(streamGaps)
      .values({ hostId, stream: 'logs', fromSeq, toSeq: fromSeq + 6, reason: 'lost' });

    for (const [viewport, theme] of [
      ['desktop', 'dark'],
      ['phone', 'light'],
    ] as [ViewportName, ThemeName][]) {
      const where = `${theme}, ${viewport}`;
      const { context, page, pageErrors } = await fleet.open({
        viewport,
        theme,
        path: `/hosts/${hostId}/processes/painter`,
      });
      try {
        const lines = page.locator('[data-testid="log-line"]');
        await lines.filter({ hasText: 'ready' }).first().waitFor({ timeout: 30_000 });
        // The newest lines open scrolled to their end, as a console is (not at the oldest of the page).
        await waitFor(
          () =>
            page.locator('[data-testid="log-lines"]').evaluate((el) => {
              const e = el as unknown as { scrollTop: number; scrollHeight: number; clientHeight: number };
              return e.scrollHeight - e.scrollTop - e.clientHeight < 4;
            }),
          5_000,
          `the stored output scrolled to its newest line (${where})`,
        );
        // The gap is drawn where the lost lines were.
        const gap = page.locator('[data-testid="log-gap"]');
        await gap.waitFor();
        assert.match(await gap.innerText(), /7 lines lost/);

        // Search: only matching lines, the match highlighted as <mark>, markup still text.
        await page.fill('[data-testid="log-search"]', 'held');
        await page.press('[data-testid="log-search"]', 'Enter');
        await page.locator('[data-testid="log-status"]', { hasText: 'containing “held”' }).waitFor();
        await waitFor(async () => (await lines.count()) === 3, 10_000, 'three matching lines');
        assert.deepEqual(await lines.locator('mark').allInnerTexts(), ['held', 'held', 'held']);
        await page.fill('[data-testid="log-search"]', '<img');
        await page.press('[data-testid="log-search"]', 'Enter');
        await lines.locator('mark', { hasText: '<img' }).waitFor();
        assert.equal(
          await page.locator('[data-testid="log-lines"] img, [data-testid="log-lines"] script').count(),
          0,
        );
        await clean(page, `stored output with a search (${where})`);
        await snapshot(page, {
          path: join(shots, `process-page-search-${theme}-${viewport}.png`),
          fullPage: true,
        });

        // Jump to a time after everything: nothing; to the test's start: the first lines.
        await page.fill('[data-testid="log-search"]', '');
        await page.fill('[data-testid="log-from"]', localInput(Date.now() + 3_600_000));
        await page.click('[data-testid="log-submit"]');
        await page.locator('[data-testid="log-empty"]', { hasText: 'No stored lines.' }).waitFor();
        await page.fill('[data-testid="log-from"]', localInput(started - 60_000));
        await page.click('[data-testid="log-submit"]');
        await lines.first().waitFor();
        assert.match(await lines.first().innerText(), /ready/);
        // The download carries the range.
        const href = await page.locator('[data-testid="log-download"]').getAttribute('href');
        assert.match(href ?? '', /logs\.txt\?since=\d+$/);
        const text = await (await page.request.get(href!)).text();
        assert.match(text, /out ready\n/);
        assert.match(text, /err warning: this is stderr\n/);

        if (viewport === 'phone') {
          await page.goto(`/hosts/${hostId}/processes/painter`);
          await page.locator('[data-testid="console-output"]').filter({ hasText: 'junk-end' }).waitFor();
          await clean(page, `process page (${where})`);
          await snapshot(page, {
            path: join(shots, `process-page-${theme}-${viewport}.png`),
            fullPage: true,
          });
          assert.ok(
            await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
            'the process page is no wider than the phone',
          );
          // A process the host does not have: said so, and no live console that could only fail.
          await page.goto(`/hosts/${hostId}/processes/no-such-process`);
          await page.locator('[data-testid="process-missing"]').waitFor();
          assert.equal(await page.locator('[data-testid="console-output"]').count(), 0);
        }
        assert.deepEqual(
          pageErrors.map((e) => e.message),
          [],
        );
      } finally {
        await context.close();
      }
    }
  },
);

test(
  'editing a process keeps its files, health check, limits and backoff; the table shows health and limits',
  { timeout: 120_000 },
  async () => {
    const spec = {
      name: 'configured',
      argv: [process.execPath, '-e', "console.log('server ready'); setInterval(() => {}, 1e9)"],
      cwd: fleet.workDir,
      restart: {
        policy: 'on-failure',
        backoffMs: 2_000,
        maxBackoffMs: 90_000,
        maxRestarts: 7,
        windowSeconds: 120,
      },
      stop: { signal: 'SIGINT', graceMs: 5_000 },
      files: [{ path: 'conf/server.properties', content: 'motd=hello\n', mode: 0o600 }],
      health: {
        type: 'output',
        match: 'server ready',
        regex: false,
        stream: 'stdout',
        startTimeoutSeconds: 90,
      },
      limits: { memoryBytes: 256 * 1024 * 1024, cpuPercent: 50 },
    };
    const created = await fleet.api.post(`/hosts/${hostId}/processes`, spec);
    assert.equal(created.status, 200, JSON.stringify(created.body));

    const { context, page, pageErrors } = await fleet.open({
      viewport: 'desktop',
      theme: 'light',
      path: `/hosts/${hostId}/processes`,
    });
    try {
      const row = page.locator('[data-testid="process-row"]').filter({ hasText: 'configured' });
      // Health and limits in the table: healthy once the line was printed; limits applied or why not.
      await row
        .locator('[data-testid="process-health"]', { hasText: 'healthy' })
        .waitFor({ timeout: 60_000 });
      const limits = row.locator('[data-testid="process-limits"]');
      await limits.filter({ hasText: '256 MiB, 50 % CPU' }).waitFor();
      await waitFor(async () => /applied/.test(await limits.innerText()), 30_000, 'limits state shown');

      await row.getByRole('button', { name: /^Edit/ }).click();
      const form = page.locator('[data-testid="process-form"]');
      await form.waitFor();
      // The form shows the check and limits it has.
      assert.equal(await page.inputValue('[data-testid="health-type"]'), 'output');
      assert.equal(await page.inputValue('[data-testid="health-match"]'), 'server ready');
      assert.equal(await page.inputValue('[data-testid="limit-memory"]'), '256');
      await cleanInViews(page, 'edit form with health and limits', join(shots, 'process-edit-form'));
      await page.fill(
        '#p-argv',
        `${process.execPath}\n-e\nconsole.log('server ready'); setInterval(() => {}, 2e9)`,
      );
      await page.fill('[data-testid="limit-cpu"]', '75');
      await page.click('[data-testid="save-process"]');
      await form.waitFor({ state: 'detached' });

      const list = await fleet.api.get<{ processes: { name: string; spec: Record<string, unknown> }[] }>(
        `/hosts/${hostId}/processes`,
      );
      const saved = list.body.processes.find((p) => p.name === 'configured')?.spec;
      assert.ok(saved);
      assert.deepEqual(saved.argv, [
        process.execPath,
        '-e',
        "console.log('server ready'); setInterval(() => {}, 2e9)",
      ]);
      assert.deepEqual(saved.files, spec.files);
      assert.deepEqual(saved.health, spec.health);
      assert.deepEqual(saved.limits, { memoryBytes: 256 * 1024 * 1024, cpuPercent: 75 });
      assert.deepEqual(saved.restart, spec.restart);
      assert.deepEqual(saved.stop, spec.stop);
      assert.equal(saved.cwd, fleet.workDir);
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  },
);

test(
  'the console says Disconnected when its channel ends, and Reconnect (by keyboard) opens a new one',
  { timeout: 120_000 },
  async () => {
    const { context, page, pageErrors } = await fleet.open({
      viewport: 'desktop',
      theme: 'light',
      path: `/hosts/${hostId}/processes`,
    });
    try {
      // Every live channel's socket goes through the test, which can end it as a lost link would.
      const sockets: WebSocketRoute[] = [];
      await page.routeWebSocket(/\/api\/v1\/channels\/ws/, (ws) => {
        ws.connectToServer();
        sockets.push(ws);
      });
      await page.goto(`/hosts/${hostId}/processes/painter`);
      const connection = page.locator('[data-testid="console-connection"]');
      await connection.filter({ hasText: 'Live' }).waitFor({ timeout: 30_000 });
      const reconnect = page.locator('[data-testid="console-reconnect"]');
      assert.equal(await reconnect.count(), 0, 'no Reconnect while live');
      assert.equal(sockets.length, 1);

      await sockets[0]!.close({ code: 4000, reason: 'cut by the test' });
      await connection.filter({ hasText: 'Disconnected' }).waitFor({ timeout: 10_000 });
      await reconnect.focus();
      await page.keyboard.press('Enter');
      await connection.filter({ hasText: 'Live' }).waitFor({ timeout: 30_000 });
      assert.equal(sockets.length, 2, 'a new channel was opened');
      assert.equal(await reconnect.count(), 0);
      // The new channel carries the process's output: a command's answer shows.
      const input = page.locator('[data-testid="console-input"]');
      await input.fill('after reconnect');
      await input.press('Enter');
      await page
        .locator('[data-testid="console-output"]')
        .filter({ hasText: 'echo: after reconnect' })
        .waitFor({ timeout: 30_000 });
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  },
);
