// Proves the access flows end to end in real Chromium against a real controller: an admin creates a viewer scoped to host groups and grants them in the Users page (the generated password shown once); the viewer sees only those groups' hosts, no action buttons, and the API refuses actions; a grant removed while the viewer's fleet page is open drops that group's hosts live (no reload), and the last one stops the live updates ("Stopped") and empties the list; a user enrolls 2FA in My account with the QR (which encodes the key shown), gets ten recovery codes, and then signs in with a code.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generate, generateURI } from 'otplib';
import QRCode from 'qrcode';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, navigate, openPage, signIn } from './helpers/browser.ts';
import { startTestController, waitFor } from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

let ctl: Awaited<ReturnType<typeof startTestController>>;
let browser: Browser;
const ids: Record<string, string> = {};

before(async () => {
  ctl = await startTestController();
  for (const name of ['game-1', 'game-2', 'db-1']) ids[name] = await storeHost(ctl, { name, facts: null });
  const owner = (await ctl.services.users.list()).find((u) => u.username === ctl.firstAdmin!.username)!;
  await ctl.services.groups.create(
    { id: owner.id, ip: null },
    { name: 'game servers', hostIds: [ids['game-1']!, ids['game-2']!] },
  );
  await ctl.services.groups.create(
    { id: owner.id, ip: null },
    { name: 'db servers', hostIds: [ids['db-1']!] },
  );
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await ctl?.close();
});

/** The host ids the fleet list shows. */
async function shownHosts(page: Page): Promise<string[]> {
  const ids = await page
    .locator('[data-testid="host-row"]')
    .evaluateAll((els) =>
      els.map((e) =>
        (e as unknown as { getAttribute(n: string): string | null }).getAttribute('data-host-id'),
      ),
    );
  return ids.map(String).sort();
}

/** Grants `role` on `group` to `username` from the Users page row. */
async function grant(admin: Page, username: string, group: string) {
  const row = admin.locator('[data-testid="user-row"]', { hasText: username });
  await admin.getByLabel(`Group for ${username}`, { exact: true }).selectOption({ label: group });
  await admin.getByLabel(`Role for ${username}`, { exact: true }).selectOption('viewer');
  await row.getByRole('button', { name: 'Grant', exact: true }).click();
  await row.getByText(`viewer on ${group}`).waitFor({ timeout: 15_000 });
}

test(
  'an admin creates a scoped viewer in the console; the viewer sees only the granted groups, live',
  { timeout: 180_000 },
  async () => {
    const a = await openPage(browser, ctl.url);
    const v = await openPage(browser, ctl.url);
    try {
      // openPage loaded the console, which sent each to /login.
      const admin = a.page;
      await signIn(admin, ctl.firstAdmin!.username, ctl.firstAdmin!.password);
      await navigate(admin, '/admin/users');
      await admin.locator('[data-testid="user-row"]').first().waitFor();
      await admin.fill('#new-username', 'vera');
      await admin.selectOption('#new-role', 'viewer');
      await admin.getByLabel('Only hosts of granted groups').check();
      await admin.click('[data-testid="create-user"]');
      const created = admin.locator('[data-testid="created-user"]');
      await created.waitFor({ timeout: 15_000 });
      const password = ((await created.locator('code').textContent()) ?? '').trim();
      assert.ok(password.length >= 12, 'a generated password is shown');
      await grant(admin, 'vera', 'game servers');
      await grant(admin, 'vera', 'db servers');

      const viewer = v.page;
      await signIn(viewer, 'vera', password);
      await viewer.locator('[data-testid="host-row"]').first().waitFor({ timeout: 15_000 });
      await waitFor(async () => (await shownHosts(viewer)).length === 3, 15_000, 'three hosts');
      assert.deepEqual(await shownHosts(viewer), [ids['game-1'], ids['game-2'], ids['db-1']].sort());
      await viewer.locator('.link-live').waitFor({ timeout: 15_000 });

      // No action is offered, and the API refuses one anyway.
      assert.equal(await viewer.locator('[data-testid="add-host"]').count(), 0);
      const detail = viewer.waitForResponse((r) => r.url().endsWith(`/api/v1/hosts/${ids['game-1']}`));
      await navigate(viewer, `/hosts/${ids['game-1']}`);
      await viewer.getByRole('heading', { name: 'game-1' }).waitFor({ timeout: 15_000 });
      await detail;
      assert.equal(await viewer.getByRole('button', { name: /ping|refresh|revoke/i }).count(), 0);
      const ping = await viewer.evaluate(
        async (id) => (await fetch(`/api/v1/hosts/${id}/ping`, { method: 'POST' })).status,
        ids['game-1']!,
      );
      assert.equal(ping, 403, "a viewer's ping");

      // The admin removes a grant while the viewer's fleet page is open: its hosts go, no reload.
      await navigate(viewer, '/');
      await waitFor(async () => (await shownHosts(viewer)).length === 3, 15_000, 'three hosts again');
      await viewer.locator('.link-live').waitFor({ timeout: 15_000 });
      await viewer.evaluate(() => {
        (globalThis as unknown as { keelMarker: boolean }).keelMarker = true;
      });
      await admin.getByRole('button', { name: 'Remove viewer on db servers from vera' }).click();
      await waitFor(async () => (await shownHosts(viewer)).length === 2, 20_000, 'db-1 gone from the list');
      assert.deepEqual(await shownHosts(viewer), [ids['game-1'], ids['game-2']].sort());
      // The last grant: the stream ends for good and the list empties.
      await admin.getByRole('button', { name: 'Remove viewer on game servers from vera' }).click();
      await viewer.locator('.link-ended').waitFor({ timeout: 20_000 });
      await viewer.getByText('Stopped', { exact: true }).waitFor();
      await waitFor(async () => (await shownHosts(viewer)).length === 0, 20_000, 'no host left');
      assert.equal(
        await viewer.evaluate(() => (globalThis as unknown as { keelMarker?: boolean }).keelMarker),
        true,
        'the page was not reloaded',
      );
      assert.deepEqual(
        [...a.pageErrors, ...v.pageErrors].map((e) => e.message),
        [],
      );
    } finally {
      await a.context.close();
      await v.context.close();
    }
  },
);

test('2FA enrollment with the QR in My account, then sign-in with a code', { timeout: 180_000 }, async () => {
  const password = 'enrolls two factors with a phone 2026';
  await ctl.services.users.create({ username: 'quinn', password, role: 'operator', actor: 'system' });
  const { context, page, pageErrors } = await openPage(browser, ctl.url);
  try {
    await signIn(page, 'quinn', password);
    await navigate(page, '/settings/account');
    await page.locator('[data-testid="two-factor-setup"]').waitFor({ timeout: 15_000 });
    // No tokens yet: the table says so instead of standing empty under its headings.
    await page.locator('[data-testid="no-tokens"]', { hasText: 'You have no API tokens yet.' }).waitFor();
    await page.fill('#tf-password', password);
    await page.click('[data-testid="two-factor-setup"]');
    const qr = page.locator('[data-testid="two-factor-qr"]');
    await qr.waitFor({ timeout: 15_000 });
    const secret = ((await page.locator('[data-testid="two-factor-secret"]').textContent()) ?? '').trim();
    assert.match(secret, /^[A-Z2-7]{16,}$/, 'a base32 key');
    // The QR is the otpauth URI of that key for this user (what an authenticator app scans).
    const src = (await qr.getAttribute('src')) ?? '';
    const svg = Buffer.from(src.replace(/^data:image\/svg\+xml;base64,/, ''), 'base64').toString('utf8');
    const expected = await QRCode.toString(generateURI({ issuer: 'Keel', label: 'quinn', secret }), {
      type: 'svg',
      errorCorrectionLevel: 'M',
      margin: 2,
    });
    assert.equal(svg, expected);
    assert.ok(
      await qr.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth > 0),
      'the QR image renders',
    );
    // The step before the current one is within the skew window, so the sign-in below can use the
    // current step (a code is never accepted twice).
    await page.fill('#tf-code', await generate({ secret, epoch: Math.floor(Date.now() / 1000) - 30 }));
    await page.click('[data-testid="two-factor-confirm"]');
    const codes = page.locator('[data-testid="recovery-codes"] code');
    await waitFor(async () => (await codes.count()) === 10, 15_000, 'ten recovery codes');
    assert.equal(new Set(await codes.allTextContents()).size, 10);

    await page.click('[data-testid="user-menu"]');
    await page.click('[data-testid="logout"]');
    await page.waitForURL(/\/login/);
    await page.fill('#login-username', 'quinn');
    await page.fill('#login-password', password);
    await page.click('[data-testid="login-submit"]');
    await page.locator('#login-code').fill(await generate({ secret }));
    await page.click('[data-testid="code-submit"]');
    await page.waitForURL((url) => !url.pathname.startsWith('/login'), { timeout: 15_000 });
    await navigate(page, '/settings/account');
    await page.locator('[data-testid="two-factor-on"]').waitFor({ timeout: 15_000 });
    assert.deepEqual(
      pageErrors.map((e) => e.message),
      [],
    );
  } finally {
    await context.close();
  }
});
