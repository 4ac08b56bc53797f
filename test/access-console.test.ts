// Proves the access console in real Chromium against a real controller: an owner changes a user's
// role and scope, edits a host group (name, tags, hand-picked hosts) in its dialog by keyboard,
// sets a host's tags (the tag-matched group gains it), and sets the sign-in policy (2FA roles,
// wallet sign-in); a user with 2FA signs in with a code and re-issues recovery codes from My
// account (the old ones stop working); with wallet sign-in on, a stand-in browser wallet (a real
// secp256k1 key in the test, signing what the page asks) links from My account and signs in from
// the login page. The pages pass axe-core's WCAG 2.1 A/AA checks in the dark and the light theme on
// a desktop and a phone, dialogs open too, as do the login page's code step and wallet button.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { generate } from 'otplib';
import type { Browser, Page } from 'playwright-core';
import { addressOfSecretKey, signPersonalMessage } from '../controller/src/services/siwe.ts';
import {
  axeViolationsInThemes,
  axeViolationsInViews,
  launchChromium,
  openPage,
  openSignedIn,
  signIn,
  type ThemeName,
  type ViewportName,
} from './helpers/browser.ts';
import { startTestController, waitFor } from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

const PASSWORD = 'access console walk 2026 ok';
let ctl: Awaited<ReturnType<typeof startTestController>>;
let browser: Browser;
let owner: { id: string; username: string; password: string };
const ids: Record<string, string> = {};
let groupId = '';
let olgaId = '';

before(async () => {
  ctl = await startTestController();
  for (const name of ['game-1', 'game-2', 'db-1']) ids[name] = await storeHost(ctl, { name, facts: null });
  const first = ctl.firstAdmin!;
  const row = (await ctl.services.users.list()).find((u) => u.username === first.username)!;
  owner = { id: row.id, username: first.username, password: first.password };
  const by = { id: row.id, role: row.role, ip: null };
  groupId = (
    await ctl.services.groups.create({ id: row.id, ip: null }, { name: 'games', hostIds: [ids['game-1']!] })
  ).id;
  olgaId = (
    await ctl.services.users.createBy(by, {
      username: 'olga',
      password: PASSWORD,
      role: 'operator',
      scoped: false,
    })
  ).user.id;
  await ctl.services.users.createBy(by, {
    username: 'rita',
    password: PASSWORD,
    role: 'operator',
    scoped: false,
  });
  await ctl.services.users.createBy(by, {
    username: 'wendy',
    password: PASSWORD,
    role: 'viewer',
    scoped: false,
  });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await ctl?.close();
});

/** Password then a recovery code through the API; the second step's status. */
async function recoveryStep(username: string, recoveryCode: string): Promise<number> {
  const login = await fetch(`${ctl.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  const body = (await login.json()) as { csrfToken: string };
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
  const res = await fetch(`${ctl.url}/api/v1/auth/two-factor`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': body.csrfToken },
    body: JSON.stringify({ recoveryCode }),
  });
  return res.status;
}

/** axe in both themes at the page's viewport (a state each viewport's test reaches). */
async function axeClean(page: Page, where: string) {
  const found = await axeViolationsInThemes(page);
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** axe in both themes on a desktop and a phone (a state one test reaches in one context). */
async function axeCleanInViews(page: Page, where: string) {
  const found = await axeViolationsInViews(page, {
    shot: `test-results/access-${where.replace(/\W+/g, '-')}`,
  });
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** The owner on Users and groups (signed in through openSignedIn: the form is tested below and in access-console-flows). */
async function openAdmin(viewport: ViewportName, theme: ThemeName) {
  const opened = await openSignedIn(browser, ctl.url, owner, { viewport, theme, path: '/admin/users' });
  await opened.page.locator('[data-testid="user-row"]', { hasText: 'olga' }).waitFor();
  return opened;
}

describe('admin: users, groups, tags, policy', () => {
  test('role and scope of a user, edited in the table', { timeout: 120_000 }, async () => {
    const { context, page, pageErrors } = await openAdmin('desktop', 'dark');
    try {
      const row = page.locator('[data-testid="user-row"]', { hasText: 'olga' });
      await row.locator('[data-testid="user-role"]').selectOption('viewer');
      await row.locator('[data-testid="user-scoped"]').check();
      await row.locator('[data-testid="user-save"]').click();
      await page.locator('[data-testid="admin-notice"]', { hasText: 'Saved olga' }).waitFor();
      const olga = (await ctl.services.users.list()).find((u) => u.id === olgaId)!;
      assert.deepEqual({ role: olga.role, scoped: olga.scoped }, { role: 'viewer', scoped: true });
      // The owner's own row offers no role change (no one changes their own role).
      const mine = page
        .locator('[data-testid="user-row"]')
        .filter({ has: page.locator('td:first-child', { hasText: new RegExp(`^${owner.username}$`) }) });
      assert.equal(await mine.count(), 1);
      assert.equal(await mine.locator('[data-testid="user-role"]').count(), 0);
      await axeClean(page, 'admin users, desktop');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  });

  test(
    'a group edited in its dialog by keyboard alone: name, tags, hosts',
    { timeout: 120_000 },
    async () => {
      const { context, page, pageErrors } = await openAdmin('desktop', 'dark');
      try {
        await page.getByRole('button', { name: 'Edit games' }).focus();
        await page.keyboard.press('Enter');
        const dialog = page.locator('[data-testid="group-dialog"]');
        await dialog.waitFor();
        await axeCleanInViews(page, 'group dialog open');
        // The name field has focus: replace it, move to the tags, type them.
        await page.keyboard.press('Control+A');
        await page.keyboard.type('game servers');
        await page.keyboard.press('Tab');
        await page.keyboard.type('game');
        // Tab to the hand-picked hosts and add game-2 with the space bar.
        await waitFor(
          async () => {
            await page.keyboard.press('Tab');
            return page.evaluate(() => {
              const el = (
                globalThis as unknown as {
                  document: { activeElement: { parentElement?: { textContent?: string } } | null };
                }
              ).document.activeElement;
              return el?.parentElement?.textContent?.includes('game-2') ?? false;
            });
          },
          10_000,
          'focus on the game-2 checkbox',
        );
        await page.keyboard.press('Space');
        // Enter in a text field submits: back to the tags field and press Enter.
        await dialog.locator('#edit-group-tags').focus();
        await page.keyboard.press('Enter');
        await page
          .locator('[data-testid="admin-notice"]', { hasText: 'Saved the group game servers' })
          .waitFor();
        const group = await ctl.services.groups.get(groupId);
        assert.equal(group.name, 'game servers');
        assert.deepEqual(group.tags, ['game']);
        assert.deepEqual([...group.hostIds].sort(), [ids['game-1'], ids['game-2']].sort());
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );

  test("a host's tags: the group that names the tag gains the host", { timeout: 120_000 }, async () => {
    const { context, page, pageErrors } = await openAdmin('phone', 'light');
    try {
      await page.locator('[data-testid="tag-host"]').selectOption({ label: 'db-1' });
      const input = page.locator('[data-testid="tag-text"]');
      await waitFor(async () => await input.isEnabled(), 10_000, 'tags loaded');
      await input.fill('game, eu');
      await page.locator('[data-testid="tag-save"]').click();
      await page.locator('[data-testid="admin-notice"]', { hasText: 'Saved the tags of db-1' }).waitFor();
      const group = await ctl.services.groups.get(groupId);
      assert.ok(group.memberIds.includes(ids['db-1']!), 'db-1 joined by its tag');
      await axeClean(page, 'admin users, phone');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  });

  test('the sign-in policy: 2FA for admins, wallet sign-in on', { timeout: 120_000 }, async () => {
    const { context, page, pageErrors } = await openAdmin('desktop', 'light');
    try {
      await waitFor(() => page.locator('[data-testid="policy-save"]').isEnabled(), 15_000, 'policy read');
      await page.getByRole('checkbox', { name: 'admin', exact: true }).check();
      await page.locator('[data-testid="wallet-on"]').check();
      await page.locator('#wallet-chains').fill('1, 10');
      await page.locator('[data-testid="policy-save"]').click();
      await page.locator('[data-testid="admin-notice"]', { hasText: 'Saved the sign-in policy' }).waitFor();
      assert.deepEqual(await ctl.services.twoFactor.requiredRoles(), ['admin']);
      assert.deepEqual(await ctl.services.wallets.policy(), { enabled: true, chainIds: [1, 10] });
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  });
});

describe('my account', () => {
  test(
    'sign in with a code, then new recovery codes replace the old ones',
    { timeout: 120_000 },
    async () => {
      const rita = (await ctl.services.users.list()).find((u) => u.username === 'rita')!;
      const { secret } = await ctl.services.twoFactor.setup(rita.id, PASSWORD, null);
      const { recoveryCodes: old } = await ctl.services.twoFactor.confirm(
        rita.id,
        await generate({ secret, epoch: Math.floor(Date.now() / 1000) - 30 }),
        null,
      );
      const { context, page, pageErrors } = await openPage(browser, ctl.url, {
        viewport: 'desktop',
        theme: 'dark',
      });
      try {
        await page.waitForURL(/\/login/);
        await page.fill('#login-username', 'rita');
        await page.fill('#login-password', PASSWORD);
        await page.click('[data-testid="login-submit"]');
        await page.locator('#login-code').waitFor();
        await axeCleanInViews(page, 'login code step');
        await page.locator('#login-code').fill(await generate({ secret }));
        await page.click('[data-testid="code-submit"]');
        await page.waitForURL((url) => !url.pathname.startsWith('/login'));
        await page.goto('/settings/account');
        await page.locator('[data-testid="two-factor-on"]').waitFor();
        await page.locator('#tf-reissue').fill(PASSWORD);
        await page.locator('[data-testid="recovery-reissue-submit"]').click();
        const codes = page.locator('[data-testid="recovery-codes"] code');
        await waitFor(async () => (await codes.count()) === 10, 10_000, 'ten new codes');
        const fresh = await codes.allTextContents();
        assert.equal(new Set([...fresh, ...old]).size, 20, 'all new');
        await page.getByText('New recovery codes: the earlier ones no longer work.').waitFor();
        await axeCleanInViews(page, 'my account with new recovery codes');
        // An old code no longer finishes a sign-in; a new one does.
        assert.equal(await recoveryStep('rita', old[0]!), 401);
        assert.equal(await recoveryStep('rita', fresh[0]!), 200);
        assert.equal(await ctl.services.twoFactor.status(rita.id).then((s) => s.recoveryCodesLeft), 9);
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );

  test(
    'a stand-in browser wallet links from My account and signs in from the login page',
    { timeout: 120_000 },
    async () => {
      // The wallet sign-in policy was turned on above; make sure whatever the order.
      await ctl.services.wallets.setPolicy({ id: owner.id, ip: null }, { enabled: true, chainIds: [1, 10] });
      const key = secp256k1.utils.randomSecretKey();
      const address = addressOfSecretKey(key);
      const signed: string[] = [];
      const { context, page, pageErrors } = await openPage(browser, ctl.url, {
        viewport: 'phone',
        theme: 'light',
      });
      try {
        // A stand-in for a wallet extension: an EIP-1193 provider whose personal_sign is done by the
        // test with a real key (no wallet extension can be installed in headless Chromium here).
        await context.exposeFunction('keelTestWalletSign', (hex: string) => {
          const message = Buffer.from(hex.slice(2), 'hex').toString('utf8');
          signed.push(message);
          return signPersonalMessage(message, key);
        });
        // A string, not a function: tsx would wrap named functions in a helper the page lacks.
        await context.addInitScript(`
          globalThis.ethereum = {
            request: async ({ method, params }) => {
              if (method === 'eth_requestAccounts') return [${JSON.stringify(address)}];
              if (method === 'eth_chainId') return '0xa';
              if (method === 'personal_sign') return globalThis.keelTestWalletSign(params[0]);
              throw new Error('unsupported ' + method);
            },
          };`);
        await page.reload();
        await signIn(page, 'wendy', PASSWORD);
        await page.goto('/settings/account');
        await page.locator('[data-testid="wallets"]').waitFor();
        await page.locator('#wallet-password').fill(PASSWORD);
        await page.locator('[data-testid="wallet-link"]').click();
        await page
          .getByText(`Linked ${address}`)
          .waitFor()
          .catch(async (err: unknown) => {
            throw new Error(`${await page.locator('[data-testid="wallets"]').innerText()}: ${String(err)}`);
          });
        assert.match(signed[0] ?? '', /wants you to sign in with your Ethereum account/);
        assert.match(signed[0] ?? '', /Chain ID: 10/);
        await axeCleanInViews(page, 'my account with a linked wallet');
        // Sign out, then in with the wallet.
        await page.evaluate(async () => {
          const csrf = (await (await fetch('/api/v1/auth/session')).json()) as { csrfToken: string };
          await fetch('/api/v1/auth/logout', { method: 'POST', headers: { 'x-csrf-token': csrf.csrfToken } });
        });
        await page.goto('/login');
        await page.locator('[data-testid="wallet-login"]').waitFor();
        await axeCleanInViews(page, 'login with wallet sign-in on');
        await page.locator('[data-testid="wallet-login"]').click();
        await page.waitForURL((url) => !url.pathname.startsWith('/login'));
        const who = await page.evaluate(
          async () =>
            ((await (await fetch('/api/v1/auth/session')).json()) as { user: { username: string } }).user
              .username,
        );
        assert.equal(who, 'wendy');
        assert.equal(signed.length, 2);
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );
});
