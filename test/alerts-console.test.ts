// Proves the Alerts and Checks pages in real Chromium against a real controller: the firing alert
// shows in "Firing now" and in the top bar's bell, a channel's "Send test" reaches a local webhook
// receiver and says so, a maintenance window's start names its time zone (the browser's, and UTC
// for a repeating one), a rule is created by keyboard alone, the Checks page lists a check with
// its status, uptime and latency line and opens its history; both pages pass axe-core's WCAG 2.1
// A/AA checks in the dark and the light theme on a desktop and a phone, with their rule, history and
// new-check dialogs open (the rounds open dark on a desktop and light on a phone; each state is
// checked in both themes).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { encodeRecords, type CheckResult } from '@keel/shared';
import { sampleFacts } from './helpers/facts.ts';
import {
  axeViolationsInThemes,
  launchChromium,
  openSignedIn,
  snapshot,
  type ThemeName,
  type ViewportName,
} from './helpers/browser.ts';
import { removeDir, startTestController } from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
let browser: Browser;
const received: string[] = [];
const hook = createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('end', () => {
    received.push(body);
    res.end('ok');
  });
});

before(async () => {
  ctl = await startTestController();
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hostId = await storeHost(ctl, { name: 'web-1', facts: sampleFacts });
  const actor = { id: '00000000-0000-4000-8000-000000000000', role: 'owner' as const };
  const check = await ctl.services.checks.create(actor, {
    name: 'shop front',
    kind: 'http',
    target: { url: 'https://shop.example/health', bodyContains: 'ok' },
    hostIds: [hostId],
    intervalSeconds: 30,
  });
  const now = Date.now();
  const results: CheckResult[] = Array.from({ length: 8 }, (_, i) => ({
    checkId: check.id,
    t: now - (8 - i) * 600_000,
    ok: i !== 3,
    latencyMs: 40 + i * 5,
    status: i !== 3 ? 200 : 503,
    ...(i !== 3 ? { certExpiresAt: now + 20 * 86_400_000 } : { error: 'HTTP status 503' }),
  }));
  await ctl.services.checks.sink.append(hostId, 'checks', {
    firstSeq: 1,
    count: results.length,
    body: encodeRecords(results.map((r) => ({ ts: r.t, payload: Buffer.from(JSON.stringify(r)) }))),
  });
  const channel = await ctl.services.notifications.create(actor, {
    name: 'ops hook',
    kind: 'webhook',
    config: { url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook` },
    secret: 'signing-secret',
  });
  await ctl.services.alerts.createRule(actor, {
    name: 'Host unreachable',
    kind: 'host_offline',
    forSeconds: 0,
    channelIds: [channel.id],
  });
  await ctl.services.alerts.evaluate(); // web-1 has no session: offline, fires now
  // Far ahead, so it silences nothing here: its start is shown in the browser's zone, named.
  await ctl.services.alerts.createMaintenance(actor, {
    name: 'Kernel updates',
    scope: { type: 'all' },
    startsAt: '2030-12-24T20:00:00Z',
    durationMinutes: 90,
    recurrence: 'daily',
  });
  // Also far ahead (a planned silence of the check kind, which fires nothing here): its end too.
  await ctl.services.alerts.createSilence(actor, {
    matchers: { kind: 'check_failing' },
    startsAt: '2030-12-24T20:00:00Z',
    endsAt: '2030-12-24T22:00:00Z',
    comment: 'planned',
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  hook.close();
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

/**
 * The space in px between the bottom of the control `above` and the top of the label of the field
 * `below` in a form (both CSS selectors): fields that touch read as one.
 */
async function spaceBetween(page: Page, above: string, below: string): Promise<number> {
  const box = async (sel: string) => {
    const b = await page.locator(sel).boundingBox();
    assert.ok(b, `${sel} is laid out`);
    return b;
  };
  const a = await box(above);
  const b = await box(below);
  return b.y - (a.y + a.height);
}

// Hang guards of 240 s: the desktop round took 116 s of its former 120 s at load 17-31 (~25 s quiet;
// the first round carries the page's first load).
for (const [viewport, theme] of [
  ['desktop', 'dark'],
  ['phone', 'light'],
] as [ViewportName, ThemeName][]) {
  test(
    `the Alerts page: firing now, bell, send test, a rule by keyboard (${viewport}, ${theme})`,
    { timeout: 240_000 },
    async () => {
      const admin = ctl.firstAdmin!;
      const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin, {
        viewport,
        theme,
        path: '/alerts',
      });
      try {
        const firing = page.locator('[data-testid="alerts-active"]');
        await firing.waitFor();
        assert.match((await firing.textContent()) ?? '', /Host unreachable[\s\S]*web-1[\s\S]*Firing/);
        const bell = page.locator('[data-testid="alert-bell"]');
        await page.locator('[data-testid="alert-bell"][aria-label="Alerts: 1 firing"]').waitFor();
        assert.equal(await bell.getAttribute('href'), '/alerts');

        // A maintenance window's start says its time zone: the browser's (here Asia/Tokyo, UTC+9,
        // no daylight saving time), named, and for a daily one the UTC time it repeats at.
        const cdp = await context.newCDPSession(page);
        await cdp.send('Emulation.setTimezoneOverride', { timezoneId: 'Asia/Tokyo' });
        await page.reload();
        const maintenance = page.locator('li', { hasText: 'Maintenance: Kernel updates' });
        await maintenance.waitFor();
        // 20:00 UTC on 24 Dec is 05:00 on 25 Dec in Tokyo (in the browser's own date format).
        const shown = (await maintenance.textContent()) ?? '';
        assert.match(
          shown,
          /Maintenance: Kernel updates \(all hosts\), .*\b0?5:00\b.* \(Asia\/Tokyo\), daily at 20:00 UTC for 90 min/,
        );
        assert.match(shown, /\b25\b/);
        const silence = page.locator('li', { hasText: 'Silence:' });
        // 22:00 UTC is 07:00 the next day in Tokyo.
        assert.match((await silence.textContent()) ?? '', /until .*\b0?7:00\b.* \(Asia\/Tokyo\) — planned/);
        assert.equal(await page.locator('label[for="m-start"]').innerText(), 'Starts (Asia/Tokyo)');
        await firing.waitFor();
        assert.ok(
          (await spaceBetween(page, '#s-rule', 'label[for="s-host"]')) >= 8,
          'the silence form keeps its fields apart',
        );
        assert.deepEqual(await axeViolationsInThemes(page), []);

        // Counted by event: the rule's firing notice reaches the hook in its own time.
        const tests = () => received.filter((b) => (JSON.parse(b) as { event?: string }).event === 'test');
        const before = tests().length;
        // By keyboard: focus the channel's "Send test" and press Enter.
        await page.locator('[data-testid="channel-test"]').first().focus();
        await page.keyboard.press('Enter');
        await page
          .locator('[data-testid="channel-test-result"]', { hasText: 'Test sent through ops hook' })
          .waitFor();
        assert.equal(tests().length, before + 1);

        // Keyboard only: focus "New rule", open it, fill the name, submit with Enter.
        await page.locator('[data-testid="rule-new"]').focus();
        await page.keyboard.press('Enter');
        await page.locator('[data-testid="rule-form"] #r-name').waitFor();
        assert.equal(
          await page.evaluate(
            () =>
              (globalThis as unknown as { document: { activeElement: { id: string } } }).document
                .activeElement.id,
          ),
          'r-name',
        );
        const ruleName = `CPU hot ${viewport}`;
        await page.keyboard.type(ruleName);
        assert.ok(
          (await spaceBetween(page, '#r-name', 'label[for="r-kind"]')) >= 8,
          'the rule form keeps its fields apart',
        );
        assert.deepEqual(await axeViolationsInThemes(page), [], 'the rule dialog passes axe');
        await page.keyboard.press('Enter');
        await page.locator('[data-testid="alerts-rules"]', { hasText: ruleName }).waitFor();
        const rules = await ctl.services.alerts.listRules({ id: admin.username, role: 'owner' });
        const made = rules.find((r) => r.name === ruleName);
        assert.ok(made, 'the rule is stored');
        assert.equal(made.kind, 'metric');
        assert.deepEqual(made.params, { series: 'cpu', comparator: '>', threshold: 90, windowSeconds: 60 });
        assert.deepEqual(await axeViolationsInThemes(page), [], 'the page with the new rule passes axe');
        await snapshot(page, { path: `test-results/alerts-${viewport}-${theme}.png`, fullPage: true }).catch(
          () => {},
        );
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );

  test(
    `the Checks page: status, uptime, latency line and history (${viewport}, ${theme})`,
    { timeout: 240_000 },
    async () => {
      const admin = ctl.firstAdmin!;
      const { context, page, pageErrors } = await openSignedIn(browser, ctl.url, admin, {
        viewport,
        theme,
        path: '/checks',
      });
      try {
        const row = page.locator('[data-testid="check-row"]', { hasText: 'shop front' });
        await row.waitFor();
        assert.equal((await row.locator('[data-testid="check-status"]').textContent())?.trim(), 'Up');
        assert.match((await row.textContent()) ?? '', /87\.50 %/);
        const spark = row.locator('svg[role="img"]');
        assert.match(
          (await spark.getAttribute('aria-label')) ?? '',
          /^shop front latency over 24 hours: latest \d+ ms, highest \d+ ms$/,
        );
        assert.ok((await spark.locator('polyline').count()) === 1, 'the line is drawn');
        // The table scrolls inside its panel: nothing in it (its visually hidden labels either)
        // widens the page past the viewport.
        assert.ok(
          (await page.evaluate(
            () =>
              (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document
                .documentElement.scrollWidth,
          )) <= page.viewportSize()!.width,
          'the Checks page is no wider than the viewport',
        );
        assert.deepEqual(await axeViolationsInThemes(page), []);
        await row.getByRole('button', { name: /History/ }).click();
        const history = page.locator('[data-testid="check-history"]');
        await history.locator('table').waitFor();
        assert.equal(await history.locator('tbody tr').count(), 8);
        assert.match((await history.textContent()) ?? '', /HTTP status 503/);
        assert.deepEqual(await axeViolationsInThemes(page), [], 'the history dialog passes axe');
        await page.keyboard.press('Escape');
        await history.locator('table').waitFor({ state: 'detached' });

        // The new-check form: each field apart from the next.
        await page.locator('[data-testid="check-new"]').click();
        await page.locator('[data-testid="check-form"] #check-name').waitFor();
        assert.ok(
          (await spaceBetween(page, '#check-name', 'label[for="check-kind"]')) >= 8,
          'the check form keeps its fields apart',
        );
        assert.ok((await spaceBetween(page, '#check-url', 'label[for="check-body"]')) >= 8);
        assert.deepEqual(
          await axeViolationsInThemes(page, { shot: `test-results/checks-form-${viewport}` }),
          [],
          'the new-check dialog passes axe',
        );
        await page.keyboard.press('Escape');
        await page.locator('[data-testid="check-form"] #check-name').waitFor({ state: 'detached' });
        await snapshot(page, { path: `test-results/checks-${viewport}-${theme}.png`, fullPage: true }).catch(
          () => {},
        );
        assert.deepEqual(pageErrors, []);
      } finally {
        await context.close();
      }
    },
  );
}
