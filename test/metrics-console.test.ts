// Proves the host Metrics tab in real Chromium against a real controller and an agent sampling
// every second: the six charts draw on their canvases from stored data, the byte axes tick in one
// binary unit each, the legends and the charts' accessible summaries carry values, the transfer of
// the billing cycle shows, switching the range changes the resolution (hourly averages for a year,
// samples for 15 minutes), hovering one chart shows the cursor on all six (synced), the charts move
// on by themselves while watched, a drag across one chart sets that span on all six, a custom range
// refuses an end before its start and then reads the typed span, a theme switch draws the axes
// again in the theme's text colour, and the page passes axe's WCAG 2.1 A/AA checks in the dark and
// the light theme on a desktop and a phone (as it opens, with a refused custom range, and with the
// typed range).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import {
  axeViolationsInThemes,
  launchChromium,
  openSignedIn,
  snapshot,
  useTheme,
  type ThemeName,
  type ViewportName,
} from './helpers/browser.ts';
import { kill, removeDir, type Proc, startFleet, type TestController } from './helpers/fleet.ts';

type Ctl = TestController;
let ctl: Ctl;
let browser: Browser;
const procs: Proc[] = [];
const dirs: string[] = [];
let hostId: string;

before(async () => {
  // The browser starts while the fleet does.
  const chromium = launchChromium();
  ({ ctl, hostId } = await startFleet(procs, dirs, {
    name: 'metrics-host',
    agentEnv: { KEEL_AGENT_METRICS_INTERVAL: '1' },
  }));
  browser = await chromium;
});

after(async () => {
  await browser?.close();
  for (const p of procs) await kill(p, 'SIGTERM');
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
  for (const d of dirs) removeDir(d);
});

/** Polls `check` (from Node: page.evaluate of a string; the console's CSP forbids eval) until true. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Counts canvases with at least one painted pixel (uPlot draws series and axes on one canvas). */
const DRAWN_CANVASES = `(() => [...document.querySelectorAll('[data-testid="metrics-chart"] canvas')].filter((c) => {
  const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}).length)()`;

for (const [viewport, theme] of [
  ['desktop', 'dark'],
  ['phone', 'light'],
] as [ViewportName, ThemeName][]) {
  test(
    `the Metrics tab draws stored samples and switches ranges (${viewport}, ${theme})`,
    // A hang guard (~15 s quiet; the phone round hit 90 s at load 17-31).
    { timeout: 150_000 },
    async () => {
      const admin = ctl.firstAdmin;
      assert.ok(admin);
      const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin, {
        viewport,
        theme,
        path: `/hosts/${hostId}/metrics`,
      });
      try {
        const charts = page.locator('[data-testid="metrics-chart"]');
        await charts.first().waitFor();
        assert.equal(await charts.count(), 6);
        // Memory is known from the first tick on; CPU from the second.
        const memory = charts.filter({ hasText: 'Memory' });
        await memory.locator('[data-testid="metrics-latest"]').first().filter({ hasNotText: '–' }).waitFor();
        await charts
          .filter({ hasText: 'CPU' })
          .locator('[data-testid="metrics-latest"]')
          .first()
          .filter({ hasNotText: '–' })
          .waitFor({ timeout: 30_000 });
        assert.equal(await page.evaluate(DRAWN_CANVASES), 6, 'every chart painted its canvas');
        // Byte axes (memory, disk IO, network) tick in binary units, every label in one unit below
        // 1024 of it: never "1000 B/s" beside a legend in KiB/s.
        for (const title of ['Memory', 'Disk IO', 'Network']) {
          const plot = charts.filter({ hasText: title }).first().locator('[role="img"]');
          const ticks = ((await plot.getAttribute('data-y-ticks')) ?? '').split('|').filter(Boolean);
          assert.ok(ticks.length >= 2, `${title} has axis labels (${ticks.join(', ')})`);
          const parsed = ticks.map((t) => /^(\d+(?:\.\d+)?) ([KMGTP]?i?B)(\/s)?$/.exec(t));
          assert.ok(parsed.every(Boolean), `${title}: ${ticks.join(', ')}`);
          assert.equal(
            new Set(parsed.map((m) => m![2])).size,
            1,
            `${title} in one unit: ${ticks.join(', ')}`,
          );
          assert.ok(
            parsed.every((m) => Number(m![1]) < 1024),
            `${title} scaled to its unit: ${ticks.join(', ')}`,
          );
          assert.equal(
            parsed.every((m) => m![3] === '/s'),
            title !== 'Memory',
            `${title} rate suffix`,
          );
        }
        // The billing cycle's transfer, from the agent's interface counters (GET /hosts/:id/traffic).
        const transfer = page.locator('[data-testid="transfer"]');
        await transfer.waitFor();
        assert.match((await transfer.textContent()) ?? '', /Transfer this cycle[\s\S]*resets on day 1/);
        assert.match(
          (await page.locator('[data-testid="transfer-total"]').textContent()) ?? '',
          /^\d[\d.,]* ?[KMGT]?i?B$/,
        );
        const label = (await memory.locator('[role="img"]').getAttribute('aria-label')) ?? '';
        assert.match(label, /^Memory: used latest \d/);
        assert.match(
          (await page.locator('[data-testid="metrics-resolution"]').textContent()) ?? '',
          /^Samples/,
        );
        const violations = await axeViolationsInThemes(page);
        assert.deepEqual(violations, [], `axe, as it opens:\n${violations.join('\n')}`);

        await page.locator('label', { has: page.locator('[data-testid="range-1y"]') }).click();
        await page.locator('[data-testid="metrics-resolution"]', { hasText: 'Hourly averages' }).waitFor();
        await page.locator('label', { has: page.locator('[data-testid="range-15m"]') }).click();
        await page.locator('[data-testid="metrics-resolution"]', { hasText: 'Samples' }).waitFor();
        assert.equal(await page.evaluate(DRAWN_CANVASES), 6);
        // Synced cursors: hovering one chart marks the same time on every chart.
        const overlay = charts.first().locator('.u-over');
        const ob = await overlay.boundingBox();
        assert.ok(ob);
        await page.mouse.move(ob.x + ob.width * 0.6, ob.y + ob.height / 2);
        await page.waitForFunction(
          `document.querySelectorAll('[data-testid="metrics-chart"] .u-cursor-x:not(.u-off)').length >= 6`,
        );
        if (viewport === 'desktop') {
          // Live while watching: with nothing touched, the newest point moves on (the page reads
          // again at the sampling interval; the agent samples every second).
          const before = Number(await memory.getAttribute('data-last'));
          assert.ok(before > 0, 'the memory chart has a newest point');
          const memoryLast = `Number([...document.querySelectorAll('[data-testid="metrics-chart"]')].find((c) => c.textContent.includes('Memory')).getAttribute('data-last'))`;
          await until(async () => Number(await page.evaluate(memoryLast)) > before, 30_000, 'a newer point');
          // Drag-zoom on one chart sets that span for every chart of the host (a custom range).
          const SPANS = `[...document.querySelectorAll('[data-testid="metrics-chart"]')].map((c) => [Number(c.getAttribute('data-from')), Number(c.getAttribute('data-to'))])`;
          const box = await charts.nth(1).locator('.u-over').boundingBox();
          assert.ok(box);
          await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
          await page.mouse.down();
          await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
          await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2, { steps: 5 });
          await page.mouse.up();
          await until(
            async () =>
              (await page.locator('[data-testid="range-custom"]').isChecked()) &&
              ((await page.evaluate(SPANS)) as [number, number][]).every(
                ([f, t]) => t - f > 0 && t - f < 10 * 60,
              ),
            15_000,
            'the zoomed span on every chart',
          );
          const spans = (await page.evaluate(SPANS)) as [number, number][];
          assert.equal(spans.length, 6);
          assert.equal(
            new Set(spans.map((x) => x.join('-'))).size,
            1,
            `every chart shows the same span: ${JSON.stringify(spans)}`,
          );
          const [from, to] = spans[0]!;
          // 40 % of the 15-minute chart's width: about 6 minutes.
          assert.ok(to - from > 3 * 60 && to - from < 9 * 60, `zoomed span ${to - from} s`);
          const form = page.locator('[data-testid="custom-range"]');
          assert.notEqual(await form.getByLabel('From').inputValue(), '');
          assert.equal(await page.evaluate(DRAWN_CANVASES), 6);
        }
        // A custom range (fixed, read once): from hourly averages (1 y) to the last 20 minutes as
        // typed, which reads raw samples; an end before the start is refused in the form.
        await page.locator('label', { has: page.locator('[data-testid="range-1y"]') }).click();
        await page.locator('[data-testid="metrics-resolution"]', { hasText: 'Hourly averages' }).waitFor();
        await page.locator('label', { has: page.locator('[data-testid="range-custom"]') }).click();
        const form = page.locator('[data-testid="custom-range"]');
        const local = (ms: number) =>
          new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
        await form.getByLabel('From').fill(local(Date.now() + 60_000));
        await form.getByLabel('To').fill(local(Date.now() - 20 * 60_000));
        await form.getByRole('button', { name: 'Show' }).click();
        await form.getByRole('alert').filter({ hasText: 'before the end' }).waitFor();
        const refused = await axeViolationsInThemes(page);
        assert.deepEqual(refused, [], `axe, a refused range:\n${refused.join('\n')}`);
        await form.getByLabel('From').fill(local(Date.now() - 20 * 60_000));
        await form.getByLabel('To').fill(local(Date.now() + 60_000));
        await form.getByRole('button', { name: 'Show' }).click();
        await page.locator('[data-testid="metrics-resolution"]', { hasText: 'Samples' }).waitFor();
        assert.equal(await page.evaluate(DRAWN_CANVASES), 6);
        await snapshot(page, { path: `test-results/metrics-${viewport}-${theme}.png`, fullPage: true }).catch(
          () => {},
        );
        // A theme switch draws the axes again in the shown theme's text colour (a fixed range is not
        // read again: its labels once stayed in the other theme's colour, grey on white).
        const AXES_IN_THEME = `[...document.querySelectorAll('[data-testid="metrics-chart"] [role="img"]')].every((b) => b.dataset.axisColour === getComputedStyle(b).color)`;
        for (const t of theme === 'dark' ? (['light', 'dark'] as const) : (['dark', 'light'] as const)) {
          await useTheme(page, t);
          await until(async () => (await page.evaluate(AXES_IN_THEME)) === true, 10_000, `axes in ${t}`);
        }
        const typed = await axeViolationsInThemes(page, { shot: `test-results/metrics-typed-${viewport}` });
        assert.deepEqual(typed, [], `axe, the typed range:\n${typed.join('\n')}`);
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );
}
