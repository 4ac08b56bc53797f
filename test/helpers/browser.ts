// Real Chromium (Debian's package) driven by playwright-core, for console tests: launching, pages
// in a given theme and viewport, signing in (through the form, or a reused session where the
// sign-in is not what a test proves), moving between pages through the console's own router, and
// axe-core's WCAG checks run inside the page.
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

/** How a console page is opened: its viewport and (system colour scheme) theme. */
export interface PageOptions {
  viewport?: ViewportName;
  theme?: ThemeName;
}

/** A fresh context (own cookies unless `storageState` gives some) with one page, not yet loaded. */
async function newConsolePage(
  browser: Browser,
  baseUrl: string,
  opts: PageOptions,
  storageState?: StorageState,
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
    storageState,
  });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const pageErrors: Error[] = [];
    page.on('pageerror', (err) => pageErrors.push(err));
    return { context, page, pageErrors };
  } catch (err) {
    await context.close();
    throw err;
  }
}

/**
 * A fresh context (own cookies) and page at `baseUrl` in a theme (through the system colour
 * scheme the console follows when nothing is saved) and viewport. Uncaught page errors are
 * collected in `pageErrors` so a test can assert the console stayed healthy.
 */
export async function openPage(
  browser: Browser,
  baseUrl: string,
  opts: PageOptions = {},
): Promise<{ context: BrowserContext; page: Page; pageErrors: Error[] }> {
  const opened = await newConsolePage(browser, baseUrl, opts);
  try {
    await opened.page.goto(baseUrl);
    return opened;
  } catch (err) {
    await opened.context.close();
    throw err;
  }
}

/** A user's password sign-in. */
export interface Credentials {
  username: string;
  password: string;
}

type StorageState = Exclude<NonNullable<Parameters<Browser['newContext']>[0]>['storageState'], string>;

/** Session cookies of this process's sign-ins through the API, by controller and user. */
const sessions = new Map<string, Promise<string>>();

/**
 * The `keel_session` cookie of a password sign-in through the API (POST /api/v1/auth/login, the
 * request the login form sends, from the controller's own origin), made once per controller and
 * user in this process and shared by every context `openSignedIn` opens for them; `fresh` makes a
 * session of its own. The session's CSRF token is not in the cookie: the console asks
 * GET /auth/session for it on every load, as it does after a sign-in through the form.
 */
async function sessionCookie(baseUrl: string, user: Credentials, fresh: boolean): Promise<string> {
  const key = `${new URL(baseUrl).origin} ${user.username}`;
  const cached = fresh ? undefined : sessions.get(key);
  if (cached) return cached;
  const made = (async () => {
    const origin = new URL(baseUrl).origin;
    const res = await fetch(`${origin}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ username: user.username, password: user.password }),
    });
    const body = (await res.json()) as { stage?: string };
    assert.equal(res.status, 200, `sign-in of ${user.username}: ${JSON.stringify(body)}`);
    assert.equal(body.stage, 'ok', `${user.username} is signed in with the password alone`);
    const cookie = /(?:^|[,\s])keel_session=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1];
    assert.ok(cookie, 'the sign-in set keel_session');
    return cookie;
  })();
  if (!fresh) {
    sessions.set(key, made);
    made.catch(() => sessions.delete(key));
  }
  return made;
}

/**
 * A fresh context and page, already signed in as `user`, at `path` (default `/`) of the console,
 * in a theme and viewport as `openPage`. For tests where the sign-in is not what they prove: the
 * login form costs the shared Chromium ~0.6 CPU-s a context (a page load, the form, the fleet page
 * loaded again), so the context starts with the session cookie of one sign-in through the API per
 * controller and user (sessionCookie), as a browser that signed in before has it. The login form
 * itself stays tested through `signIn` (access-console-flows, console-pages' first round, console
 * and terminal-console). `ownSession`: a session only this context has, for a test that signs
 * out or ends sessions.
 */
export async function openSignedIn(
  browser: Browser,
  baseUrl: string,
  user: Credentials,
  opts: PageOptions & { path?: string; ownSession?: boolean } = {},
): Promise<{ context: BrowserContext; page: Page; pageErrors: Error[] }> {
  const origin = new URL(baseUrl);
  const cookie = await sessionCookie(baseUrl, user, opts.ownSession ?? false);
  const opened = await newConsolePage(browser, baseUrl, opts, {
    cookies: [
      {
        name: 'keel_session',
        value: cookie,
        domain: origin.hostname,
        path: '/',
        expires: -1,
        httpOnly: true,
        secure: origin.protocol === 'https:',
        sameSite: 'Strict',
      },
    ],
    origins: [],
  });
  try {
    await opened.page.goto(opts.path ?? '/');
    // The signed-in console's <main id="main"> (the login and error pages have their own <main>).
    await opened.page.locator('main').first().waitFor();
    const at = new URL(opened.page.url()).pathname;
    assert.ok(!at.startsWith('/login'), `${user.username}'s reused session was refused (at ${at})`);
    await opened.page.locator('#main').waitFor();
    return opened;
  } catch (err) {
    await opened.context.close();
    throw err;
  }
}

/**
 * Goes to `path` through the console's own router, as a click on one of its links does: a
 * SvelteKit client-side navigation (the page's data loaded, the same document) instead of
 * `page.goto`'s full load, which costs the shared Chromium ~0.25–0.5 CPU-s (the console's
 * JavaScript parsed and run again, axe-core evaluated again, the browser's own toolbar laid out)
 * against ~0.05–0.1. A throwaway link inside the app's root is clicked (SvelteKit handles clicks
 * on links there). Keep `page.goto` where a fresh load is the point (a deep link, a reload, what a
 * page shows on its first render).
 *
 * @example await navigate(page, `/hosts/${hostId}/processes`);
 */
export async function navigate(page: Page, path: string): Promise<void> {
  const target = new URL(path, page.url());
  assert.equal(target.origin, new URL(page.url()).origin, 'navigate stays in the console');
  await page.evaluate(
    (href) => {
      const { document } = globalThis as unknown as { document: LinkDocument };
      const link = document.createElement('a');
      link.href = href;
      (document.querySelector('#main') ?? document.querySelector('body > div') ?? document.body).appendChild(
        link,
      );
      link.click();
      link.remove();
    },
    target.pathname + target.search + target.hash,
  );
  await page.waitForURL((u) => u.pathname === target.pathname && u.search === target.search);
  // The router changes the URL, then renders the new page's loaded data (Svelte flushes in a
  // microtask): a frame later the old page is gone.
  await page.evaluate(
    () =>
      new Promise((done) =>
        (globalThis as unknown as { requestAnimationFrame(f: () => void): void }).requestAnimationFrame(() =>
          done(undefined),
        ),
      ),
  );
}

/** The part of `document` navigate's page-side callback uses. */
interface LinkDocument {
  body: LinkElement;
  createElement(tag: 'a'): LinkElement & { href: string; click(): void; remove(): void };
  querySelector(selector: string): LinkElement | null;
}
interface LinkElement {
  appendChild(child: LinkElement): void;
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
 *
 * A theme switch changes colours only (web/src/app.css: custom properties and `color-scheme`;
 * AnsiText's light palette), so in the second theme, when the page's markup is the same as in the
 * first (`markupDigest`), only axe's colour rules (`colourRules`) can answer differently and only
 * they run again; the rest ran on that markup in the first theme. A page whose markup changed in
 * between (live data, a theme-dependent label) gets the full set again. The colour rules are most
 * of a check (60-90 % of its time on the host, fleet, audit and users pages), the rest ~0.05-0.15 s
 * of renderer CPU a check (docs/testing.md, 1 Dec). `shot`: with KEEL_TEST_SCREENSHOTS=1, a
 * full-page screenshot `<shot>-<theme>.png` after each theme's check.
 */
export async function axeViolationsInThemes(page: Page, opts: { shot?: string } = {}): Promise<string[]> {
  const was = await shownTheme(page);
  const found: string[] = [];
  let markup: string | undefined;
  for (const theme of was === 'dark' ? (['dark', 'light'] as const) : (['light', 'dark'] as const)) {
    if (theme !== was) await useTheme(page, theme);
    const now = await markupDigest(page);
    const rules = markup === now ? colourRules : undefined;
    markup ??= now;
    for (const v of await axeViolations(page, rules)) found.push(`${theme}: ${v}`);
    if (opts.shot) await snapshot(page, { path: `${opts.shot}-${theme}.png`, fullPage: true });
  }
  await useTheme(page, was);
  return found;
}

/**
 * axe's WCAG checks in both themes (axeViolationsInThemes) at both of `viewports`, for a page state
 * a test reaches in one context only (a dialog after a sign-in with a code, a terminal's player):
 * the page is resized (`page.setViewportSize`) to each viewport, its own first when it is one of
 * them, and back to the size it had; each line is prefixed with the viewport. The console lays out
 * by width alone (CSS `max-width`/`min-width` queries, no pointer, hover or touch queries, no
 * script reading the window's width), so the page at 390 x 844 is laid out as a phone's; the
 * context keeps the touch emulation it was opened with. Every rule runs again at the second
 * viewport (a layout can change what overflows, overlaps or scrolls), the colour rules alone in
 * its second theme. A resize instead of a second context, sign-in and walk to the state: ~0.3-0.6
 * CPU-s of the shared Chromium less per state (docs/testing.md, "What makes a test cheap").
 * `shot`: with KEEL_TEST_SCREENSHOTS=1, full-page screenshots `<shot>-<viewport>-<theme>.png`.
 */
export async function axeViolationsInViews(page: Page, opts: { shot?: string } = {}): Promise<string[]> {
  const was = page.viewportSize();
  assert.ok(was, 'the page has a fixed viewport');
  const names = Object.keys(viewports) as ViewportName[];
  const own = names.find((n) => viewports[n].width === was.width && viewports[n].height === was.height);
  const found: string[] = [];
  try {
    for (const name of own ? [own, ...names.filter((n) => n !== own)] : names) {
      if (name !== own) await resizeTo(page, viewports[name]);
      const shot = opts.shot && `${opts.shot}-${name}`;
      for (const v of await axeViolationsInThemes(page, { shot })) found.push(`${name} ${v}`);
    }
  } finally {
    const now = page.viewportSize();
    if (now?.width !== was.width || now.height !== was.height) await resizeTo(page, was);
  }
  return found;
}

/** Resizes the page and waits two frames: its resize observers have run and it is laid out again. */
async function resizeTo(page: Page, size: { width: number; height: number }): Promise<void> {
  await page.setViewportSize(size);
  for (let i = 0; i < 2; i++)
    await page.evaluate(
      () =>
        new Promise((done) =>
          (globalThis as unknown as { requestAnimationFrame(f: () => void): void }).requestAnimationFrame(
            () => done(undefined),
          ),
        ),
    );
}

/**
 * axe's WCAG 2.1 A/AA rules whose result depends on the page's colours (contrast of text, links
 * told apart from text by colour): what a theme switch can change on the same markup.
 */
export const colourRules = ['color-contrast', 'link-in-text-block'];

/**
 * A digest of the page's markup (the body's HTML and the root's language), equal when unchanged,
 * without the theme toggle: its label and icon name the other theme by design (every rule checks
 * it in both states wherever a page opens in the light theme: console-nav, metrics-console,
 * alerts-console, access-wallet-ton-console).
 */
async function markupDigest(page: Page): Promise<string> {
  return page.evaluate(() => {
    const { document } = globalThis as unknown as {
      document: {
        body: { outerHTML: string };
        documentElement: { lang: string };
        querySelector(s: string): { outerHTML: string } | null;
      };
    };
    const toggle = document.querySelector('[data-testid="theme-toggle"]')?.outerHTML;
    let text = `${document.documentElement.lang}\n${document.body.outerHTML}`;
    if (toggle) text = text.replace(toggle, '');
    // FNV-1a over the UTF-16 code units, with the length: a page's markup is ~50-500 KB.
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    return `${text.length}:${(h >>> 0).toString(16)}`;
  });
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
 * full (`resultTypes`): axe then skips building selectors for every passing element. `rules`
 * runs only those rules (axeViolationsInThemes' second theme: the colour rules).
 */
export async function axeViolations(page: Page, rules?: string[]): Promise<string[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  const context = page.context();
  if (!axeContexts.has(context)) {
    axeContexts.add(context);
    await context.addInitScript({ content: axeSource });
  }
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(axeSource);
  const violations = await page.evaluate(
    async ({ tags, rules }) => {
      const { axe, document } = globalThis as unknown as { axe: AxeRunner; document: PageDocument };
      const result = await axe.run(document, {
        runOnly: rules ? { type: 'rule', values: rules } : { type: 'tag', values: tags },
        resultTypes: ['violations'],
      });
      return result.violations.map((v) => ({
        id: v.id,
        nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary ?? '' })),
      }));
    },
    { tags: wcagTags, rules },
  );
  return violations.flatMap((v) =>
    v.nodes.map((n) => `${v.id}: ${n.target} — ${n.summary.replace(/\s+/g, ' ').trim()}`),
  );
}

/** The part of axe's browser API this file uses. */
interface AxeRunner {
  run(
    context: PageDocument,
    options: { runOnly: { type: 'tag' | 'rule'; values: string[] }; resultTypes: string[] },
  ): Promise<{
    violations: { id: string; nodes: { target: string[]; failureSummary?: string }[] }[];
  }>;
}
