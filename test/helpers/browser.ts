// Real Chromium (Debian's package) driven by playwright-core, for console tests: launching, pages
// in a given theme and viewport, signing in, and axe-core's WCAG checks run inside the page.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../../scripts/chromium-args.mjs';

/**
 * An element as page-side callbacks (`page.evaluate(() => …)`) see it. They run in Chromium; the
 * test program is compiled without the DOM library, so the little they use is declared here.
 */
export interface PageElement {
  id: string;
  tagName: string;
  textContent: string | null;
  scrollWidth: number;
  clientWidth: number;
  parentElement: PageElement | null;
  getAttribute(name: string): string | null;
  closest(selector: string): PageElement | null;
  contains(other: PageElement | null): boolean;
  getBoundingClientRect(): { left: number; right: number; width: number };
}
/** `document` as page-side callbacks see it (declare it in the test module that uses it). */
export interface PageDocument {
  activeElement: PageElement | null;
  body: PageElement;
  documentElement: PageElement;
  querySelector(selector: string): PageElement | null;
}

/**
 * Chromium and its switches (scripts/chromium-args.mjs, shared with the run's browser): Debian's
 * `/usr/bin/chromium` in headless mode, the browser the console is tested in, or KEEL_CHROMIUM.
 * Debian's `chromium-headless-shell` (the same Blink without the full browser around it) used 40 %
 * less CPU for the same console tests (30 Nov, docs/testing.md), so
 * `KEEL_CHROMIUM=/usr/bin/chromium-headless-shell` makes a quicker local run; the suite and CI use
 * the full browser.
 */
export { chromiumPath };

/** The viewports every page is checked in. */
export const viewports = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;
export type ViewportName = keyof typeof viewports;
export type ThemeName = 'dark' | 'light';

/**
 * Headless Chromium; the caller closes it. Under `npm test` the whole run shares one browser
 * (scripts/test-browser.mjs, its endpoint in KEEL_TEST_BROWSER_WS): this connects to it, and
 * `close()` then closes only the contexts this process opened. A browser launch costs ~1 s of CPU
 * here, a context a few milliseconds. Without the shared browser (or when it cannot be reached)
 * this process launches its own.
 */
export async function launchChromium(): Promise<Browser> {
  const shared = process.env.KEEL_TEST_BROWSER_WS;
  if (shared) {
    try {
      return await chromium.connect(shared, { timeout: 30_000 });
    } catch (err) {
      console.error(`note: shared Chromium not reachable (${String(err)}); launching one`);
    }
  }
  return chromium.launch({
    executablePath: chromiumPath,
    args: chromiumArgs,
  });
}

/**
 * A fresh context (own cookies) and page at `baseUrl` in a theme (through the system colour
 * scheme the console follows when nothing is saved) and viewport. Uncaught page errors are
 * collected in `pageErrors` so a test can assert the console stayed healthy.
 */
export async function openPage(
  browser: Browser,
  baseUrl: string,
  opts: { viewport?: ViewportName; theme?: ThemeName } = {},
): Promise<{ context: BrowserContext; page: Page; pageErrors: Error[] }> {
  const phone = opts.viewport === 'phone';
  const context = await browser.newContext({
    baseURL: baseUrl,
    viewport: viewports[opts.viewport ?? 'desktop'],
    colorScheme: opts.theme ?? 'dark',
    // No transitions (app.css honours it): colours are checked at rest, never mid-fade.
    reducedMotion: 'reduce',
    isMobile: phone,
    hasTouch: phone,
  });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const pageErrors: Error[] = [];
    page.on('pageerror', (err) => pageErrors.push(err));
    await page.goto(baseUrl);
    return { context, page, pageErrors };
  } catch (err) {
    await context.close();
    throw err;
  }
}

/**
 * Launches headless Chromium and opens `baseUrl`. Uncaught page errors are collected in
 * `pageErrors` so a test can assert the console stayed healthy.
 */
export async function openConsole(
  baseUrl: string,
  viewport = { width: 1280, height: 800 },
): Promise<{ browser: Browser; page: Page; pageErrors: Error[] }> {
  const browser = await launchChromium();
  try {
    const context = await browser.newContext({ baseURL: baseUrl, viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const pageErrors: Error[] = [];
    page.on('pageerror', (err) => pageErrors.push(err));
    await page.goto(baseUrl);
    return { browser, page, pageErrors };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

/** Whether tests save screenshots (KEEL_TEST_SCREENSHOTS=1). */
export const screenshots = process.env.KEEL_TEST_SCREENSHOTS === '1';

/**
 * Saves a screenshot for a person to look at (`test-results/`), only with KEEL_TEST_SCREENSHOTS=1:
 * nothing asserts on them, and each (most are full-page PNGs) costs the shared Chromium a paint
 * of the whole page and an encode.
 */
export async function snapshot(page: Page, opts: { path: string; fullPage?: boolean }): Promise<void> {
  if (!screenshots) return;
  mkdirSync(dirname(opts.path), { recursive: true });
  await page.screenshot(opts);
}

/**
 * Switches the page to `theme` through the system colour scheme (`page.emulateMedia`), which the
 * console follows while no theme is saved, and waits until the page shows it: the same page
 * checked in both themes without a second context, sign-in and navigation (a context with its
 * sign-in costs the shared Chromium ~1.5 CPU-s, a navigation ~0.4, see docs/testing.md).
 */
export async function useTheme(page: Page, theme: ThemeName): Promise<void> {
  await page.emulateMedia({ colorScheme: theme });
  await page.waitForFunction(
    (t) =>
      (globalThis as unknown as { document: PageDocument }).document.documentElement.getAttribute(
        'data-theme',
      ) === t,
    theme,
    { polling: 50 },
  );
}

/** The theme the page shows now (the console's `data-theme`). */
export async function shownTheme(page: Page): Promise<ThemeName> {
  const t = await page.evaluate(() =>
    (globalThis as unknown as { document: PageDocument }).document.documentElement.getAttribute('data-theme'),
  );
  assert.ok(t === 'dark' || t === 'light', `the console shows a theme (data-theme ${t})`);
  return t;
}

/**
 * axe's WCAG checks (axeViolations) on the page as it is now in the dark and then the light theme
 * (useTheme), each line prefixed with its theme; the page is left in the theme it was in. The
 * page's theme must come from the system colour scheme (nothing saved in the console).
 */
export async function axeViolationsInThemes(page: Page): Promise<string[]> {
  const was = await shownTheme(page);
  const found: string[] = [];
  for (const theme of was === 'dark' ? (['dark', 'light'] as const) : (['light', 'dark'] as const)) {
    if (theme !== was) await useTheme(page, theme);
    for (const v of await axeViolations(page)) found.push(`${theme}: ${v}`);
  }
  await useTheme(page, was);
  return found;
}

/** Signs in through the login form and waits until the console has left /login. */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.waitForURL(/\/login/);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
}

let axeSource: string | undefined;
/** Contexts whose new documents get axe-core at their start (see axeViolations). */
const axeContexts = new WeakSet<BrowserContext>();

/** The WCAG rule sets the console is held to (the handbook's standard: 2.1 A and AA). */
export const wcagTags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

/**
 * Runs axe-core's WCAG 2.1 A/AA rules on the page as it is now and returns one line per failing
 * element ("rule: target — summary"); empty when the page passes. axe is evaluated through the
 * DevTools protocol, so the console's Content-Security-Policy stays on.
 *
 * Cost (it is most of a console test's browser CPU): axe-core is 500 KB of script. The first check
 * in a context also registers it as an init script of the context, so every later document there
 * has it from its start: sent once, and Chromium reuses its compiled code (~10 ms a page against
 * ~80 ms to send and evaluate it again after each navigation). Only violations are reported in
 * full (`resultTypes`): axe then skips building selectors for every passing element.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  const context = page.context();
  if (!axeContexts.has(context)) {
    axeContexts.add(context);
    await context.addInitScript({ content: axeSource });
  }
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async (tags) => {
    const { axe, document } = globalThis as unknown as { axe: AxeRunner; document: PageDocument };
    const result = await axe.run(document, {
      runOnly: { type: 'tag', values: tags },
      resultTypes: ['violations'],
    });
    return result.violations.map((v) => ({
      id: v.id,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary ?? '' })),
    }));
  }, wcagTags);
  return violations.flatMap((v) =>
    v.nodes.map((n) => `${v.id}: ${n.target} — ${n.summary.replace(/\s+/g, ' ').trim()}`),
  );
}

/** The part of axe's browser API this file uses. */
interface AxeRunner {
  run(
    context: PageDocument,
    options: { runOnly: { type: 'tag'; values: string[] }; resultTypes: string[] },
  ): Promise<{
    violations: { id: string; nodes: { target: string[]; failureSummary?: string }[] }[];
  }>;
}
