// Proves every console page in real Chromium, in the dark and light themes, on a desktop and a
// phone: no axe-core WCAG 2.1 A/AA violation, usable by keyboard, rendering whatever the database
// holds (hosts with null, partial, mistyped or huge facts never leave the fleet page loading or
// throw), and long text cut with its full value on hover so no table grows past the viewport.
// (The fleet Processes page and Log search are checked with axe in process-templates-console.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { sampleFacts } from './helpers/facts.ts';
import {
  axeViolationsInThemes,
  launchChromium,
  navigate,
  openPage,
  openSignedIn,
  signIn,
  type PageDocument,
  type PageElement,
  type ViewportName,
} from './helpers/browser.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  repoRoot,
  runAgent,
  startTestController,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

// Page-side callbacks run in Chromium; this program has no DOM library (see helpers/browser.ts).
declare const document: PageDocument & {
  scrollingElement: PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};
declare const innerWidth: number;
declare const innerHeight: number;
declare function getComputedStyle(el: PageElement): { outlineStyle: string; outlineWidth: string };

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let browser: Browser;
let agent: Proc;
let agentDir: string;
const shots = join(repoRoot, 'test-results');
/**
 * Screenshots of every page for a person to look at (test-results/), only with
 * KEEL_TEST_SCREENSHOTS=1: nothing asserts on them, and the ~60 a run took (most full-page PNGs)
 * were a share of the shared Chromium's CPU in every run.
 */
const screenshots = process.env.KEEL_TEST_SCREENSHOTS === '1';
async function snap(page: Page, opts: { path: string; fullPage?: boolean }): Promise<void> {
  if (screenshots) await page.screenshot(opts);
}

/** A 255-character host name (the longest enroll accepts). */
const LONG_NAME = `edge-${'0123456789abcdef'.repeat(16)}`.slice(0, 250) + '-tail';
/** Stored hosts by role, filled in `before`. */
const ids: Record<string, string> = {};

/** Odd stored facts: each must render with placeholders. */
const ODD_HOSTS: Record<string, unknown> = {
  'odd-null-os': { ...sampleFacts, os: null },
  'odd-partial': { hostname: 'only-a-hostname' },
  'odd-types': {
    ...sampleFacts,
    hostname: 42,
    kernel: ['6.1'],
    cpu: 'fast',
    memory: { totalBytes: '4 GB' },
    disks: [null, 'sda', { mount: '/', sizeBytes: -1 }, { mount: '/', sizeBytes: 5 }],
    bootTime: 'yesterday',
  },
  'odd-huge': {
    ...sampleFacts,
    hostname: 'h'.repeat(100_000),
    kernel: 'k'.repeat(200_000),
    cpu: { ...sampleFacts.cpu, model: 'c'.repeat(100_000) },
    os: { ...sampleFacts.os, distro: 'd'.repeat(50_000) },
  },
  'odd-string': 'facts as a bare string',
  'odd-controls': { ...sampleFacts, hostname: 'bell\u0007tab\tbidi\u202eevil' },
};

before(async () => {
  ctl = await startTestController();
  agentDir = await enrollNewAgent(ctl, 'real-host');
  agent = runAgent(agentDir);
  ids.long = await storeHost(ctl, { name: LONG_NAME, facts: sampleFacts, agentVersion: '0.1.0' });
  for (const [name, facts] of Object.entries(ODD_HOSTS)) ids[name] = await storeHost(ctl, { name, facts });
  ids['odd-none'] = await storeHost(ctl, { name: 'odd-none', facts: null, lastSeenAt: null });
  // Long values in the audit trail: a revoked host with a long name (its target cell) and a failed
  // sign-in with a long username (its detail).
  ids.revoked = await storeHost(ctl, { name: `gone-${LONG_NAME.slice(5)}`, facts: sampleFacts });
  await ctl.services.hosts.revoke(ids.revoked, { id: 'system', ip: null });
  await fetch(`${ctl.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: ctl.url },
    body: JSON.stringify({ username: 'u'.repeat(120), password: 'wrong' }),
  });
  browser = await launchChromium();
  if (screenshots) mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (agent) await kill(agent, 'SIGTERM');
  // Supervised processes outlive their agent: end the ones the Processes page started.
  const supervised = agentDir ? join(agentDir, 'processes') : '';
  for (const name of supervised && existsSync(supervised) ? readdirSync(supervised) : []) {
    try {
      const run = join(supervised, name, 'run.json');
      process.kill(-(JSON.parse(readFileSync(run, 'utf8')) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // not running
    }
  }
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
  if (agentDir) removeDir(agentDir);
});

function admin() {
  const a = ctl.firstAdmin;
  assert.ok(a, 'a new install has a generated first admin');
  return a;
}

/** Every violation axe finds on pages checked so far, with where it was found. */
const violations: string[] = [];

/**
 * Runs axe on the page as it is now, in the dark and the light theme; the test fails at its end
 * with everything found.
 */
async function checkAccessible(page: Page, where: string): Promise<void> {
  for (const v of await axeViolationsInThemes(page)) violations.push(`${where}: ${v}`);
}

/**
 * The Processes tab: create a process through the form, see it running, open its console, see its
 * live output, type a line and see the answer; markup and escapes in its output stay inert text.
 */
async function processesPage(
  page: Page,
  hostId: string,
  tag: string,
  where: (p: string) => string,
  shot: (p: string) => string,
): Promise<void> {
  await navigate(page, `/hosts/${hostId}/processes`);
  await page.click('[data-testid="new-process"]');
  await page.locator('[data-testid="process-form"]').waitFor();
  // The form opens below the list: it is brought into view with the focus on its heading (on a
  // phone it opened off screen and the button seemed to do nothing).
  await revealed(page, 'form-title', where('new process form'));
  await checkAccessible(page, where('new process form'));
  await page.fill('#p-name', 'console-echo');
  await page.fill('#p-argv', 'sh\n-c\necho ready; while read l; do echo "got $l"; done');
  // Enter in a field submits, as a keyboard user would (the polled table above may shift the layout under a pointer).
  await page.press('#p-name', 'Enter');
  const row = page.locator('[data-testid="process-row"]').filter({ hasText: 'console-echo' });
  await row.locator('[data-testid="process-state"]', { hasText: 'running' }).waitFor();
  await noSidewaysScroll(page, where('Processes tab'));
  await row.locator('[data-testid="open-console"]').click();
  await revealed(page, 'console-title', where('process console'));
  const output = page.locator('[data-testid="console-output"]');
  await output.filter({ hasText: 'ready' }).waitFor();
  await page.fill('[data-testid="console-input"]', `hi ${tag}`);
  await page.keyboard.press('Enter');
  await output.filter({ hasText: `got hi ${tag}` }).waitFor();
  // Short words: the line also lands in the host's audit history, which wraps at spaces.
  const hostile = `<img src=x onerror=alert(1)> <script>alert(2)</script> \u001b[31m red \u001b[0m`;
  await page.fill('[data-testid="console-input"]', hostile);
  await page.keyboard.press('Enter');
  await output.filter({ hasText: 'got <img src=x' }).waitFor();
  assert.equal(await output.locator('img, script').count(), 0, 'output markup is text');
  assert.ok(
    (await output.innerText()).includes('<script>alert(2)</script>  red '),
    'escapes removed, text kept',
  );
  await checkAccessible(page, where('process console'));
  await snap(page, { path: shot('processes'), fullPage: true });
  assert.ok(
    await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
    'the Processes page is no wider than the viewport',
  );
}

/**
 * The panel headed `#titleId` is in the viewport: its whole heading between the sticky top bar
 * (48 px) and the window's bottom (a short page may not scroll far enough to bring it to the top),
 * and focused. The limit is a hang guard; a failure says what the page showed.
 */
async function revealed(page: Page, titleId: string, where: string): Promise<void> {
  let seen = '';
  await waitFor(
    async () => {
      const state = await page.evaluate((id) => {
        const h = document.querySelector(`#${id}`);
        const box = h
          ? (
              h as unknown as { getBoundingClientRect(): { top: number; bottom: number } }
            ).getBoundingClientRect()
          : null;
        const active = document.activeElement as unknown as { outerHTML?: string } | null;
        return {
          focused: h !== null && document.activeElement === h,
          top: box ? Math.round(box.top) : null,
          bottom: box ? Math.round(box.bottom) : null,
          innerHeight,
          active: active?.outerHTML?.slice(0, 80),
        };
      }, titleId);
      seen = JSON.stringify(state);
      return state.focused && state.top !== null && state.top >= 48 && state.bottom! <= state.innerHeight;
    },
    15_000,
    `${where}: #${titleId} in view and focused`,
  ).catch((err: Error) => assert.fail(`${err.message}: ${seen}`));
}

/**
 * Nothing on the page scrolls sideways: the document is no wider than the viewport it was opened
 * with (on a phone Chromium widens innerWidth to fit wide content, so the configured width is the
 * bar), and no table scrolls inside its wrapper.
 */
async function noSidewaysScroll(page: Page, where: string): Promise<void> {
  const width = page.viewportSize()?.width ?? 0;
  const m = await page.evaluate(() => ({
    page: document.scrollingElement?.scrollWidth ?? 0,
    view: innerWidth,
    tables: [...document.querySelectorAll('table')].map((t) => {
      const wrap = t.parentElement;
      return { scroll: wrap?.scrollWidth ?? 0, client: wrap?.clientWidth ?? 0 };
    }),
  }));
  assert.ok(
    m.page <= m.view && m.view <= width,
    `${where}: page ${m.page} px, innerWidth ${m.view}, viewport ${width}`,
  );
  for (const t of m.tables)
    assert.ok(t.scroll <= t.client, `${where}: a table scrolls ${t.scroll} px in ${t.client}`);
}

/** The fleet page with every host row rendered. */
async function fleetReady(page: Page): Promise<void> {
  await page.locator('[data-testid="host-row"]').filter({ hasText: 'real-host' }).waitFor();
  await waitFor(
    async () => (await page.locator('[data-testid="host-row"]').count()) === Object.keys(ids).length + 1,
    10_000,
    'every host row',
  );
}

async function realHostId(page: Page): Promise<string> {
  const id = await page
    .locator('[data-testid="host-row"]')
    .filter({ hasText: 'real-host' })
    .getAttribute('data-host-id');
  assert.ok(id);
  return id;
}

// Every page passes axe WCAG 2.1 A/AA in dark and light, on desktop and phone: one test per
// viewport, each page state checked in both themes (checkAccessible: the theme switched through
// the system colour scheme, no second context, sign-in and walk through the pages; one test per
// theme and viewport cost the shared Chromium ~40 % more), each test with its own limit (15
// states a round, 17 before the fleet Processes page and Log search went to
// process-templates-console; as one test of all rounds, the whole took 408 s at load 17-31 and
// hit its 360 s limit while no round hung). The rounds run in order: each creates the console-echo
// process again on the real host.
for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
  test(
    `every page passes axe WCAG 2.1 A/AA (dark and light, ${viewport})`,
    // A hang guard: a round of one theme took 22-37 s on this 2-core VM at load 5-11; the first
    // round (the console's first pages in the renderer, six files starting at once) 157 s at
    // load 15.
    { timeout: 300_000 },
    async () => {
      violations.length = 0;
      const { username, password } = admin();
      const where = (p: string) => `${p} (${viewport})`;
      // Screenshots in the dark theme (the light one is checked by axe, not shot).
      const shot = (p: string) => join(shots, `a11y-${p}-dark-${viewport}.png`);
      const { context, page, pageErrors } = await openPage(browser, ctl.url, { viewport, theme: 'dark' });
      try {
        await page.locator('#login-username').waitFor();
        await checkAccessible(page, where('login'));
        await snap(page, { path: shot('login') });
        await signIn(page, username, password);

        await fleetReady(page);
        await checkAccessible(page, where('fleet'));
        // The filter's placeholder is read whole, not cut at its end.
        assert.ok(
          await page.evaluate(() => {
            const g = globalThis as unknown as {
              document: {
                querySelector(s: string): { clientWidth: number; placeholder: string };
                createElement(t: 'canvas'): {
                  getContext(k: '2d'): { font: string; measureText(t: string): { width: number } };
                };
              };
              getComputedStyle(e: unknown): { font: string; paddingLeft: string; paddingRight: string };
            };
            const input = g.document.querySelector('#host-filter');
            const style = g.getComputedStyle(input);
            const measure = g.document.createElement('canvas').getContext('2d');
            measure.font = style.font;
            const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return measure.measureText(input.placeholder).width <= room;
          }),
          where('the fleet filter shows its whole placeholder'),
        );
        await snap(page, { path: shot('fleet'), fullPage: true });

        await page.click('[data-testid="add-host"]');
        await page.locator('[data-testid="add-host-dialog"] #join-note').waitFor();
        await checkAccessible(page, where('add-host dialog'));
        await snap(page, { path: shot('add-host') });
        await page.click('button[type="submit"][form="join-token-form"]');
        await page.locator('[data-testid="join-command"]').waitFor();
        // The install command first, what the host needs, then (folded) the plain enroll.
        assert.match((await page.locator('[data-testid="join-command"]').textContent()) ?? '', /install\.sh/);
        assert.match(
          (await page.locator('[data-testid="join-requirements"]').textContent()) ?? '',
          /Node\.js 20\.19/,
        );
        await page.locator('[data-testid="join-enroll"] summary').click();
        assert.match(
          (await page.locator('[data-testid="join-enroll-command"]').textContent()) ?? '',
          /^KEEL_JOIN_TOKEN=\S+ keel-agent enroll /,
        );
        await checkAccessible(page, where('add-host dialog with its command'));
        await snap(page, { path: shot('add-host-command') });
        await page.keyboard.press('Escape');
        await page.locator('[data-testid="join-command"]').waitFor({ state: 'detached' });

        const realId = await realHostId(page);
        await navigate(page, `/hosts/${realId}`);
        await page.locator('[data-testid="host-history-row"]').first().waitFor();
        await page.locator('[data-testid="host-capabilities"]').waitFor();
        await checkAccessible(page, where('host page'));
        await snap(page, { path: shot('host'), fullPage: true });

        await processesPage(page, realId, viewport, where, shot);

        // The process page: its live console (the hostile line's colour drawn as a span, its
        // markup as text) and its stored output.
        await navigate(page, `/hosts/${realId}/processes/console-echo`);
        await page
          .locator('[data-testid="console-output"]')
          .filter({ hasText: `got hi ${viewport}` })
          .waitFor();
        await page.locator('[data-testid="log-line"]').first().waitFor();
        await checkAccessible(page, where('process page'));
        await snap(page, { path: shot('process'), fullPage: true });
        assert.ok(
          await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
          'the process page is no wider than the viewport',
        );

        // The fleet-wide Processes page and Log search: the process is listed and its console line
        // is found. Their axe checks (dark and light, desktop and phone, with a listed process and
        // with hits) are test/process-templates-console.test.ts's rounds, not repeated here.
        await navigate(page, '/processes');
        await page.locator('[data-testid="fleet-process-row"][data-name="console-echo"]').waitFor();
        await navigate(page, '/logs');
        await page.fill('[data-testid="log-search-q"]', 'got hi');
        // The console line is stored a moment after it was shown live: search until it is.
        await waitFor(
          async () => {
            await page.press('[data-testid="log-search-q"]', 'Enter');
            const status = page.locator('[data-testid="log-search-status"]');
            await waitFor(async () => /found in/.test(await status.innerText()), 15_000, 'search ended');
            return (await page.locator('[data-testid="log-search-hit"] mark').count()) > 0;
          },
          30_000,
          'the console line found by log search',
        );

        await navigate(page, `/hosts/${realId}/metrics`);
        await page.locator('[data-testid="metrics-chart"] canvas').first().waitFor();
        await checkAccessible(page, where('host metrics'));
        await snap(page, { path: shot('metrics'), fullPage: true });

        await navigate(page, `/hosts/${ids['odd-types']}`);
        await page.locator('h1', { hasText: 'odd-types' }).waitFor();
        await checkAccessible(page, where('host page with odd facts'));

        await navigate(page, `/hosts/${ids.long}`);
        await page.locator('h1').filter({ hasText: 'edge-' }).waitFor();
        await page.click('[data-testid="revoke"]');
        await page.locator('[data-testid="revoke-dialog"] h2').waitFor();
        await checkAccessible(page, where('revoke dialog'));
        await snap(page, { path: shot('revoke') });
        await page.keyboard.press('Escape');

        await navigate(page, '/audit');
        await page.locator('[data-testid="audit-row"]').first().waitFor();
        // A user target (the sign-ins) reads as the user's name, as a host target does.
        await page.locator('[data-testid="audit-target-user"]', { hasText: username }).first().waitFor();
        await checkAccessible(page, where('audit'));
        await snap(page, { path: shot('audit'), fullPage: true });

        await navigate(page, '/admin/users');
        await page.locator('[data-testid="user-row"]').first().waitFor();
        // No host groups here: the table says what one is instead of standing empty.
        await page.locator('[data-testid="no-groups"]', { hasText: 'No host groups yet.' }).waitFor();
        await checkAccessible(page, where('users and groups'));
        await snap(page, { path: shot('users'), fullPage: true });

        // My account, then 2FA enrollment up to the QR code (not confirmed: later rounds sign in
        // with the password alone).
        await navigate(page, '/settings/account');
        await page.locator('[data-testid="two-factor-setup"]').waitFor();
        await page.locator('[data-testid="sessions"] tbody tr').first().waitFor();
        await checkAccessible(page, where('my account'));
        await page.fill('#tf-password', password);
        await page.click('[data-testid="two-factor-setup"]');
        await page.locator('[data-testid="two-factor-qr"]').waitFor();
        assert.match(
          (await page.locator('[data-testid="two-factor-qr"]').getAttribute('src')) ?? '',
          /^data:image\/svg\+xml;base64,/,
        );
        await checkAccessible(page, where('2FA enrollment'));
        await snap(page, { path: shot('two-factor'), fullPage: true });

        await page.click('[data-testid="user-menu"]');
        await page.locator('[data-testid="logout"]').waitFor();
        await checkAccessible(page, where('user menu'));
        await page.keyboard.press('Escape');

        // A path the console does not have: its error page.
        await navigate(page, '/no-such-page');
        await page.locator('h1', { hasText: 'Page not found' }).waitFor();
        // It names the path instead of repeating the heading ("Not Found"), and offers no Retry.
        await page.getByText('Nothing in the console is at /no-such-page').waitFor();
        assert.equal(await page.getByRole('button', { name: 'Retry' }).count(), 0);
        await checkAccessible(page, where('page not found'));
        await snap(page, { path: shot('not-found') });
        assert.deepEqual(
          pageErrors.map((e) => e.message),
          [],
        );
      } finally {
        await context.close();
      }
      assert.deepEqual(violations, [], `axe (WCAG 2.1 A/AA) found:\n${violations.join('\n')}`);
    },
  );
}

test(
  'keyboard: tab to the main actions, Escape closes dialogs and menus, focus returns',
  // A hang guard (~8 s quiet; 60 s was hit at load 17-31).
  { timeout: 150_000 },
  async () => {
    // A fresh load of the fleet page, signed in: its first Tab is checked below.
    const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin());
    try {
      await fleetReady(page);
      const focused = () =>
        page.evaluate(
          () =>
            document.activeElement?.getAttribute('data-testid') ??
            document.activeElement?.textContent?.trim() ??
            '',
        );

      /** Presses Tab until `match` is focused (at most `max` times). */
      async function tabTo(
        match: (el: { testid: string | null; text: string; tag: string }) => boolean,
        max = 40,
      ) {
        for (let i = 0; i < max; i++) {
          await page.keyboard.press('Tab');
          const el = await page.evaluate(() => ({
            testid: document.activeElement?.getAttribute('data-testid') ?? null,
            text: (document.activeElement?.textContent ?? '').trim(),
            tag: document.activeElement?.tagName ?? '',
          }));
          if (match(el)) {
            // Focus is visible (WCAG 2.4.7, which axe cannot see): an outline is drawn.
            const outline = await page.evaluate(() => {
              const style = getComputedStyle(document.activeElement!);
              return `${style.outlineStyle} ${style.outlineWidth}`;
            });
            assert.doesNotMatch(outline, /^none|\b0px$/, `focus outline of ${JSON.stringify(el)}`);
            return;
          }
        }
        assert.fail(`not reached by Tab within ${max} presses`);
      }

      // The first Tab on a fresh page lands on "Skip to content", which moves focus to the page.
      await page.keyboard.press('Tab');
      assert.equal(await focused(), 'Skip to content');
      await page.keyboard.press('Enter');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');

      // Add host: reached by Tab, opened by Enter, focus inside; Escape closes and focus comes back.
      await tabTo((el) => el.testid === 'add-host');
      await page.keyboard.press('Enter');
      const dialog = page.locator('[data-testid="add-host-dialog"]');
      await dialog.locator('#join-note').waitFor();
      assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'focus is in the dialog');
      // Tab stays inside the modal dialog.
      for (let i = 0; i < 8; i++) {
        await page.keyboard.press('Tab');
        assert.ok(
          await page.evaluate(
            () => !!document.activeElement?.closest('dialog') || document.activeElement === document.body,
          ),
          'Tab stays in the dialog',
        );
      }
      await page.keyboard.press('Escape');
      await dialog.locator('#join-note').waitFor({ state: 'detached' });
      assert.equal(await focused(), 'add-host', 'focus returns to Add host');

      // The user menu: Enter opens it on its first item, Escape closes it and returns to the button.
      await page.locator('[data-testid="user-menu"]').focus();
      await page.keyboard.press('Enter');
      await waitFor(async () => (await focused()) === 'my-account', 5000, 'menu item focused');
      await page.keyboard.press('Escape');
      assert.equal(await focused(), 'user-menu');

      // A host: its link is reached by Tab and opens the host page, where Ping is reached by Tab.
      await page.locator('#host-filter').focus();
      await tabTo((el) => el.tag === 'A' && el.text === 'real-host');
      await page.keyboard.press('Enter');
      await page.waitForURL(/\/hosts\//);
      await page.locator('[data-testid="ping"]:not([disabled])').waitFor();
      await tabTo((el) => el.testid === 'ping');
      await page.keyboard.press('Enter');
      await page.getByText(/Pong in [\d.]+ ms/).waitFor();
      // Revoke opens its dialog on Enter; Escape cancels it and focus goes back to Revoke.
      await tabTo((el) => el.testid === 'revoke');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="revoke-confirm"]').waitFor();
      await page.keyboard.press('Escape');
      await page.locator('[data-testid="revoke-confirm"]').waitFor({ state: 'detached' });
      assert.equal(await focused(), 'revoke');

      // The audit trail: the filter and "Verify chain" are reached by Tab and work from the keyboard.
      await navigate(page, '/audit');
      await page.locator('[data-testid="audit-row"]').first().waitFor();
      await tabTo((el) => el.testid === 'audit-filter');
      await tabTo((el) => el.testid === 'audit-verify');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="audit-verdict"][data-ok="true"]').waitFor();
      // An entry's detail is cut to one line; Enter on it shows the whole of it (a title alone
      // reached neither the keyboard nor a phone).
      await tabTo((el) => el.tag === 'SUMMARY');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="audit-detail-full"]').first().waitFor();
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
  'hosts with null, partial, mistyped or huge stored facts render with placeholders',
  // A hang guard, like the others here.
  { timeout: 150_000 },
  async () => {
    const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin());
    try {
      await fleetReady(page);
      assert.equal(await page.getByText('Loading hosts…').count(), 0);
      const row = (name: string) => page.locator('[data-testid="host-row"]').filter({ hasText: name });
      assert.match((await row('odd-none').textContent()) ?? '', /no facts yet/);
      assert.match((await row('odd-string').textContent()) ?? '', /no facts yet/);
      assert.match((await row('odd-partial').textContent()) ?? '', /only-a-hostname/);
      // Controls and bidi overrides are shown as U+FFFD, never acted on.
      assert.match((await row('odd-controls').textContent()) ?? '', /bell\uFFFDtab\uFFFDbidi\uFFFDevil/);

      for (const name of [...Object.keys(ODD_HOSTS), 'odd-none']) {
        await navigate(page, `/hosts/${ids[name]}`);
        await page.locator('h1', { hasText: name }).waitFor();
        await page.locator('#sys-title').waitFor();
        await page.locator('[data-testid="host-capabilities"]').waitFor();
      }
      // Two disks with the same mount both show.
      await navigate(page, `/hosts/${ids['odd-types']}`);
      await page.locator('h1', { hasText: 'odd-types' }).waitFor();
      await waitFor(
        async () => (await page.locator('[data-testid="disk-row"]').count()) === 2,
        5000,
        'two disks',
      );

      // What the database cannot hold (NUL) or a future API might send (wrong top-level types, a host
      // without an id, capabilities) reaches the console through the same boundary.
      await page.route('**/api/v1/hosts', async (route) => {
        const res = await route.fetch();
        const body = (await res.json()) as { hosts: Record<string, unknown>[] };
        body.hosts.push(
          { name: 'no id at all' },
          { id: 'x-nul', name: 'nul\u0000name', online: 'yes', facts: { hostname: 'a\u0000b', cpu: null } },
          {
            id: 'x-caps',
            name: 'with-capabilities',
            online: true,
            enrolledAt: 12,
            facts: null,
            capabilities: {
              agentVersion: '9.9.9',
              requests: ['ping', 'facts.refresh'],
              streams: ['events'],
              channels: [7],
            },
          },
        );
        await route.fulfill({ response: res, json: body });
      });
      await page.goto('/');
      await row('nul\uFFFDname').waitFor();
      await row('with-capabilities').waitFor();
      assert.equal(await row('no id at all').count(), 0);
      await page.route('**/api/v1/hosts/x-caps', (route) =>
        route.fulfill({ status: 404, json: { error: { code: 'host.not_found', message: 'No such host.' } } }),
      );
      await row('with-capabilities').locator('a').click();
      const caps = page.locator('[data-testid="host-capabilities"]');
      await caps.getByText('facts.refresh').waitFor();
      assert.match(
        (await caps.textContent()) ?? '',
        /Requests\s*ping\s*facts\.refresh\s*Streams\s*events\s*Channels\s*none/,
      );
      assert.equal(
        (await caps.locator('[data-testid="capabilities-source"]').textContent())?.trim(),
        'announced by keel-agent 9.9.9',
      );
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
  'a 255-character host name and huge facts never widen a page; the full value is on hover',
  // A hang guard, like the others here.
  { timeout: 150_000 },
  async () => {
    for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
      const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin(), { viewport });
      try {
        await fleetReady(page);
        const fits = async (what: string) => {
          const m = await page.evaluate(() => {
            const table = document.querySelector('table');
            return {
              page: document.documentElement.scrollWidth,
              view: innerWidth,
              table: table ? Math.ceil(table.getBoundingClientRect().right) : 0,
              tableScroll: table?.parentElement?.scrollWidth ?? 0,
              wrap: table?.parentElement?.clientWidth ?? 0,
            };
          });
          assert.ok(
            m.page <= m.view,
            `${what} (${viewport}): page ${m.page} px wide in a ${m.view} px viewport`,
          );
          assert.ok(m.table <= m.view, `${what} (${viewport}): table ends at ${m.table} px of ${m.view}`);
          assert.ok(
            m.tableScroll <= m.wrap,
            `${what} (${viewport}): table scrolls ${m.tableScroll} px in ${m.wrap}`,
          );
        };
        await fits('fleet');
        const link = page.locator(`[data-testid="host-row"][data-host-id="${ids.long}"] a`);
        assert.equal(await link.getAttribute('title'), LONG_NAME);
        assert.ok(await link.evaluate((a) => a.scrollWidth > a.clientWidth), 'the long name is cut');
        await snap(page, { path: join(shots, `long-name-fleet-${viewport}.png`), fullPage: true });

        for (const [id, name] of [
          [ids.long, 'edge-'],
          [ids['odd-huge'], 'odd-huge'],
        ] as const) {
          await navigate(page, `/hosts/${id}`);
          await page.locator('h1', { hasText: name }).waitFor();
          await page.locator('#sys-title').waitFor();
          await fits('host page');
        }
        await snap(page, { path: join(shots, `huge-facts-host-${viewport}.png`) });
        await navigate(page, `/hosts/${ids.long}`);
        await page.locator('h1', { hasText: 'edge-' }).waitFor();
        const h1 = page.locator('h1');
        assert.equal(await h1.getAttribute('title'), LONG_NAME);
        assert.ok(await h1.evaluate((h) => h.getBoundingClientRect().right <= innerWidth));
        await snap(page, { path: join(shots, `long-name-host-${viewport}.png`) });
        await page.click('[data-testid="revoke"]');
        const title = page.locator('[data-testid="revoke-dialog"] h2');
        assert.equal(await title.getAttribute('title'), `Revoke ${LONG_NAME}?`);
        assert.ok(await title.evaluate((h) => h.getBoundingClientRect().right <= innerWidth));
        await page.keyboard.press('Escape');

        await navigate(page, '/audit');
        await page.locator('[data-testid="audit-row"]').first().waitFor();
        await fits('audit');
        // Beside a long host name the "host" label keeps its one line; only the name is cut.
        const label = page
          .locator('[data-testid="audit-row"]', { hasText: 'host.revoke' })
          .locator('.target .line > .faint');
        assert.equal(await label.textContent(), 'host');
        const box = await label.boundingBox();
        assert.ok(box && box.height < 24 && box.width > 20, `host label box ${JSON.stringify(box)}`);
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
