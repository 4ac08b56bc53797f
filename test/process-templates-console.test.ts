// Proves the template and fleet process pages in real Chromium against a real controller and a real
// agent: on a host's Processes tab, "New from template" offers an imported Pterodactyl egg as a
// form built from its variables; creating the process opens its console, it runs, its live output
// shows the egg's done line, a command typed into the console gets the server's answer, and Stop
// stops it (the egg's stop command reaches it). The fleet Processes page lists it with filters and
// restarts it as a bulk action; the Log search page finds its lines with the hit highlighted (as
// text). The template form, console, Processes page and Log search page (before any process and
// before a search too) pass axe WCAG 2.1 A/AA in dark and light, on desktop and phone.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  axeViolationsInThemes,
  axeViolationsInViews,
  navigate,
  snapshot,
  type ViewportName,
} from './helpers/browser.ts';
import { startConsoleFleet, type ConsoleFleet } from './helpers/console-fleet.ts';
import { repoRoot, waitFor } from './helpers/fleet.ts';
import { testEgg } from './helpers/pterodactyl-egg.ts';

const SERVER = `
console.log('Loading world...');
console.log('Done (0.01s)! For help, type "help"');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line === 'stop') { console.log('Stopping the server'); process.exit(0); }
    if (line.startsWith('say ')) console.log('[Server] ' + line.slice(4));
  }
});
`;

let fleet: ConsoleFleet;
let hostId: string;
let serverDir: string;
const shots = join(repoRoot, 'test-results');

before(async () => {
  fleet = await startConsoleFleet('template-console-host', { 'server.cjs': SERVER });
  ({ hostId, workDir: serverDir } = fleet);
  const imported = await fleet.api.post('/process-templates/import', {
    document: JSON.stringify(testEgg),
    id: 'echo-egg',
  });
  assert.equal(imported.status, 201, JSON.stringify(imported.body));
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  const root = join(fleet?.agentDir ?? '', 'processes');
  let names: string[] = [];
  try {
    names = readdirSync(root);
  } catch {
    // none
  }
  for (const name of names) {
    try {
      const { pid } = JSON.parse(readFileSync(join(root, name, 'run.json'), 'utf8')) as { pid: number };
      process.kill(-pid, 'SIGKILL');
    } catch {
      // not running
    }
  }
  await fleet?.close();
});

/** The parts of a select and a canvas the page-side measure uses (no DOM library here). */
interface SelectLike {
  clientWidth: number;
  selectedOptions: { text: string }[];
}
interface CanvasLike {
  getContext(kind: '2d'): { font: string; measureText(text: string): { width: number } };
}

/**
 * axe in both themes on a desktop and a phone (axeViolationsInViews), for a state the first test
 * reaches in its one context.
 */
async function clean(page: Page, where: string): Promise<void> {
  const found = await axeViolationsInViews(page, { shot: join(shots, where.replace(/\W+/g, '-')) });
  assert.deepEqual(found, [], `axe: ${where}:\n${found.join('\n')}`);
}

/** As `clean`, in the dark and the light theme (axeViolationsInThemes). */
async function cleanInThemes(page: Page, where: string): Promise<void> {
  assert.deepEqual(await axeViolationsInThemes(page), [], `axe: ${where}`);
}

test(
  'create a process from a template, see it run and its output, answer on its console, stop it',
  { timeout: 180_000 },
  async () => {
    const { context, page, pageErrors } = await fleet.open({
      viewport: 'desktop',
      theme: 'dark',
      path: '/processes',
    });
    try {
      // Before any process: the fleet Processes page says where one is made, not "No processes match".
      assert.match(
        (await page.locator('[data-testid="no-fleet-processes"]').innerText()) ?? '',
        /^No processes on any host yet\. Create one on a host's Processes tab/,
      );
      await clean(page, 'fleet processes before any');
      // Log search before a search says what it lists, not an empty panel.
      await navigate(page, '/logs');
      await page.locator('[data-testid="log-search-idle"]').waitFor();
      await clean(page, 'log search before a search');
      // The Output drop-down shows its whole text: room for the arrow beside "stdout and stderr".
      assert.ok(
        (await page.evaluate(() => {
          const g = globalThis as unknown as {
            document: { querySelector(s: string): SelectLike; createElement(t: 'canvas'): CanvasLike };
            getComputedStyle(e: SelectLike): { font: string; paddingLeft: string };
          };
          const select = g.document.querySelector('#s-stream');
          const style = g.getComputedStyle(select);
          const measure = g.document.createElement('canvas').getContext('2d');
          measure.font = style.font;
          const text = measure.measureText(select.selectedOptions[0]!.text).width;
          return select.clientWidth - parseFloat(style.paddingLeft) - text;
        })) >= 40,
        'the Output select leaves room for its arrow',
      );
      await navigate(page, `/hosts/${hostId}/processes`);
      await page.click('[data-testid="new-from-template"]');
      const form = page.locator('[data-testid="template-form"]');
      await form.waitFor();
      // A yes/no variable (the built-in Minecraft template's EULA): box and label on one line.
      await page.selectOption('[data-testid="template-select"]', 'minecraft-java');
      const box = await page.locator('[data-testid="template-var-EULA"]').boundingBox();
      const label = await page.locator('label[for="t-var-EULA"]').boundingBox();
      assert.ok(box && label, 'the EULA box and its label are laid out');
      assert.ok(label.x > box.x + box.width, 'the label follows the box');
      assert.ok(Math.abs(label.y + label.height / 2 - (box.y + box.height / 2)) < 6, 'on one line');
      await page.selectOption('[data-testid="template-select"]', 'echo-egg');
      // The egg's Docker-only parts are told, its variables are fields with their defaults.
      await form.getByText(/Parts of the egg not applied/).waitFor();
      assert.equal(await page.inputValue('[data-testid="template-var-MOTD"]'), 'hello world');
      await page.fill('[data-testid="template-name"]', 'echo-game');
      await page.fill('[data-testid="template-var-NODE_BIN"]', process.execPath);
      await page.fill('[data-testid="template-var-SERVER_PORT"]', '4567');
      await page.fill('[data-testid="template-cwd"]', serverDir);
      await clean(page, 'template form');
      await page.click('[data-testid="install-template"]');

      // The console opens on the new process: its live output shows the done line.
      const output = page.locator('[data-testid="console-output"]');
      await output.filter({ hasText: 'Done (0.01s)! For help' }).waitFor({ timeout: 60_000 });
      const row = page.locator('[data-testid="process-row"]').filter({ hasText: 'echo-game' });
      await row.locator('[data-testid="process-state"]', { hasText: 'running' }).waitFor({ timeout: 60_000 });

      await page.fill('[data-testid="console-input"]', 'say hello from the browser');
      await page.keyboard.press('Enter');
      await output.filter({ hasText: '[Server] hello from the browser' }).waitFor({ timeout: 30_000 });
      await clean(page, 'console of a template process');
      await snapshot(page, { path: join(shots, 'template-console.png'), fullPage: true });

      // Stop: the egg's stop command goes to its input, the server says so and exits.
      await row.getByRole('button', { name: /^Stop/ }).click();
      await row.locator('[data-testid="process-state"]', { hasText: 'stopped' }).waitFor({ timeout: 60_000 });
      await output.filter({ hasText: 'Stopping the server' }).waitFor({ timeout: 30_000 });
      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
  },
);

// The fleet Processes page filters and acts in bulk, Log search highlights hits, and both pass axe
// in every theme and viewport: one test per viewport with its own limit (as one test of four
// rounds it took 178 s of its 240 s at load 17-31), each page checked in both themes on the same
// page (cleanInThemes: no second context, sign-in and walk for the other theme). The rounds run in
// order: the first starts echo-game.
for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
  test(
    `fleet Processes page filters and acts in bulk; Log search highlights hits; both pass axe (dark and light, ${viewport})`,
    // A hang guard: a round takes ~15 s on a quiet machine.
    { timeout: 150_000 },
    async () => {
      const where = (p: string) => `${p} (${viewport})`;
      const { context, page, pageErrors } = await fleet.open({ viewport, theme: 'dark', path: '/processes' });
      try {
        const row = page.locator('[data-testid="fleet-process-row"][data-name="echo-game"]');
        await row.waitFor();
        await page.fill('[data-testid="filter-name"]', 'no-such-process');
        await page.locator('[data-testid="no-fleet-processes"]').waitFor();
        await page.fill('[data-testid="filter-name"]', 'echo');
        await row.waitFor();
        await cleanInThemes(page, where('processes page'));
        if (viewport === 'desktop') {
          // Bulk: select it and start it (it was stopped by the first test).
          await row.locator('[data-testid="select-row"]').check();
          await page.getByRole('button', { name: 'Start selected', exact: true }).click();
          await page
            .locator('[data-testid="bulk-results"]')
            .getByText(/echo-game: (starting|running)/)
            .waitFor();
          await row.locator('[data-testid="fleet-process-state"]', { hasText: 'running' }).waitFor();
        }
        await snapshot(page, {
          path: join(shots, `fleet-processes-dark-${viewport}.png`),
          fullPage: true,
        });
        assert.ok(
          await page.evaluate(
            () =>
              (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document
                .documentElement.scrollWidth <= (globalThis as unknown as { innerWidth: number }).innerWidth,
          ),
          'the Processes page is no wider than the viewport',
        );

        await navigate(page, '/logs');
        await page.fill('[data-testid="log-search-q"]', 'for help');
        await page.press('[data-testid="log-search-q"]', 'Enter');
        const hit = page.locator('[data-testid="log-search-hit"]').first();
        await hit.waitFor();
        assert.equal(await hit.locator('mark').first().innerText(), 'For help');
        const status = page.locator('[data-testid="log-search-status"]');
        await waitFor(async () => /found in/.test(await status.innerText()), 30_000, where('search ended'));
        await cleanInThemes(page, where('log search'));
        await snapshot(page, { path: join(shots, `log-search-dark-${viewport}.png`), fullPage: true });
        assert.deepEqual(
          pageErrors.map((e) => e.message),
          [],
        );
      } finally {
        await context.close();
      }
    },
  );
}

test('the regex search shows a refused pattern as a message', { timeout: 60_000 }, async () => {
  const { context, page } = await fleet.open({ path: '/logs' });
  try {
    await page.check('[data-testid="log-search-regex"]');
    await page.fill('[data-testid="log-search-q"]', 'a(b');
    await page.click('[data-testid="log-search-submit"]');
    await page
      .getByRole('alert')
      .filter({ hasText: /regular expression/ })
      .waitFor();
    await waitFor(
      async () => (await page.locator('[data-testid="log-search-hit"]').count()) === 0,
      5_000,
      'no hits',
    );
  } finally {
    await context.close();
  }
});
