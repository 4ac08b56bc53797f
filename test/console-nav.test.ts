// Proves the console's main navigation in real Chromium: sections are grouped by area and opened by
// keyboard (Enter opens, Esc closes and gives focus back), a narrow screen gets one Menu button and
// never scrolls sideways, a viewer is offered only the sections the API lets them use, and the open
// menus pass axe (WCAG 2.1 A/AA) in the dark and the light theme (an area on a desktop, the Menu on a
// phone).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { axeViolationsInThemes, launchChromium, openSignedIn } from './helpers/browser.ts';
import { removeDir, startTestController } from './helpers/fleet.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let browser: Browser;

before(
  async () => {
    ctl = await startTestController();
    browser = await launchChromium();
  },
  { timeout: 120_000 },
);

after(async () => {
  await browser?.close();
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

const sideways = (page: Page) =>
  page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');

test('areas open by keyboard on a wide screen; accessible while open', { timeout: 90_000 }, async () => {
  const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!, {
    theme: 'dark',
    viewport: 'desktop',
  });
  try {
    const nav = page.getByRole('navigation', { name: 'Main' });
    const operations = nav.getByRole('button', { name: 'Operations' });
    assert.equal(await operations.getAttribute('aria-expanded'), 'false');
    assert.equal(
      await nav.getByRole('link', { name: 'Jobs' }).isVisible(),
      false,
      'closed areas hide their links',
    );

    await operations.focus();
    await page.keyboard.press('Enter');
    assert.equal(await operations.getAttribute('aria-expanded'), 'true');
    for (const name of ['Jobs', 'Recordings', 'Upgrades']) {
      assert.ok(await nav.getByRole('link', { name }).isVisible(), `${name} shown`);
    }
    const violations = await axeViolationsInThemes(page, { shot: 'test-results/nav-area-desktop' });
    assert.deepEqual(violations, [], `open area passes axe:\n${violations.join('\n')}`);

    // Esc closes and returns focus to the area's button.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Escape');
    assert.equal(await operations.getAttribute('aria-expanded'), 'false');
    assert.ok(
      await operations.evaluate((el) => el === el.ownerDocument.activeElement),
      'focus back on the button',
    );

    // Opening another area closes the first; following a link lands on the page and closes the area.
    await operations.click();
    const monitoring = nav.getByRole('button', { name: 'Monitoring' });
    await monitoring.click();
    assert.equal(await operations.getAttribute('aria-expanded'), 'false');
    await nav.getByRole('link', { name: 'Alerts' }).click();
    await page.waitForURL(/\/alerts$/);
    assert.equal(await monitoring.getAttribute('aria-expanded'), 'false');
    assert.match((await monitoring.getAttribute('class')) ?? '', /current/, 'the area of the page is marked');
    assert.deepEqual(
      pageErrors.map((e) => e.message),
      [],
    );
  } finally {
    await context.close();
  }
});

test(
  'a phone gets one Menu button with every area, and no sideways scroll',
  { timeout: 90_000 },
  async () => {
    const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!, {
      theme: 'light',
      viewport: 'phone',
    });
    try {
      assert.ok((await sideways(page)) <= 0, 'the page does not scroll sideways');
      const nav = page.getByRole('navigation', { name: 'Main' });
      const menu = nav.getByRole('button', { name: 'Menu' });
      assert.equal(await nav.getByRole('link', { name: 'Audit' }).isVisible(), false);
      await menu.focus();
      await page.keyboard.press('Enter');
      assert.equal(await menu.getAttribute('aria-expanded'), 'true');
      for (const name of ['Checks', 'Alerts', 'Proxy nodes', 'Proxy users', 'Jobs', 'Audit', 'Users']) {
        assert.ok(await nav.getByRole('link', { name, exact: true }).isVisible(), `${name} shown`);
      }
      assert.ok((await sideways(page)) <= 0, 'the open menu does not scroll sideways');
      const violations = await axeViolationsInThemes(page, { shot: 'test-results/nav-menu-phone' });
      assert.deepEqual(violations, [], `open menu passes axe:\n${violations.join('\n')}`);
      await page.keyboard.press('Escape');
      assert.equal(await menu.getAttribute('aria-expanded'), 'false');
      assert.ok(await menu.evaluate((el) => el === el.ownerDocument.activeElement), 'focus back on Menu');

      await menu.click();
      await nav.getByRole('link', { name: 'Audit' }).click();
      await page.waitForURL(/\/audit$/);
      assert.equal(await menu.getAttribute('aria-expanded'), 'false', 'navigating closes the menu');
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  },
);

test('a viewer is offered only what a viewer may open', { timeout: 90_000 }, async () => {
  const admin = (await ctl.services.users.list()).find((u) => u.username === ctl.firstAdmin!.username)!;
  await ctl.services.users.createBy(
    { id: admin.id, role: admin.role, ip: null },
    { username: 'nav-viewer', password: 'viewer-pass-123456', role: 'viewer' },
  );
  const { context, page } = await openSignedIn(
    browser,
    ctl.url,
    { username: 'nav-viewer', password: 'viewer-pass-123456' },
    { theme: 'dark', viewport: 'desktop' },
  );
  try {
    const nav = page.getByRole('navigation', { name: 'Main' });
    const labels = (await nav.locator('.area > .nav-link').allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(labels, ['Fleet', 'Monitoring', 'Proxies']);
    // A one-section area is a plain link: a viewer's Proxies holds only the nodes.
    assert.ok(await nav.getByRole('link', { name: 'Proxies' }).isVisible());
  } finally {
    await context.close();
  }
});
