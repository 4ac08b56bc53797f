// Proves the console in real Chromium against a real controller and real agents: sign in, see
// this host online with its facts, open "Add host", run the command it shows, and watch the new
// host appear online without reloading the page; then open the host page, and the audit trail.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openConsole, signIn, snapshot } from './helpers/browser.ts';
import {
  enrollAgent,
  kill,
  removeDir,
  repoRoot,
  runAgent,
  tempDir,
  waitFor,
  type Proc,
  startFleet,
  type TestController,
} from './helpers/fleet.ts';

type Ctl = TestController;
let ctl: Ctl;
const procs: Proc[] = [];
const dirs: string[] = [];
const shots = join(repoRoot, 'test-results');

before(async () => {
  // A first host, enrolled and running before the browser opens.
  ({ ctl } = await startFleet(procs, dirs, { name: 'first-host' }));
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  for (const p of procs) await kill(p, 'SIGTERM');
  await ctl.close();
  removeDir(ctl.dataDir);
  for (const d of dirs) removeDir(d);
});

test('sign in, see the fleet, add a host with the shown command, see it appear live', async (t) => {
  const admin = ctl.firstAdmin;
  assert.ok(admin, 'a new install has a generated first admin');
  const { browser, page, pageErrors } = await openConsole(ctl.url);
  t.after(() => browser.close());

  await signIn(page, admin.username, admin.password);
  const rows = page.locator('[data-testid="host-row"]');
  const first = rows.filter({ hasText: 'first-host' });
  await first.waitFor();
  await waitFor(
    async () => (await first.getAttribute('data-online')) === 'true',
    10_000,
    'first host online',
  );
  // Facts are shown: the kernel of this machine appears in the row.
  const kernel = (await import('node:os')).release();
  await waitFor(
    async () => ((await first.textContent()) ?? '').includes(kernel),
    10_000,
    'kernel shown in the row',
  );
  await snapshot(page, { path: join(shots, 'fleet.png') });

  await page.click('[data-testid="add-host"]');
  await page.click('button[type="submit"][form="join-token-form"]');
  const commandBox = page.locator('[data-testid="join-command"]');
  await commandBox.waitFor();
  const command = ((await commandBox.textContent()) ?? '').trim();
  assert.match(
    command,
    /^curl -fsSL \S+\/install\.sh \| KEEL_JOIN_TOKEN=kjt_\S+ sh -s -- agent --controller \S+ --pin sha256:\S+$/,
  );
  await snapshot(page, { path: join(shots, 'add-host.png') });

  // Enroll with that command's controller, pin and token (this repository's agent; test/install.test.ts
  // runs the whole install line) and start the agent.
  const words = command.split(/\s+/);
  const arg = (flag: string) => words[words.indexOf(flag) + 1]!;
  const stateDir = tempDir('keel-agent-');
  dirs.push(stateDir);
  const token = words.find((w) => w.startsWith('KEEL_JOIN_TOKEN='))!.slice('KEEL_JOIN_TOKEN='.length);
  const r = await enrollAgent(stateDir, arg('--controller'), token, arg('--pin'), 'second-host');
  assert.equal(r.code, 0, r.output);
  procs.push(runAgent(stateDir));
  await page.keyboard.press('Escape');

  // It appears, online, without a reload.
  const second = rows.filter({ hasText: 'second-host' });
  await second.waitFor({ timeout: 10_000 });
  await waitFor(
    async () => (await second.getAttribute('data-online')) === 'true',
    10_000,
    'second host online',
  );
  await snapshot(page, { path: join(shots, 'fleet-two-hosts.png') });

  // The host page opens with its overview.
  await first.locator('a').first().click();
  await page.waitForURL(/\/hosts\//);
  await page.getByText(kernel).filter({ visible: true }).first().waitFor();
  // Ping goes through the controller to the agent and back.
  await page.click('[data-testid="ping"]');
  await page.getByText(/Pong in [\d.]+ ms/).waitFor();
  // Its history (admins) shows the audit entry of its enrollment.
  await page.locator('[data-testid="host-history-row"]').filter({ hasText: 'host.enroll' }).first().waitFor();
  await snapshot(page, { path: join(shots, 'host.png'), fullPage: true });

  // The audit trail (admins): the sign-in is there, and the hash chain verifies.
  // The main navigation groups sections by area; Audit sits under Admin.
  const mainNav = page.getByRole('navigation', { name: 'Main' });
  await mainNav.getByRole('button', { name: 'Admin' }).click();
  await mainNav.getByRole('link', { name: 'Audit' }).click();
  await page.waitForURL(/\/audit$/);
  await page.locator('[data-testid="audit-row"]').filter({ hasText: 'auth.login' }).first().waitFor();
  await page.click('[data-testid="audit-verify"]');
  const verdict = page.locator('[data-testid="audit-verdict"]');
  await verdict.waitFor();
  assert.match((await verdict.textContent()) ?? '', /Chain intact: \d+ entr(y|ies)/);

  assert.deepEqual(
    pageErrors.map((e) => e.message),
    [],
  );
});
