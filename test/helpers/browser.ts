// Real Chromium (Debian's package) driven by playwright-core, for console tests.
import { chromium, type Browser, type Page } from 'playwright-core';

/** Chromium from the Debian package; override with KEEL_CHROMIUM. */
export const chromiumPath = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Launches headless Chromium and opens `baseUrl`. Uncaught page errors are collected in
 * `pageErrors` so a test can assert the console stayed healthy.
 */
export async function openConsole(
  baseUrl: string,
  viewport = { width: 1280, height: 800 },
): Promise<{ browser: Browser; page: Page; pageErrors: Error[] }> {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ baseURL: baseUrl, viewport });
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

/** Signs in through the login form and waits until the console has left /login. */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.waitForURL(/\/login/);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
}
