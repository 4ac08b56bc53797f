// Proves the Fleet upgrades page in real Chromium: versions in the fleet and the bundles held are
// listed, a rollout is started from the form and its per-host progress appears (canary first),
// it is cancelled by keyboard, and the page (before, during and after the rollout) passes axe (WCAG
// 2.1 A/AA) in dark and light, on a desktop and a phone; with no agent bundle the page says what is
// missing and where one comes from, and offers no rollout form. (The upgrade itself is proven end to end by upgrades.test.ts.)
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import {
  axeViolationsInThemes,
  launchChromium,
  openSignedIn,
  snapshot,
  useTheme,
} from './helpers/browser.ts';
import { removeDir, repoRoot, startTestController, tempDir } from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';
import { buildAgentBundle } from './install-helpers.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let browser: Browser;
let work: string;

before(
  async () => {
    work = tempDir('keel-upgrades-console-');
    process.env.KEEL_AGENT_BUNDLE_DIR = buildAgentBundle(work);
    ctl = await startTestController();
    for (const name of ['alpha', 'bravo', 'charlie']) {
      await storeHost(ctl, { name, agentVersion: '0.0.9', online: false });
    }
    browser = await launchChromium();
  },
  { timeout: 120_000 },
);

after(async () => {
  await browser?.close();
  await ctl?.close();
  delete process.env.KEEL_AGENT_BUNDLE_DIR;
  if (ctl) removeDir(ctl.dataDir);
  removeDir(work);
});

test('start a rollout, see per-host progress, cancel it; accessible', { timeout: 180_000 }, async () => {
  const violations: string[] = [];
  for (const [theme, viewport] of [
    ['dark', 'desktop'],
    ['light', 'phone'],
  ] as const) {
    const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!, {
      theme,
      viewport,
      path: '/upgrades',
    });
    try {
      await page.locator('[data-testid="fleet-versions"] li').first().waitFor();
      assert.match(
        await page.locator('[data-testid="fleet-versions"]').innerText(),
        /0\.0\.9 — 3 hosts, 0 online/,
      );
      assert.equal(await page.locator('[data-testid="bundles"] li').count(), 1);
      for (const v of await axeViolationsInThemes(page)) violations.push(`${viewport} page: ${v}`);

      await page.click('[data-testid="rollout-start"]');
      // The second round's page opens on the first round's cancelled rollout (the latest one, with
      // its three rows): wait for the new one to be shown running before reading its table.
      await page.locator('[data-testid="rollout-state"]', { hasText: 'Running' }).waitFor();
      const rows = page.locator('[data-testid="rollout-hosts"] tbody tr');
      await rows.nth(2).waitFor();
      const table = await page.locator('[data-testid="rollout-hosts"]').innerText();
      assert.match(table, /alpha\s+canary/);
      assert.match(table, /bravo\s+batch 1/);
      for (const v of await axeViolationsInThemes(page)) violations.push(`${viewport} rollout: ${v}`);

      // Cancel by keyboard (the confirm dialog accepted).
      page.once('dialog', (d) => void d.accept());
      const cancel = page.getByRole('button', { name: 'Cancel' });
      await cancel.focus();
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="rollout-state"]', { hasText: 'Cancelled' }).waitFor();
      assert.match(await page.locator('[data-testid="rollout-hosts"]').innerText(), /Not started/);
      const shot = `test-results/upgrades-cancelled-${viewport}`;
      for (const v of await axeViolationsInThemes(page, { shot }))
        violations.push(`${viewport} cancelled: ${v}`);
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  }
  assert.deepEqual(violations, [], `axe (WCAG 2.1 A/AA) found:\n${violations.join('\n')}`);
  // Both rollouts are in the audit trail.
  const audit = await ctl.services.audit.verify();
  assert.equal(audit.ok, true);
});

test(
  'with no agent bundle the page says what is missing and how to get one',
  { timeout: 120_000 },
  async () => {
    // The bundles moved out of the bundle directory (the controller reads it on each request).
    const dir = process.env.KEEL_AGENT_BUNDLE_DIR!;
    const aside = join(work, 'aside');
    mkdirSync(aside, { recursive: true });
    const moved = readdirSync(dir).filter((f) => f.startsWith('keel-agent-'));
    for (const f of moved) renameSync(join(dir, f), join(aside, f));
    try {
      for (const viewport of ['desktop', 'phone'] as const) {
        const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!, {
          viewport,
          path: '/upgrades',
        });
        try {
          const note = page.locator('[data-testid="no-bundles"]');
          await note.waitFor();
          const text = await note.innerText();
          assert.match(text, /No agent bundle here yet/);
          assert.match(text, /keel-agent-<version>\.tar\.gz/);
          assert.match(text, /npm run build/);
          assert.match(text, /KEEL_AGENT_BUNDLE_DIR/);
          assert.equal(await page.locator('[data-testid="rollout-form"]').count(), 0);
          await page.locator('[data-testid="rollout-unavailable"]').waitFor();
          for (const theme of ['light', 'dark'] as const) {
            await useTheme(page, theme);
            await snapshot(page, {
              path: join(
                repoRoot,
                'test-results',
                'first-use',
                `upgrades-no-bundle-${viewport}-${theme}.png`,
              ),
              fullPage: true,
            });
          }
          const found = await axeViolationsInThemes(page);
          assert.deepEqual(found, [], `axe (${viewport}):\n${found.join('\n')}`);
          assert.deepEqual(
            pageErrors.map((e) => e.message),
            [],
          );
        } finally {
          await context.close();
        }
      }
    } finally {
      for (const f of moved) renameSync(join(aside, f), join(dir, f));
    }
  },
);
