// Proves the Proxy users page in real Chromium with a real controller, a real agent and real v2ray
// (Debian): a proxy user created in the page lands in the v2ray config the agent rendered on the
// node (its UUID as a client of the inbound); its links dialog shows a vless:// link and QR codes;
// disabling it from the table takes it out of the node's config again; the page and its dialogs
// pass axe-core WCAG 2.1 A/AA in dark and light, desktop and phone, and the create dialog works
// by keyboard. A public address set on the node's panel (the address alone, nothing pushed) is
// where the links point; the node's traffic chart opens on its panel (axe-clean in both themes on
// a desktop and a phone, as are the empty list and the links and traffic dialogs).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  axeViolationsInThemes,
  axeViolationsInViews,
  navigate,
  type ViewportName,
} from './helpers/browser.ts';
import { startConsoleFleet, type ConsoleFleet } from './helpers/console-fleet.ts';
import { waitFor } from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import { freePort } from './proxies-agent-setup.ts';

const skip = need('v2ray') || need('chromium');

let fleet: ConsoleFleet;
let api: ConsoleFleet['api'];
let hostId: string;

interface Generation {
  generation: number;
  files: { path: string; content: string }[];
}

/** The config the agent rendered and applied last on the node. */
async function appliedConfig(): Promise<string> {
  const node = (await api.get<{ node: { currentGeneration: number | null } }>(`/hosts/${hostId}/proxies/vpn`))
    .body.node;
  if (node.currentGeneration === null) return '';
  const g = await api.get<{ generation: Generation }>(
    `/hosts/${hostId}/proxies/vpn/generations/${node.currentGeneration}`,
  );
  return g.body.generation.files.map((f) => f.content).join('\n');
}

before(async () => {
  if (skip) return;
  fleet = await startConsoleFleet('vpn-host');
  ({ api, hostId } = fleet);
  const created = await api.post(`/hosts/${hostId}/proxies`, {
    instance: 'vpn',
    adapter: 'v2ray',
    settings: {
      listenAddress: '127.0.0.1',
      apiPort: await freePort(),
      inbounds: [{ tag: 'vless-in', protocol: 'vless', port: await freePort() }],
    },
    apply: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});

after(() => fleet?.close());

/** axe in both themes on a desktop and a phone, for a state a test reaches in its one context. */
const inViews = (page: Page, shot: string) =>
  axeViolationsInViews(page, { shot: `test-results/proxy-users-${shot}` });

const row = (page: Page, name: string) => page.locator(`[data-testid="proxy-user-row"][data-name="${name}"]`);

test(
  'create a proxy user, see its link and QR code, disable it: it leaves the node config',
  { skip, timeout: 240_000 },
  async () => {
    const { page, context, pageErrors } = await fleet.open({ path: '/proxy-users' });
    const violations: string[] = [];
    try {
      await page.locator('[data-testid="proxy-users"]').waitFor();
      violations.push(...(await inViews(page, 'list')).map((v) => `list: ${v}`));

      // Create by keyboard: the dialog opens on the name field; Enter in a field submits.
      await page.focus('[data-testid="proxy-user-new"]');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="proxy-user-dialog"]').waitFor();
      await page.keyboard.type('alice');
      await page.locator('[data-testid="proxy-user-node"]').first().check();
      violations.push(...(await axeViolationsInThemes(page)).map((v) => `create dialog: ${v}`));
      await page.press('#pu-note', 'Enter');
      await row(page, 'alice').waitFor();
      const user = (await api.get<{ users: { id: string; uuid: string }[] }>('/proxy-users?search=alice'))
        .body.users[0]!;

      // The agent rendered it into the node's v2ray config.
      await waitFor(async () => (await appliedConfig()).includes(user.uuid), 60_000, 'alice on the node');

      // Links and QR codes.
      await row(page, 'alice').getByRole('button', { name: 'Links for alice' }).click();
      const link = page.locator('[data-testid="proxy-user-link"]').first();
      await link.waitFor();
      assert.match((await link.textContent()) ?? '', new RegExp(`^vless://${user.uuid}@vpn-host:\\d+\\?`));
      await page.locator('[data-testid="proxy-user-qr"]').first().waitFor();
      assert.match(
        (await page.locator('[data-testid="proxy-user-qr"]').first().getAttribute('src')) ?? '',
        /^data:image\/svg\+xml;base64,/,
      );
      assert.match(
        (await page.textContent('[data-testid="proxy-user-subscription"]')) ?? '',
        /\/sub\/[A-Za-z0-9_-]{43}$/,
      );
      violations.push(...(await inViews(page, 'links')).map((v) => `links dialog: ${v}`));
      await page.keyboard.press('Escape');

      // Disable from the table: off the node's config.
      await row(page, 'alice').locator('[data-testid="proxy-user-toggle"]').click();
      await row(page, 'alice')
        .locator('[data-testid="proxy-user-status"]', { hasText: 'Disabled' })
        .waitFor();
      await waitFor(async () => !(await appliedConfig()).includes(user.uuid), 60_000, 'alice off the node');

      // The traffic chart dialog opens (no traffic yet: an empty chart with its summary).
      await row(page, 'alice').getByRole('button', { name: 'Traffic of alice' }).click();
      await page.locator('[data-testid="proxy-user-traffic"]').waitFor();
      violations.push(...(await inViews(page, 'traffic')).map((v) => `traffic dialog: ${v}`));
      await page.keyboard.press('Escape');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
    assert.deepEqual(violations, [], violations.join('\n'));
  },
);

test(
  "the node's public address is where links point; the node's traffic chart opens",
  { skip, timeout: 180_000 },
  async () => {
    const made = await api.post<{ user: { id: string; uuid: string } }>('/proxy-users', {
      name: 'dora',
      nodes: [{ hostId, instance: 'vpn' }],
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    // Her push (coalesced after the create) lands first, so the count below sees only the address.
    await waitFor(
      async () => (await appliedConfig()).includes(made.body.user.uuid),
      60_000,
      'dora on the node',
    );
    const before = (await api.get<{ node: { lastGeneration: number } }>(`/hosts/${hostId}/proxies/vpn`)).body
      .node.lastGeneration;
    const { page, context, pageErrors } = await fleet.open({
      theme: 'light',
      path: `/hosts/${hostId}/proxies`,
    });
    const violations: string[] = [];
    try {
      await page.locator('[data-testid="proxy-node-address"]', { hasText: 'vpn-host' }).waitFor();
      await page.getByRole('button', { name: 'Settings of vpn' }).click();
      // A port is refused at the field; a DNS name is saved alone.
      await page.fill('[data-testid="proxy-public-address"]', 'edge.example.org:443');
      await page.click('[data-testid="proxy-save-address"]');
      assert.equal(await page.getAttribute('[data-testid="proxy-public-address"]', 'aria-invalid'), 'true');
      await page.fill('[data-testid="proxy-public-address"]', 'edge.example.org');
      await page.click('[data-testid="proxy-save-address"]');
      await page.locator('[data-testid="proxy-node-address"]', { hasText: 'edge.example.org' }).waitFor();
      const after = (
        await api.get<{ node: { lastGeneration: number; publicAddress: string } }>(
          `/hosts/${hostId}/proxies/vpn`,
        )
      ).body.node;
      assert.equal(after.publicAddress, 'edge.example.org');
      assert.equal(after.lastGeneration, before, 'an address alone pushes nothing');

      // The node's traffic (all users, hourly) opens as a chart on its panel.
      await page.getByRole('button', { name: 'Traffic of vpn' }).click();
      await page.locator('[data-testid="proxy-node-chart"]').waitFor();
      violations.push(...(await inViews(page, 'node-chart')).map((v) => `host tab: ${v}`));

      await navigate(page, '/proxy-users');
      await row(page, 'dora').getByRole('button', { name: 'Links for dora' }).click();
      const link = page.locator('[data-testid="proxy-user-link"]').first();
      await link.waitFor();
      assert.match(
        (await link.textContent()) ?? '',
        new RegExp(`^vless://${made.body.user.uuid}@edge\\.example\\.org:\\d+\\?`),
      );
      await page.keyboard.press('Escape');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
    assert.deepEqual(violations, [], violations.join('\n'));
  },
);

test('the page passes axe in dark and light, desktop and phone', { skip, timeout: 180_000 }, async () => {
  const violations: string[] = [];
  // One context per viewport, each state checked in both themes (axeViolationsInThemes).
  for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
    const { page, context } = await fleet.open({ viewport, path: '/proxy-users' });
    try {
      await page.locator('[data-testid="proxy-user-row"]').first().waitFor();
      violations.push(...(await axeViolationsInThemes(page)).map((v) => `${viewport}: ${v}`));
      await page.locator('[data-testid="proxy-user-new"]').click();
      await page.locator('[data-testid="proxy-user-dialog"]').waitFor();
      violations.push(...(await axeViolationsInThemes(page)).map((v) => `${viewport} dialog: ${v}`));
    } finally {
      await context.close();
    }
  }
  assert.deepEqual(violations, []);
});
