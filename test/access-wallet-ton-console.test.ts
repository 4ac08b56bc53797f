// Proves TON wallet sign-in in the console, in real Chromium against a real controller: with wallet
// sign-in on, a user asks My account for a linking payload, pastes the ton_proof a real wallet v4r2
// (an ed25519 key in the test) made for it, as TON Connect's wallet object, with the password: the
// wallet is linked and listed as TON. Signed out, the sign-in page gives a payload and the pasted
// proof over it signs the user in; a proof for another domain is refused with its message. The
// pages pass axe-core's checks with the TON forms open, in the dark and the light theme on a desktop
// and a phone.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { axeViolationsInViews, launchChromium, openSignedIn } from './helpers/browser.ts';
import { startTestController } from './helpers/fleet.ts';
import { tonWallet } from './helpers/ton-wallet.ts';

const PASSWORD = 'ton console walk 2026 ok';
let ctl: Awaited<ReturnType<typeof startTestController>>;
let browser: Browser;
const wallet = tonWallet('v4r2');

before(async () => {
  ctl = await startTestController();
  const first = ctl.firstAdmin!;
  const row = (await ctl.services.users.list()).find((u) => u.username === first.username)!;
  await ctl.services.users.createBy(
    { id: row.id, role: row.role, ip: null },
    { username: 'tina', password: PASSWORD, role: 'viewer', scoped: false },
  );
  await ctl.services.wallets.setPolicy({ id: row.id, ip: null }, { enabled: true, chainIds: [1] });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await ctl?.close();
});

/** The payload and domain the page shows after "Get a payload". */
async function shownChallenge(page: Page, testId: string): Promise<{ payload: string; domain: string }> {
  const codes = page.locator(`[data-testid="${testId}"] code`);
  await codes.first().waitFor();
  return { payload: await codes.nth(0).innerText(), domain: await codes.nth(1).innerText() };
}

/** A proof as TON Connect's wallet object carries it (account + connectItems.tonProof). */
function tonConnectWallet(domain: string, payload: string, timestamp = Math.floor(Date.now() / 1000)) {
  const p = wallet.prove({ domain, timestamp, payload });
  const { stateInit, ...proof } = p.proof;
  return JSON.stringify({
    device: { appName: 'test' },
    account: { address: p.address, chain: '-239', walletStateInit: stateInit, publicKey: p.publicKey },
    connectItems: { tonProof: { name: 'ton_proof', proof } },
  });
}

describe('TON wallet in the console', () => {
  test('link from My account, then sign in from the login page', { timeout: 180_000 }, async () => {
    // Signed in with the password (the sign-in under test is the wallet's, below); a session of
    // its own, since the test signs it out.
    const { context, page, pageErrors } = await openSignedIn(
      browser,
      ctl.url,
      { username: 'tina', password: PASSWORD },
      { viewport: 'phone', theme: 'light', path: '/settings/account', ownSession: true },
    );
    try {
      await page.locator('[data-testid="ton-link"] summary').click();
      await page.locator('[data-testid="ton-payload"]').click();
      const link = await shownChallenge(page, 'ton-challenge');
      assert.equal(link.domain, new URL(ctl.url).host);
      await page.locator('#ton-proof').fill(tonConnectWallet(link.domain, link.payload));
      await page.locator('#ton-password').fill(PASSWORD);
      await page.locator('[data-testid="ton-link-submit"]').click();
      const raw = wallet.address.toRawString();
      await page
        .getByText(`Linked TON wallet ${raw}`)
        .waitFor()
        .catch(async (err: unknown) => {
          throw new Error(`${await page.locator('[data-testid="wallets"]').innerText()}: ${String(err)}`);
        });
      assert.match(await page.locator('.wallet-list li', { hasText: raw }).innerText(), /TON/);
      const linked = await axeViolationsInViews(page, { shot: 'test-results/ton-linked' });
      assert.deepEqual(linked, [], `axe: my account with the TON form open:\n${linked.join('\n')}`);

      await page.evaluate(async () => {
        const csrf = (await (await fetch('/api/v1/auth/session')).json()) as { csrfToken: string };
        await fetch('/api/v1/auth/logout', { method: 'POST', headers: { 'x-csrf-token': csrf.csrfToken } });
      });
      await page.goto('/login');
      await page.locator('[data-testid="ton-login"] summary').click();
      // A proof for another domain: refused, with the API's message.
      await page.locator('[data-testid="ton-login-payload"]').click();
      let login = await shownChallenge(page, 'ton-login-challenge');
      await page.locator('#ton-proof').fill(tonConnectWallet('evil.example.com', login.payload));
      await page.locator('[data-testid="ton-login-submit"]').click();
      await page
        .locator('[data-testid="login-error"]', { hasText: 'evil.example.com' })
        .waitFor()
        .catch(async (err: unknown) => {
          throw new Error(`${await page.locator('main').innerText()}: ${String(err)}`);
        });
      const refused = await axeViolationsInViews(page, { shot: 'test-results/ton-login-refused' });
      assert.deepEqual(refused, [], `axe: the sign-in page with the TON form open:\n${refused.join('\n')}`);
      // A fresh payload and the right domain: signed in.
      await page.locator('[data-testid="ton-login-payload"]').click();
      await page
        .locator('[data-testid="ton-login-challenge"] code', { hasNotText: login.payload })
        .first()
        .waitFor();
      login = await shownChallenge(page, 'ton-login-challenge');
      await page.locator('#ton-proof').fill(tonConnectWallet(login.domain, login.payload));
      await page.locator('[data-testid="ton-login-submit"]').click();
      await page.waitForURL((url) => !url.pathname.startsWith('/login'));
      const who = await page.evaluate(
        async () =>
          ((await (await fetch('/api/v1/auth/session')).json()) as { user: { username: string } }).user
            .username,
      );
      assert.equal(who, 'tina');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  });
});
