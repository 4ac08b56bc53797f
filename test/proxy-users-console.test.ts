// Proves the Proxy users page in real Chromium with a real controller, a real agent and real v2ray
// (Debian): a proxy user created in the page lands in the v2ray config the agent rendered on the
// node (its UUID as a client of the inbound); its links dialog shows a vless:// link and QR codes;
// disabling it from the table takes it out of the node's config again; the page and its dialogs
// pass axe-core WCAG 2.1 A/AA in dark and light, desktop and phone, and the create dialog works
// by keyboard. A public address set on the node's panel (the address alone, nothing pushed) is
// where the links point; the node's traffic chart opens on its panel (axe-clean).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  axeViolations,
  axeViolationsInThemes,
  launchChromium,
  openPage,
  signIn,
  type ThemeName,
  type ViewportName,
} from './helpers/browser.ts';
import { ApiClient } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startTestController,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import { freePort } from './proxies-agent-setup.ts';

const skip = need('v2ray') || need('chromium');

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let api: ApiClient;
let browser: Browser;
let agent: Proc;
let agentDir: string;
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
  ctl = await startTestController();
  api = new ApiClient(`http://127.0.0.1:${ctl.port}`);
  await api.login(ctl.firstAdmin!.username, ctl.firstAdmin!.password);
  agentDir = await enrollNewAgent(ctl, 'vpn-host');
  agent = runAgent(agentDir);
  const { body } = await api.get<{ hosts: { id: string; name: string }[] }>('/hosts');
  hostId = body.hosts.find((h) => h.name === 'vpn-host')!.id;
  await waitFor(() => ctl.gateway.isOnline(hostId), 60_000, 'agent online');
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
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (agent) await kill(agent, 'SIGTERM');
  await ctl?.close();
  if (agentDir) removeDir(agentDir);
  if (ctl) removeDir(ctl.dataDir);
});

async function signedIn(viewport: ViewportName, theme: ThemeName) {
  const opened = await openPage(browser, `http://127.0.0.1:${ctl.port}`, { viewport, theme });
  await signIn(opened.page, ctl.firstAdmin!.username, ctl.firstAdmin!.password);
  return opened;
}

const row = (page: Page, name: string) => page.locator(`[data-testid="proxy-user-row"][data-name="${name}"]`);

test(
  'create a proxy user, see its link and QR code, disable it: it leaves the node config',
  { skip, timeout: 240_000 },
  async () => {
    const { page, context, pageErrors } = await signedIn('desktop', 'dark');
    const violations: string[] = [];
    try {
      await page.goto('/proxy-users');
      await page.locator('[data-testid="proxy-users"]').waitFor();
      violations.push(...(await axeViolations(page)).map((v) => `list: ${v}`));

      // Create by keyboard: the dialog opens on the name field; Enter in a field submits.
      await page.focus('[data-testid="proxy-user-new"]');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="proxy-user-dialog"]').waitFor();
      await page.keyboard.type('alice');
      await page.locator('[data-testid="proxy-user-node"]').first().check();
      violations.push(...(await axeViolations(page)).map((v) => `create dialog: ${v}`));
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
      violations.push(...(await axeViolations(page)).map((v) => `links dialog: ${v}`));
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
      violations.push(...(await axeViolations(page)).map((v) => `traffic dialog: ${v}`));
      await page.keyboard.press('Escape');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
    assert.deepEqual(violations, []);
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
    const { page, context, pageErrors } = await signedIn('desktop', 'light');
    const violations: string[] = [];
    try {
      await page.goto(`/hosts/${hostId}/proxies`);
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
      violations.push(...(await axeViolations(page)).map((v) => `host tab: ${v}`));

      await page.goto('/proxy-users');
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
    assert.deepEqual(violations, []);
  },
);

test('the page passes axe in dark and light, desktop and phone', { skip, timeout: 180_000 }, async () => {
  const violations: string[] = [];
  // One context per viewport, each state checked in both themes (axeViolationsInThemes).
  for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
    const { page, context } = await signedIn(viewport, 'dark');
    try {
      await page.goto('/proxy-users');
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
