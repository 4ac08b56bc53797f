// Proves the console works in real Chromium against a running controller: sign-in, live host rows, and the Add host join command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';

/** Chromium from the Debian package; override with KEEL_CHROMIUM. */
export const chromiumPath = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Launch headless Chromium, open a fresh page on `baseUrl` and return both; close `browser` when done.
 * Uncaught page errors are collected in `pageErrors` so a test can assert the console stayed healthy.
 * @example const { browser, page } = await openConsole('http://127.0.0.1:8080'); t.after(() => browser.close());
 */
export async function openConsole(
  baseUrl: string,
): Promise<{ browser: Browser; page: Page; pageErrors: Error[] }> {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ baseURL: baseUrl, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const pageErrors: Error[] = [];
    page.on('pageerror', (err) => pageErrors.push(err));
    await page.goto(baseUrl);
    return { browser, page, pageErrors };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

/** Sign in through the login form and wait until the console has left /login. */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.waitForURL(/\/login/);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
}

test('console: sign in, see host rows, Add host shows a join command', async (t) => {
  const baseUrl = process.env.KEEL_TEST_URL;
  if (!baseUrl) {
    t.skip('KEEL_TEST_URL is not set (needs a running controller with at least one enrolled host)');
    return;
  }
  const { browser, page, pageErrors } = await openConsole(baseUrl);
  t.after(() => browser.close());

  await signIn(page, process.env.KEEL_TEST_USER ?? 'admin', process.env.KEEL_TEST_PASSWORD ?? '');

  const rows = page.locator('[data-testid="host-row"]');
  await rows.first().waitFor();
  assert.ok((await rows.count()) >= 1, 'at least one host row');
  const online = await rows.first().getAttribute('data-online');
  assert.ok(online === 'true' || online === 'false', 'host rows carry data-online');
  assert.ok(await rows.first().getAttribute('data-host-id'), 'host rows carry data-host-id');

  await page.click('[data-testid="add-host"]');
  await page.click('button[type="submit"][form="join-token-form"]');
  const command = page.locator('[data-testid="join-command"]');
  await command.waitFor();
  assert.match((await command.textContent()) ?? '', /keel-agent enroll/);

  assert.deepEqual(
    pageErrors.map((e) => e.message),
    [],
    'no uncaught errors in the page',
  );
});
