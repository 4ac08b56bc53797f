// Proves the fleet overview stays responsive with 1,000 hosts in real Chromium: 1,000 hosts and an
// hour of minute roll-ups plus a newest tick for each are written straight into the database. The
// page windows its table (docs/metrics.md, Fleet overview): what is proved is that the DOM holds a
// bounded number of host rows whatever the fleet's size — at the top, while scrolling through the
// fleet (each step shows host rows where the viewport is, not blank spacer) and at the bottom,
// where the last host is drawn — with their CPU and memory sparklines from one /fleet/metrics
// call; that the table tells assistive technology the fleet's real size (aria-rowcount, rowindex);
// that filtering to one host and sorting by CPU work; and that no script error is raised. The times
// (first row, filter, sort) are printed for docs/benchmarks.md and asserted only loosely (a loaded
// machine), as the handbook asks of timing in tests.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { Browser } from 'playwright-core';
import { launchChromium, openSignedIn } from './helpers/browser.ts';
import { removeDir, startTestController, type TestController } from './helpers/fleet.ts';

// The page functions below run in Chromium; these declare the little of the DOM they use (the test
// project compiles for Node, without the DOM library).
interface PageElement {
  textContent: string | null;
  closest(selector: string): PageElement | null;
  getBoundingClientRect(): { top: number; bottom: number };
}
declare const document: {
  querySelectorAll(selector: string): { length: number };
  querySelector(selector: string): PageElement | null;
  elementFromPoint(x: number, y: number): PageElement | null;
  documentElement: { scrollHeight: number };
};
declare const window: { innerHeight: number; scrollTo(x: number, y: number): void };
declare function requestAnimationFrame(callback: () => void): number;

const HOSTS = Number(process.env.KEEL_TEST_FLEET_HOSTS ?? 1_000);
/** The host the filter looks for, and the highest CPU figure (host i has i % 100). */
const PICK = Math.min(777, HOSTS - 1);
const TOP_CPU = Math.min(99, HOSTS - 1);
/** The page windows tables of more than 150 rows; fewer render in full. */
const WINDOWED = HOSTS > 150;
/** Most host rows the DOM may hold while windowed (a 1280x720 viewport shows ~16). */
const MAX_ROWS = 150;
const hostName = (i: number) => `host-${String(i).padStart(4, '0')}`;
let ctl: TestController;
let browser: Browser;

before(async () => {
  const chromium = launchChromium();
  ctl = await startTestController();
  const db = ctl.database.db;
  const t0 = performance.now();
  // Host i: name host-NNNN, CPU i % 100 %, memory (i % 50) + 25 %.
  await db.execute(sql`
    insert into "hosts" ("name", "public_key", "online", "last_seen_at")
    select 'host-' || lpad(i::text, 4, '0'), 'scale-key-' || i, false, now()
    from generate_series(0, ${HOSTS - 1}) i`);
  await db.execute(sql`
    insert into "metric_rollups_1m" ("host_id", "ts", "n", "cpu", "mem_used", "mem_total")
    select h."id", m, 12, (substr(h."name", 6)::int % 100) + (extract(minute from m)::int % 3),
      ((substr(h."name", 6)::int % 50) + 25) * 1e7, 1e9
    from "hosts" h
    cross join generate_series(date_trunc('minute', now()) - interval '60 minutes', date_trunc('minute', now()) - interval '1 minute', interval '1 minute') m
    where h."name" like 'host-%'`);
  await db.execute(sql`
    insert into "metric_samples" ("host_id", "ts", "cpu", "mem_used", "mem_total", "disk_used_max_pct", "net_rx_bps", "net_tx_bps")
    select h."id", date_trunc('second', now()) - interval '10 seconds', substr(h."name", 6)::int % 100,
      ((substr(h."name", 6)::int % 50) + 25) * 1e7, 1e9, 40, 1000, 2000
    from "hosts" h where h."name" like 'host-%'`);
  console.log(
    `# stored ${HOSTS} hosts and their metrics in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  browser = await chromium;
});
after(async () => {
  await browser?.close();
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

test(
  'the fleet page with 1,000 hosts renders, filters and sorts while staying responsive',
  { timeout: 300_000 },
  async () => {
    const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!);
    try {
      page.setDefaultTimeout(180_000);
      // Measured from a fresh load of the page, signed in.
      const started = Date.now();
      await page.goto(`${ctl.url}/`);
      await page.locator('[data-testid="host-row"]').first().waitFor();
      const firstRow = Date.now() - started;
      // Every drawn row has its sparkline (the one /fleet/metrics answer arrived).
      await page.waitForFunction(
        () =>
          document.querySelectorAll('[data-testid="host-row"]').length > 0 &&
          document.querySelectorAll('[data-testid="cpu-use"] polyline').length ===
            document.querySelectorAll('[data-testid="host-row"]').length,
      );
      const rowsDrawn = Date.now() - started;
      const rows = page.locator('[data-testid="host-row"]');
      const rowCount = () => rows.count();
      /** The host row in the middle of the viewport, if any (not a spacer, not blank). */
      const middleRow = () =>
        page.evaluate(
          () =>
            document.elementFromPoint(100, window.innerHeight / 2)?.closest('[data-testid="host-row"]')
              ?.textContent ?? null,
        );
      if (WINDOWED) {
        assert.equal(await page.locator('table.hosts').getAttribute('aria-rowcount'), String(HOSTS + 1));
        const atTop = await rowCount();
        assert.ok(atTop <= MAX_ROWS, `${atTop} host rows in the DOM at the top of a ${HOSTS}-host fleet`);
        assert.equal(await rows.first().getAttribute('aria-rowindex'), '2');
        // Scroll through the fleet in steps: each step shows host rows at the viewport's middle,
        // and the DOM never holds more than MAX_ROWS of them.
        let maxSeen = atTop;
        for (const fraction of [0.25, 0.5, 0.75, 1]) {
          await page.evaluate((f) => window.scrollTo(0, document.documentElement.scrollHeight * f), fraction);
          await page.waitForFunction(
            () =>
              document.elementFromPoint(100, window.innerHeight / 2)?.closest('[data-testid="host-row"]') !=
              null,
          );
          const n = await rowCount();
          maxSeen = Math.max(maxSeen, n);
          assert.ok(n <= MAX_ROWS, `${n} host rows in the DOM after scrolling to ${fraction * 100} %`);
          assert.ok(
            (await middleRow()) !== null,
            `a host row at the viewport's middle at ${fraction * 100} %`,
          );
        }
        // At the bottom the last host (A-Z) is drawn, in the viewport, as row HOSTS of HOSTS.
        const last = page.locator('[data-testid="host-row"]', { hasText: hostName(HOSTS - 1) });
        await last.waitFor();
        assert.equal(await last.getAttribute('aria-rowindex'), String(HOSTS + 1));
        const box = await last.boundingBox();
        const viewport = page.viewportSize();
        assert.ok(
          box && viewport && box.y >= 0 && box.y + box.height <= viewport.height + 1,
          'last host in view',
        );
        assert.equal(await page.locator('[data-testid="host-row"]', { hasText: hostName(0) }).count(), 0);
        console.log(`# fleet page, ${HOSTS} hosts: at most ${maxSeen} host rows in the DOM while scrolling`);
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.locator('[data-testid="host-row"]', { hasText: hostName(0) }).waitFor();
      } else {
        assert.equal(await rowCount(), HOSTS);
      }
      // Interactive: a keystroke's filter and a sort each finish, and the main thread answers.
      const t1 = Date.now();
      await page.fill('#host-filter', `host-${String(PICK).padStart(4, '0')}`);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="host-row"]').length === 1);
      const filter = Date.now() - t1;
      assert.equal(
        await page.locator('[data-testid="host-row"] [data-testid="cpu-use"]').innerText(),
        `${PICK % 100} %`,
      );
      await page.fill('#host-filter', '');
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="host-row"]').length > 1);
      assert.ok((await rowCount()) <= (WINDOWED ? MAX_ROWS : HOSTS), 'the cleared filter stays windowed');
      const t2 = Date.now();
      await page.click('[data-testid="sort-cpu"]');
      await page.waitForFunction(
        (top) =>
          document
            .querySelector('[data-testid="host-row"] [data-testid="cpu-use"]')
            ?.textContent?.includes(`${top} %`),
        TOP_CPU,
      );
      const sort = Date.now() - t2;
      const t3 = Date.now();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(null))));
      const frame = Date.now() - t3;
      console.log(
        `# fleet page, ${HOSTS} hosts: first row ${firstRow} ms, rows drawn with sparklines ${rowsDrawn} ms, ` +
          `filter to one host ${filter} ms, sort by CPU ${sort} ms, next frame ${frame} ms`,
      );
      // Loose bounds: a loaded CI machine is slow, a page that hangs is slower.
      assert.ok(rowsDrawn < 120_000, `rows drawn in ${rowsDrawn} ms`);
      assert.ok(filter < 30_000 && sort < 30_000, `filter ${filter} ms, sort ${sort} ms`);
      assert.deepEqual(pageErrors.map(String), []);
    } finally {
      await context.close();
    }
  },
);
