// Proves a scoped viewer in the real console (Chromium): granted viewer on one group, the fleet list shows only that group's hosts, another host's page says "Host not found" (the API answers 404), and no mutating buttons are offered (the host answer carries the viewer's permissions on it).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium, navigate, openPage, signIn } from './helpers/browser.ts';
import { startTestController, waitFor } from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

const PASSWORD = 'scoped viewer walks the fleet 2026';
let ctl: Awaited<ReturnType<typeof startTestController>>;
let browser: Browser;
const ids: Record<string, string> = {};

before(async () => {
  ctl = await startTestController();
  for (const name of ['game-1', 'game-2', 'db-1']) ids[name] = await storeHost(ctl, { name, facts: null });
  const owner = ctl.firstAdmin!;
  const ownerRow = (await ctl.services.users.list()).find((u) => u.username === owner.username)!;
  const manager = { id: ownerRow.id, role: ownerRow.role, ip: null };
  const group = await ctl.services.groups.create(
    { id: ownerRow.id, ip: null },
    { name: 'game servers', hostIds: [ids['game-1']!, ids['game-2']!] },
  );
  const { user } = await ctl.services.users.createBy(manager, {
    username: 'vera',
    password: PASSWORD,
    role: 'viewer',
    scoped: true,
  });
  await ctl.services.users.grant(manager, user.id, { groupId: group.id, role: 'viewer' });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await ctl?.close();
});

test(
  'the scoped viewer sees only the granted group in the fleet; another host is "not found"',
  { timeout: 120_000 },
  async (t) => {
    const { context, page, pageErrors } = await openPage(browser, ctl.url);
    try {
      // openPage loaded the console, which sent it to /login.
      await signIn(page, 'vera', PASSWORD);
      const rows = page.locator('[data-testid="host-row"]');
      await rows.first().waitFor();
      await waitFor(async () => (await rows.count()) === 2, 10_000, 'two host rows');
      const shown = await rows.evaluateAll((els) =>
        els.map((e) =>
          (e as unknown as { getAttribute(n: string): string | null }).getAttribute('data-host-id'),
        ),
      );
      assert.deepEqual(shown.sort(), [ids['game-1'], ids['game-2']].sort());
      assert.equal(await rows.filter({ hasText: 'db-1' }).count(), 0);

      await navigate(page, `/hosts/${ids['db-1']}`);
      await page.getByRole('heading', { name: 'Host not found' }).waitFor({ timeout: 15_000 });
      // The same answer as for an id that never existed.
      const api = await page.evaluate(
        async (id) => (await fetch(`/api/v1/hosts/${id}`)).status,
        ids['db-1']!,
      );
      assert.equal(api, 404);

      // The shell offers actions from the permissions the host answer carries: wait for that answer.
      const detail = page.waitForResponse((r) => r.url().endsWith(`/api/v1/hosts/${ids['game-1']}`));
      await navigate(page, `/hosts/${ids['game-1']}`);
      await page.getByRole('heading', { name: 'game-1' }).waitFor({ timeout: 15_000 });
      const answer = (await (await detail).json()) as { permissions?: string[] };
      assert.deepEqual(
        answer.permissions,
        ['host.view', 'logs.read', 'metrics.read'],
        "a viewer's permissions on the host",
      );
      const ping = await page.evaluate(
        async (id) => (await fetch(`/api/v1/hosts/${id}/ping`, { method: 'POST' })).status,
        ids['game-1']!,
      );
      assert.ok(ping === 403, `a viewer's ping is refused by the API (${ping})`);

      await t.test('no mutating buttons are offered', async () => {
        const offered = await page.getByRole('button', { name: /ping|refresh|revoke/i }).count();
        await navigate(page, '/');
        await rows.first().waitFor();
        const add = await page.locator('[data-testid="add-host"]').count();
        assert.deepEqual({ hostActions: offered, addHost: add }, { hostActions: 0, addHost: 0 });
      });
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  },
);
