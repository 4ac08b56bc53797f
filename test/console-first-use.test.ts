// Proves the console's first-use fixes in real Chromium against a real controller and agent, on a
// desktop and a phone, each page passing axe's WCAG 2.1 A/AA checks in the dark and light themes:
// the process console says "No output yet" until the first line; "New from template" fills the
// required name with the template's id, unique on the host ("command", then "command-2"), and keeps
// a typed one; a check created on the Checks page shows its first result within seconds, not after
// its 60 s interval, its latency line a dot until a second; a visit to the Terminal tab opens no session (no recording) until "Open
// terminal", and "End session" says the user ended it (each state axe-checked); the Alerts and Checks tables keep their Edit/Delete buttons inside a phone's width and
// the check and rule forms stack through the shared .form-stack class; Proxies with no node has a
// page header like the other pages and no rollout form; the sessions list names the browser
// ("Chrome on Linux") with the full user-agent string on hover.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  axeViolationsInThemes,
  navigate,
  screenshots,
  snapshot,
  useTheme,
  viewports,
  type PageDocument,
  type ViewportName,
} from './helpers/browser.ts';
import { startConsoleFleet, type ConsoleFleet } from './helpers/console-fleet.ts';
import { repoRoot, waitFor } from './helpers/fleet.ts';

declare const document: PageDocument;
declare function getComputedStyle(el: unknown): { display: string; flexDirection: string };

/** A process that writes nothing until it is sent a line, then answers it. */
const QUIET = String.raw`
process.stdin.on('data', (d) => process.stdout.write('answer: ' + String(d)));
setInterval(() => {}, 1 << 30);
`;
/** A desktop browser's user-agent string, for a session signed in with it. */
const CHROME_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

let fleet: ConsoleFleet;
let listener: Server;
let port: number;
const shots = join(repoRoot, 'test-results', 'first-use');

before(async () => {
  fleet = await startConsoleFleet('first-use-host', { 'quiet.cjs': QUIET });
  for (const name of ['quiet-desktop', 'quiet-phone']) {
    const made = await fleet.api.post(`/hosts/${fleet.hostId}/processes`, {
      name,
      argv: [process.execPath, join(fleet.workDir, 'quiet.cjs')],
      cwd: fleet.workDir,
      restart: { policy: 'never' },
    });
    assert.equal(made.status, 200, JSON.stringify(made.body));
  }
  const rule = await fleet.api.post('/alerts/rules', {
    name: 'CPU hot on the first-use host',
    kind: 'metric',
    params: { series: 'cpu', comparator: '>', threshold: 95, resolveThreshold: 80, windowSeconds: 60 },
    scope: { type: 'host', id: fleet.hostId },
    severity: 'critical',
  });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  // A session signed in from a desktop Chrome (the list's other sessions are this test's API ones).
  const admin = fleet.ctl.firstAdmin!;
  const login = await fetch(`${fleet.ctl.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: fleet.ctl.url, 'user-agent': CHROME_UA },
    body: JSON.stringify({ username: admin.username, password: admin.password }),
  });
  assert.equal(login.status, 200);
  listener = createServer((s) => s.end());
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  port = (listener.address() as AddressInfo).port;
});

after(async () => {
  listener?.close();
  await fleet?.close();
});

async function accessible(page: Page, where: string, found: string[]): Promise<void> {
  for (const v of await axeViolationsInThemes(page)) found.push(`${where}: ${v}`);
}

/** Whether `selector`'s element lies inside the viewport's width. */
async function inView(page: Page, selector: string, width: number): Promise<boolean> {
  const box = await page.locator(selector).first().boundingBox();
  assert.ok(box, `${selector} is shown`);
  return box.x >= 0 && box.x + box.width <= width + 0.5;
}

const recordings = async () =>
  (await fleet.api.get<{ recordings: unknown[] }>(`/recordings?hostId=${fleet.hostId}`)).body.recordings
    .length;

for (const viewport of ['desktop', 'phone'] as ViewportName[]) {
  test(`first-use fixes (${viewport})`, { timeout: 240_000 }, async () => {
    const found: string[] = [];
    const width = viewports[viewport].width;
    /** Screenshots in both themes (KEEL_TEST_SCREENSHOTS=1 only), for a person to look at. */
    const shot = async (name: string) => {
      if (!screenshots) return;
      for (const theme of ['light', 'dark'] as const) {
        await useTheme(page, theme);
        await snapshot(page, { path: join(shots, `${name}-${viewport}-${theme}.png`), fullPage: true });
      }
    };
    const { context, page, pageErrors } = await fleet.open({
      viewport,
      path: `/hosts/${fleet.hostId}/processes/quiet-${viewport}`,
    });
    try {
      // 1. The process console before the first line: a hint, not a blank box; gone with output.
      const empty = page.locator('[data-testid="console-empty"]');
      await empty
        .filter({ hasText: `No output yet: lines appear here as quiet-${viewport} writes them.` })
        .waitFor();
      await page.locator('[data-testid="console-connection"]', { hasText: 'Live' }).waitFor();
      await accessible(page, 'process console, empty', found);
      await shot('process-console-empty');
      await page.fill('[data-testid="console-input"]', 'hello');
      await page.keyboard.press('Enter');
      await page.locator('[data-testid="console-output"]', { hasText: 'answer: hello' }).waitFor();
      assert.equal(await empty.count(), 0, 'the hint goes with the first line');

      // 2. New from template: the required name starts filled, unique on the host.
      await navigate(page, `/hosts/${fleet.hostId}/processes`);
      const newFromTemplate = async () => {
        await page.click('[data-testid="new-from-template"]');
        await page.locator('[data-testid="template-form"]').waitFor();
      };
      await newFromTemplate();
      const first = await page.locator('[data-testid="template-select"]').inputValue();
      const name = page.locator('[data-testid="template-name"]');
      assert.equal(await name.inputValue(), first, 'the first template names the process');
      await page.selectOption('[data-testid="template-select"]', 'command');
      const taken = viewport === 'phone'; // the desktop round created "command"
      assert.equal(await name.inputValue(), taken ? 'command-2' : 'command');
      await accessible(page, 'template form', found);
      await shot('template-form');
      // A typed name stays when another template is chosen.
      await name.fill(`typed-${viewport}`);
      await page.selectOption('[data-testid="template-select"]', first);
      assert.equal(await name.inputValue(), `typed-${viewport}`);
      await page.selectOption('[data-testid="template-select"]', 'command');
      await name.fill(taken ? 'command-2' : 'command');
      await page.fill('[data-testid="template-var-PROGRAM"]', process.execPath);
      await page.fill('#t-var-ARGS', join(fleet.workDir, 'quiet.cjs'));
      await page.click('[data-testid="install-template"]');
      await page
        .locator('[data-testid="process-row"]')
        .filter({ hasText: taken ? 'command-2' : 'command' })
        .first()
        .waitFor();
      await newFromTemplate();
      await page.selectOption('[data-testid="template-select"]', 'command');
      assert.equal(
        await name.inputValue(),
        taken ? 'command-3' : 'command-2',
        'a taken name gets the next number',
      );
      await page.locator('[data-testid="template-form"] button', { hasText: 'Cancel' }).click();

      // 3. A new check's first result within seconds of Create (its interval is 60 s; the page's
      // own read is every 30 s).
      await navigate(page, '/checks');
      await page.click('[data-testid="check-new"]');
      await page.fill('#check-name', `port ${viewport}`);
      await page.selectOption('#check-kind', 'tcp');
      await page.fill('#check-host', '127.0.0.1');
      await page.fill('#check-port', String(port));
      assert.equal(await page.locator('#check-interval').inputValue(), '60');
      const form = await page.locator('#check-form').evaluate((el) => {
        const s = getComputedStyle(el);
        return `${s.display} ${s.flexDirection}`;
      });
      assert.equal(form, 'flex column', 'the check form stacks through .form-stack');
      const created = Date.now();
      await page.click('button[form="check-form"][type="submit"]');
      const row = page.locator('[data-testid="checks-table"] tr', { hasText: `port ${viewport}` });
      await row.locator('[data-testid="check-status"]', { hasText: 'Up' }).waitFor({ timeout: 15_000 });
      const tookMs = Date.now() - created;
      assert.ok(tookMs < 15_000, `the first result showed after ${tookMs} ms`);
      // Its latency line with one result is a dot (a polyline of one point draws nothing).
      const spark = row.locator('svg[role="img"]');
      await spark.locator('circle').waitFor({ timeout: 5_000 });
      assert.equal(await spark.locator('polyline').count(), 0);
      // Its actions in reach on a phone too (the table reads as cards there).
      assert.ok(await inView(page, '[data-testid="checks-table"] tbody tr button:has-text("Edit")', width));
      assert.ok(await inView(page, '[data-testid="checks-table"] tbody tr button:has-text("Delete")', width));
      await accessible(page, 'checks', found);
      await shot('checks');

      // 4. Alerts on a phone: the rule's actions stay in reach; the dialog's form stacks.
      await navigate(page, '/alerts');
      const rules = page.locator('[data-testid="alerts-rules"]');
      await rules.filter({ hasText: 'CPU hot on the first-use host' }).waitFor();
      assert.ok(await inView(page, '[data-testid="alerts-rules"] tbody tr button:has-text("Edit")', width));
      assert.ok(await inView(page, '[data-testid="alerts-rules"] tbody tr button:has-text("Delete")', width));
      const sideways = await page.evaluate(() => {
        const wrap = document.querySelector('[data-testid="alerts-rules"]')!.closest('.table-wrap')!;
        return wrap.scrollWidth - wrap.clientWidth;
      });
      assert.ok(sideways <= 1, `the rules table does not scroll sideways (${sideways} px)`);
      await accessible(page, 'alerts', found);
      await shot('alerts');
      await page.click('[data-testid="rule-new"]');
      const ruleForm = await page.locator('#rule-form').evaluate((el) => {
        const s = getComputedStyle(el);
        return `${s.display} ${s.flexDirection}`;
      });
      assert.equal(ruleForm, 'flex column', 'the rule form stacks through .form-stack');
      await page.keyboard.press('Escape');

      // 5. Proxies without a node: a page header as elsewhere, no rollout form.
      await navigate(page, '/proxies');
      await page.locator('[data-testid="no-proxies"]').waitFor();
      const h1 = await page.getByRole('heading', { level: 1, name: 'Proxies' }).evaluate((el) => ({
        inHead: el.closest('.page-head') !== null,
        inPanel: el.closest('.panel') !== null,
      }));
      assert.deepEqual(h1, { inHead: true, inPanel: false });
      assert.equal(await page.locator('[data-testid="rollout-form"]').count(), 0);
      await accessible(page, 'proxies', found);
      await shot('proxies-empty');

      // 6. The Terminal tab: a visit opens nothing and records nothing; the button does.
      const before = await recordings();
      await navigate(page, `/hosts/${fleet.hostId}/terminal`);
      await page.locator('[data-testid="terminal-status"]', { hasText: 'Not connected' }).waitFor();
      await page.locator('[data-testid="terminal-idle"]').waitFor();
      await accessible(page, 'terminal, idle', found);
      await shot('terminal-idle');
      await navigate(page, `/hosts/${fleet.hostId}`);
      assert.equal(await recordings(), before, 'a visit recorded no session');
      await navigate(page, `/hosts/${fleet.hostId}/terminal`);
      await page.click('[data-testid="terminal-open"]');
      await page.locator('[data-testid="terminal-status"]', { hasText: 'Live' }).waitFor({ timeout: 30_000 });
      await waitFor(async () => (await recordings()) === before + 1, 15_000, 'the opened session recorded');
      await accessible(page, 'terminal, live', found);
      await shot('terminal-live');
      await page.click('[data-testid="terminal-end"]');
      await page.locator('[data-testid="terminal-status"]', { hasText: 'Ended' }).waitFor();
      // Ended by the user: said so, not "the connection was lost".
      assert.equal(
        await page.locator('[data-testid="terminal-note"]').textContent(),
        'You ended the session.',
      );
      await accessible(page, 'terminal, ended', found);
      await shot('terminal-ended');

      // 7. Sessions: a short browser label, the full user-agent string on hover.
      await navigate(page, '/settings/account');
      const browserLabel = page.locator('[data-testid="session-browser"]', { hasText: 'Chrome on Linux' });
      await browserLabel.first().waitFor();
      assert.equal(await browserLabel.first().getAttribute('title'), CHROME_UA);
      assert.equal(await page.locator('[data-testid="sessions"]', { hasText: 'Mozilla/5.0' }).count(), 0);
      await accessible(page, 'account', found);
      await shot('sessions');

      assert.deepEqual(
        pageErrors.map((e) => e.message),
        [],
      );
    } finally {
      await context.close();
    }
    assert.deepEqual(found, [], `axe (WCAG 2.1 A/AA) found:\n${found.join('\n')}`);
  });
}
