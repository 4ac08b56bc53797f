// Proves the Proxies pages in real Chromium with a real agent and real nginx: a node created from
// the host's Proxies tab in nginx's own fields (a bad upstream is named at its field and nothing is
// created) is pushed as generation 1; its settings are edited in the same fields and pushed; after a change the history lists both, the
// diff between them shows the changed line, and Roll back makes generation 3; an edit of the
// applied file on the host appears on the tab as a drift warning with its diff (live, without a
// reload); the fleet page lists the node and a rollout started by keyboard completes with its
// progress shown, and one aimed at a host tag completes and is audited with the tag; telemt and
// v2ray nodes made in their own fields store what was typed (a template with [access.*] and a
// duplicate inbound tag are named at their fields); both pages pass axe-core WCAG 2.1 A/AA in dark
// and light, desktop and phone (the tab with a refused new node, its settings open, drift and a
// diff; the fleet page with a node and with its rollouts done).
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { axeViolationsInThemes, axeViolationsInViews, navigate } from './helpers/browser.ts';
import { startConsoleFleet, type ConsoleFleet } from './helpers/console-fleet.ts';
import { waitFor } from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import { freePort, httpTarget } from './proxies-agent-setup.ts';

const skip = need('nginx') || need('chromium');

let fleet: ConsoleFleet;
let api: ConsoleFleet['api'];
let hostId: string;
let port: number;
const targets: { port: number; close(): Promise<void> }[] = [];

const settings = (upstreamPort: number) => ({
  listenAddress: '127.0.0.1',
  sites: [{ serverNames: ['app.example.test'], port, upstream: `http://127.0.0.1:${upstreamPort}` }],
});

before(async () => {
  if (skip) return;
  fleet = await startConsoleFleet('proxy-host');
  ({ api, hostId } = fleet);
  targets.push(await httpTarget('A'), await httpTarget('B'));
  port = await freePort();
});

after(async () => {
  await fleet?.close();
  for (const t of targets) await t.close();
});

const historyRows = (page: Page) => page.locator('[data-testid="proxy-generation"]');

test(
  'Proxies tab: create and push, history, diff, rollback, drift warning live',
  { skip, timeout: 180_000 },
  async () => {
    const { page, context, pageErrors } = await fleet.open({ path: `/hosts/${hostId}/proxies` });
    try {
      await page.locator('[data-testid="no-proxy-nodes"]').waitFor();
      await page.click('[data-testid="new-proxy-node"]');
      await page.fill('#n-instance', 'edge');
      // nginx's own fields: a wrong upstream is named at its field, and nothing is sent.
      await page.fill('#n-listenAddress', '127.0.0.1');
      await page.fill('#n-sites-0-serverNames', 'app.example.test');
      await page.fill('#n-sites-0-port', String(port));
      await page.fill('#n-sites-0-upstream', 'ftp://127.0.0.1');
      await page.click('[data-testid="create-proxy-node"]');
      await page.locator('#n-sites-0-upstream-error').waitFor();
      assert.equal(await page.getAttribute('#n-sites-0-upstream', 'aria-invalid'), 'true');
      assert.equal(
        await page.evaluate('document.activeElement && document.activeElement.id'),
        'n-sites-0-upstream',
        'focus moves to the wrong field',
      );
      assert.equal(
        (await api.get<{ nodes: unknown[] }>(`/hosts/${hostId}/proxies`)).body.nodes.length,
        0,
        'nothing created',
      );
      await clean(page, 'host tab, a refused new node');
      await page.fill('#n-sites-0-upstream', `http://127.0.0.1:${targets[0]!.port}`);
      await page.click('[data-testid="create-proxy-node"]');
      await page
        .locator('[data-testid="proxy-node-generation"]', { hasText: 'runs generation 1' })
        .waitFor({ timeout: 90_000 })
        .catch(async (err: unknown) => {
          throw new Error(`no generation 1 on the page: ${await page.textContent('main')}`, { cause: err });
        });
      assert.equal(await page.textContent('[data-testid="proxy-node-state"]'), 'applied');
      const created = await api.get<{ node: { settings: unknown } }>(`/hosts/${hostId}/proxies/edge`);
      assert.deepEqual(
        (created.body.node.settings as { sites: unknown[] }).sites,
        [{ serverNames: ['app.example.test'], port, upstream: `http://127.0.0.1:${targets[0]!.port}` }],
        'the fields made these settings',
      );

      // A change made elsewhere (the API) shows up live, then the diff between 1 and 2.
      const put = await api.request('PUT', `/hosts/${hostId}/proxies/edge`, {
        settings: settings(targets[1]!.port),
        apply: true,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      await waitFor(async () => (await historyRows(page).count()) === 2, 30_000, 'two generations listed');
      // The settings open in the same fields, filled from the node; worker processes 2, pushed.
      await page.getByRole('button', { name: 'Settings of edge' }).click();
      assert.equal(await page.inputValue('#s-edge-sites-0-upstream'), `http://127.0.0.1:${targets[1]!.port}`);
      await clean(page, 'host tab, settings open');
      await page.fill('#s-edge-workerProcesses', '2');
      await page.click('[data-testid="proxy-save-push"]');
      type NodeBody = { node: { settings: { workerProcesses: number }; currentGeneration: number } };
      await waitFor(
        async () =>
          (await api.get<NodeBody>(`/hosts/${hostId}/proxies/edge`)).body.node.currentGeneration === 3,
        60_000,
        'generation 3 applied',
      );
      const edited = await api.get<NodeBody>(`/hosts/${hostId}/proxies/edge`);
      assert.equal(edited.body.node.settings.workerProcesses, 2);
      await waitFor(async () => (await historyRows(page).count()) === 3, 30_000, 'three generations listed');
      await page.selectOption('#from-edge', '1');
      await page.selectOption('#to-edge', '2');
      await page.click('[data-testid="proxy-show-diff"]');
      const diffText = (await page.locator('[data-testid="proxy-diff-view"]').textContent()) ?? '';
      assert.match(diffText, new RegExp(`-\\s*proxy_pass http://127\\.0\\.0\\.1:${targets[0]!.port};`));
      assert.match(diffText, new RegExp(`\\+\\s*proxy_pass http://127\\.0\\.0\\.1:${targets[1]!.port};`));

      // Roll back by keyboard: focus the button of generation 1 and press Enter.
      await historyRows(page).last().locator('[data-testid="proxy-rollback"]').focus();
      await page.keyboard.press('Enter');
      await page
        .locator('[data-testid="proxy-node-generation"]', { hasText: 'runs generation 4' })
        .waitFor({ timeout: 60_000 });
      await waitFor(async () => (await historyRows(page).count()) === 4, 15_000, 'four generations');
      assert.match((await historyRows(page).first().textContent()) ?? '', /rollback\s*of 1/);

      // Drift: edit the applied file on the host; the warning and its diff appear without a reload.
      const gen = await api.get<{ generation: { files: { path: string }[] } }>(
        `/hosts/${hostId}/proxies/edge/generations/4`,
      );
      appendFileSync(gen.body.generation.files[0]!.path, '# tuned by hand\n');
      await page.locator('[data-testid="proxy-drift"]').waitFor({ timeout: 30_000 });
      assert.match(
        (await page.locator('[data-testid="proxy-drift"]').textContent()) ?? '',
        /\+# tuned by hand/,
      );
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  },
);

test(
  'fleet Proxies page: the node with its drift, a rollout started by keyboard completes',
  { skip, timeout: 120_000 },
  async () => {
    const { page, context, pageErrors } = await fleet.open({ theme: 'light', path: '/proxies' });
    try {
      await page.locator('[data-testid="fleet-proxy-row"]').first().waitFor();
      await page.locator('[data-testid="fleet-drift"]').waitFor();
      await page.check('input[aria-label="Roll out to edge on proxy-host"]');
      await page.fill('#r-reason', 'browser rollout');
      await page.focus('[data-testid="start-rollout"]');
      await page.keyboard.press('Enter');
      const rollout = page.locator('[data-testid="rollout"]', { hasText: 'browser rollout' });
      await rollout.waitFor();
      await rollout
        .locator('[data-testid="rollout-state"]', { hasText: 'completed' })
        .waitFor({ timeout: 60_000 });
      assert.equal(
        await rollout.locator('[data-testid="rollout-step-state"]').first().textContent(),
        'applied',
      );

      // Aimed at a tag: the controller picks the tagged host's nodes; the entry names the tag.
      const tagged = await api.request('PUT', `/host-tags/${hostId}`, { tags: ['edge-tier'] });
      assert.equal(tagged.status, 200, JSON.stringify(tagged.body));
      await page.check('#r-aim-tag');
      await page.fill('[data-testid="rollout-tag"]', 'edge-tier');
      await page.fill('#r-reason', '');
      await page.click('[data-testid="start-rollout"]');
      const byTag = page.locator('[data-testid="rollout"]', { hasText: 'rollout to tag edge-tier' });
      await byTag.waitFor({ timeout: 30_000 });
      await byTag
        .locator('[data-testid="rollout-state"]', { hasText: 'completed' })
        .waitFor({ timeout: 60_000 });
      assert.equal(await byTag.locator('[data-testid="rollout-step"]').count(), 1);
      const audit = await api.get<{ entries: { action: string; detail: { tag?: string } }[] }>(
        '/audit?limit=20',
      );
      assert.ok(
        audit.body.entries.some((e) => e.action === 'config.rollout.start' && e.detail.tag === 'edge-tier'),
        'the rollout is audited with its tag',
      );
      await clean(page, 'fleet page, rollouts done');
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
    }
  },
);

/**
 * axe in both themes on a desktop and a phone (axeViolationsInViews), for a state a test reaches in
 * its one context.
 */
async function clean(page: Page, where: string): Promise<void> {
  const found = await axeViolationsInViews(page, {
    shot: `test-results/proxies-${where.replace(/\W+/g, '-')}`,
  });
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** Drift again (the rollout wrote the applied files back), once for the four axe rounds below. */
let driftAgain: Promise<void> | undefined;
function driftOnce(): Promise<void> {
  driftAgain ??= (async () => {
    // Drift again (the rollout wrote the applied files back), so the warning is part of the check.
    const node = await api.get<{ node: { currentGeneration: number } }>(`/hosts/${hostId}/proxies/edge`);
    const gen = await api.get<{ generation: { files: { path: string }[] } }>(
      `/hosts/${hostId}/proxies/edge/generations/${node.body.node.currentGeneration}`,
    );
    appendFileSync(gen.body.generation.files[0]!.path, '# tuned again\n');
    await waitFor(
      async () =>
        (await api.get<{ node: { drift: unknown[] } }>(`/hosts/${hostId}/proxies/edge`)).body.node.drift
          .length > 0,
      30_000,
      'drift stored',
    );
  })();
  return driftAgain;
}

// The Proxies tab (with drift and a diff open) and the fleet page pass axe in dark and light, on
// desktop and phone: one test per viewport with its own limit (as one test of four rounds it hit
// its 240 s limit at load 17-31 while no round hung), each state checked in both themes on the
// same page (axeViolationsInThemes: no second context, sign-in and walk for the other theme).
for (const viewport of ['desktop', 'phone'] as const) {
  test(
    `Proxies tab (with drift and a diff open) and fleet page pass axe (dark and light, ${viewport})`,
    // A hang guard: a round takes ~15 s on a quiet machine.
    { skip, timeout: 150_000 },
    async () => {
      await driftOnce();
      const found: string[] = [];
      const { page, context } = await fleet.open({ viewport, path: `/hosts/${hostId}/proxies` });
      try {
        await page.locator('[data-testid="proxy-drift"]').waitFor();
        await page.focus('[data-testid="proxy-show-diff"]');
        await page.keyboard.press('Enter');
        await page.locator('[data-testid="proxy-diff-view"]').waitFor();
        // The settings fields are open too (nginx's sites, TLS on, an error shown at a field).
        await page.getByRole('button', { name: 'Settings of edge' }).click();
        await page.check('#s-edge-sites-0-tls');
        await page.fill('#s-edge-sites-0-port', '0');
        await page.click('[data-testid="proxy-save-push"]');
        await page.locator('#s-edge-sites-0-port-error').waitFor();
        for (const v of await axeViolationsInThemes(page)) found.push(`host tab ${viewport} ${v}`);
        // The node's panel fits the viewport (its history table scrolls inside it).
        const box = (await page.locator('[data-testid="proxy-node"]').boundingBox())!;
        const viewportWidth = page.viewportSize()!.width;
        assert.ok(
          box.x + box.width <= viewportWidth + 1,
          `host tab ${viewport}: the node panel ends at ${box.x + box.width}px in a ${viewportWidth}px viewport`,
        );
        await navigate(page, '/proxies');
        await page.locator('[data-testid="rollout"]').first().waitFor();
        // With the tag aim and new settings open: v2ray's inbound fields.
        await page.check('#r-aim-tag');
        await page.check('#r-with-settings');
        await page.selectOption('#r-adapter', 'v2ray');
        await page.locator('[data-testid="v2ray-inbound"]').waitFor();
        for (const v of await axeViolationsInThemes(page)) found.push(`fleet ${viewport} ${v}`);
      } finally {
        await context.close();
      }
      assert.deepEqual(found, []);
    },
  );
}

test(
  "telemt and v2ray nodes made in their own fields (not pushed); the template's rule is named at its field",
  { skip, timeout: 120_000 },
  async () => {
    const { page, context, pageErrors } = await fleet.open({ path: `/hosts/${hostId}/proxies` });
    try {
      await page.locator('[data-testid="proxy-node"]').first().waitFor();

      // telemt (MTProxy): TLS domain, port, modes, a template of other sections.
      await page.click('[data-testid="new-proxy-node"]');
      await page.fill('#n-instance', 'mt');
      await page.selectOption('#n-adapter', 'telemt');
      await page.fill('#n-public-address', 'mt.example.org');
      await page.fill('#n-tlsDomain', 'www.example.com');
      await page.fill('#n-port', '8443');
      await page.check('#n-modes-secure');
      await page.fill('#n-template', '[access.users]\nbob = "00000000000000000000000000000000"\n');
      await page.uncheck('#n-apply');
      await page.click('[data-testid="create-proxy-node"]');
      await page.locator('#n-template-error').waitFor();
      await page.fill('#n-template', '[timeouts]\nclient_handshake = 15\n');
      await page.click('[data-testid="create-proxy-node"]');
      await page.locator('[data-testid="proxy-node"]', { hasText: 'telemt' }).waitFor({ timeout: 30_000 });
      const mt = (
        await api.get<{ node: { settings: Record<string, unknown>; publicAddress: string; state: string } }>(
          `/hosts/${hostId}/proxies/mt`,
        )
      ).body.node;
      assert.equal(mt.state, 'pending', 'not pushed');
      assert.equal(mt.publicAddress, 'mt.example.org');
      assert.deepEqual(
        {
          tlsDomain: mt.settings.tlsDomain,
          port: mt.settings.port,
          modes: mt.settings.modes,
          template: mt.settings.template,
        },
        {
          tlsDomain: 'www.example.com',
          port: 8443,
          modes: { classic: false, secure: true, tls: true },
          template: '[timeouts]\nclient_handshake = 15\n',
        },
      );

      // v2ray: two inbounds, the second over WebSocket; a duplicate tag is named at its field.
      await page.click('[data-testid="new-proxy-node"]');
      await page.fill('#n-instance', 'vpn');
      await page.selectOption('#n-adapter', 'v2ray');
      await page.fill('#n-inbounds-0-port', '8443');
      await page.getByRole('button', { name: 'Add an inbound' }).click();
      await page.fill('#n-inbounds-1-tag', 'vless-in');
      await page.selectOption('#n-inbounds-1-protocol', 'vmess');
      await page.fill('#n-inbounds-1-port', '8444');
      await page.selectOption('#n-inbounds-1-network', 'ws');
      await page.fill('#n-inbounds-1-wsPath', '/ws');
      await page.uncheck('#n-apply');
      await page.click('[data-testid="create-proxy-node"]');
      await page.locator('#n-inbounds-1-tag-error').waitFor();
      await page.fill('#n-inbounds-1-tag', 'vmess-ws');
      await page.click('[data-testid="create-proxy-node"]');
      await page.locator('[data-testid="proxy-node"]', { hasText: 'v2ray' }).waitFor({ timeout: 30_000 });
      const vpn = (
        await api.get<{ node: { settings: { inbounds: Record<string, unknown>[] } } }>(
          `/hosts/${hostId}/proxies/vpn`,
        )
      ).body.node;
      assert.deepEqual(
        vpn.settings.inbounds.map((i) => [i.tag, i.protocol, i.port, i.network, i.wsPath ?? null]),
        [
          ['vless-in', 'vless', 8443, 'tcp', null],
          ['vmess-ws', 'vmess', 8444, 'ws', '/ws'],
        ],
      );
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.close();
      for (const instance of ['mt', 'vpn'])
        await api.request('DELETE', `/hosts/${hostId}/proxies/${instance}`);
    }
  },
);
