// Proves the console's Terminal tab in real Chromium against a real controller and agent: the
// shell goes live, typing `echo hi` shows `hi`, resizing the page changes `stty size`, the page
// passes axe's WCAG checks with the terminal on it (its player and a refusal in both themes on a
// desktop and a phone), hostile escape sequences (OSC 52, OSC 8, title, queries) do nothing to the
// page, `exit` says the shell ended, and the session's recording is listed, downloads as asciicast
// and plays; a full-screen program (vi) switches xterm to the alternate screen and back, ^C stops
// `yes`, and Esc then Tab moves the focus out of the terminal (Tab alone is the shell's); on a phone
// the extra keys row sends Ctrl+C, Tab and the arrows without taking the focus; a user
// without terminal.open is told why in the console; kill -9 of the agent mid-session: the page
// says the session ended, and the recording is complete and read by `asciinema cat` (Debian's
// package).
//
// The shell is a login shell of the tests' terminal user (KEEL_TEST_TERMINAL_USER, `keel-test`,
// with the skeleton profile; see test/terminal.test.ts), else of the user running the tests, whose
// profile runs before it answers (root's here runs `pyenv init`, 3.7 s alone and 8-17 s for six
// shells at once at load 19), so the first answer of each session is awaited for SHELL_READY_MS,
// the rest for Keel's own bounds.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { TEST_PASSWORD } from '../controller/src/app-fixture.ts';
import { ApiClient } from './helpers/api.ts';
import {
  axeViolationsInThemes,
  axeViolationsInViews,
  launchChromium,
  openSignedIn,
  viewports,
  type Credentials,
} from './helpers/browser.ts';
import { kill, removeDir, waitFor, type Proc, startFleet, type TestController } from './helpers/fleet.ts';

type Ctl = TestController;
let ctl: Ctl;
const procs: Proc[] = [];
const dirs: string[] = [];
let hostId: string;
let agent: Proc;

before(async () => {
  ({ ctl, hostId, agent } = await startFleet(procs, dirs, { name: 'terminal-host' }));
});

/** Which xterm buffer is showing: 'normal', or 'alternate' (full-screen programs). */
function bufferType(page: Page): Promise<string | undefined> {
  return page.evaluate(() => {
    const el = (
      globalThis as unknown as { document: { querySelector(s: string): unknown } }
    ).document.querySelector('[data-testid="terminal"]') as {
      keelTerminal?: { buffer: { active: { type: string } } };
    } | null;
    return el?.keelTerminal?.buffer.active.type;
  });
}

/**
 * The host's Terminal tab as `user`, signed in (openSignedIn: the sign-in is not what this file
 * proves), in its own browser connection that the test closes, with a session asked for through
 * "Open terminal" (the tab opens none by itself: console-first-use.test.ts).
 */
async function terminalTab(t: { after(fn: () => unknown): void }, user: Credentials) {
  const browser = await launchChromium();
  t.after(() => browser.close());
  const opened = await openSignedIn(browser, ctl.url, user, {
    theme: 'light',
    path: `/hosts/${hostId}/terminal`,
  });
  await opened.page.click('[data-testid="terminal-open"]');
  return { browser, page: opened.page, pageErrors: opened.pageErrors };
}

/** Signs the first admin in and opens the host's Terminal tab, live. */
async function openTerminalPage(t: { after(fn: () => unknown): void }) {
  const opened = await terminalTab(t, ctl.firstAdmin!);
  await opened.page.locator('[data-testid="terminal-status"]', { hasText: 'Live' }).waitFor();
  await opened.page.locator('[data-testid="terminal"]').click();
  return opened;
}

after(async () => {
  for (const p of procs) await kill(p, 'SIGTERM');
  await ctl.close();
  removeDir(ctl.dataDir);
  for (const d of dirs) removeDir(d);
});

/** The terminal's visible text (xterm's buffer, through the element the page hangs it on). */
function screen(page: Page, testId = 'terminal'): Promise<string> {
  return page.evaluate((testId) => {
    const el = (
      globalThis as unknown as { document: { querySelector(s: string): unknown } }
    ).document.querySelector(`[data-testid="${testId}"]`) as {
      keelTerminal?: {
        buffer: {
          active: {
            length: number;
            getLine(i: number): { translateToString(trim: boolean): string } | undefined;
          };
        };
      };
    } | null;
    const buf = el?.keelTerminal?.buffer.active;
    if (!buf) return '';
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  }, testId);
}

/** How long a login shell may take through its profile before it answers (see the top). */
const SHELL_READY_MS = 60_000;

async function seen(page: Page, re: RegExp, what: string, testId = 'terminal', ms = 15_000): Promise<string> {
  try {
    return await waitFor(async () => re.exec(await screen(page, testId))?.[1], ms, what);
  } catch (err) {
    // What the terminal showed instead, for the next reader of a failed run.
    const last = (await screen(page, testId).catch(() => '')).trimEnd().split('\n').slice(-12).join('\n');
    throw new Error(`${(err as Error).message}; the terminal's last lines:\n${last}`);
  }
}

test('Terminal tab: echo hi, resize, exit, recording listed', { timeout: 150_000 }, async (t) => {
  const admin = ctl.firstAdmin;
  assert.ok(admin);
  const { page, pageErrors } = await terminalTab(t, admin);
  await page.locator('[data-testid="terminal-status"]', { hasText: 'Live' }).waitFor();
  await page.locator('[data-testid="terminal"]').click();
  await page.keyboard.type('echo "h""i"');
  await page.keyboard.press('Enter');
  assert.equal(await seen(page, /^(hi)$/m, 'hi on the screen', 'terminal', SHELL_READY_MS), 'hi');
  // This Chromium has no GPU (--disable-gpu): its WebGL is SwiftShader, software, so the page keeps
  // xterm's DOM renderer, whose rows hold the text (the WebGL renderer draws on a canvas and has no
  // rows). The rows are redrawn on the next animation frame: wait for the one that says hi.
  await page
    .locator('[data-testid="terminal"] .xterm-rows > div', { hasText: /^hi\s*$/ })
    .first()
    .waitFor({ timeout: 10_000 });

  await page.keyboard.type('stty size');
  await page.keyboard.press('Enter');
  const before = await seen(page, /^(\d+ \d+)$/m, 'a first stty size');
  await page.setViewportSize({ width: 800, height: 600 });
  await new Promise((r) => setTimeout(r, 300));
  // The newest `stty size` answer, asked again until the shell sees the new size.
  const after = await waitFor(
    async () => {
      await page.keyboard.type('stty size');
      await page.keyboard.press('Enter');
      await new Promise((r) => setTimeout(r, 300));
      const sizes = [...(await screen(page)).matchAll(/^(\d+ \d+)$/gm)].map((m) => m[1]);
      const last = sizes.at(-1);
      return last !== before ? last : undefined;
    },
    15_000,
    'stty size to change with the page',
  );
  assert.notEqual(after, before, 'stty size changed with the page');

  // The live terminal at 800 x 600, in both themes (at the desktop's and the phone's sizes it is
  // checked in console-first-use's rounds).
  const live = await axeViolationsInThemes(page);
  assert.deepEqual(live, [], `axe, the live terminal:\n${live.join('\n')}`);

  // Hostile output: OSC 52 (write the clipboard), an OSC 8 link, a title change and terminal
  // queries (DA, DSR, window-size report) must not touch the page, its clipboard or its title.
  const title = await page.title();
  // Into the terminal again, as a user would after looking elsewhere (the axe pass above).
  await page.locator('[data-testid="terminal"]').click();
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.keyboard.type(
    "printf '\\033]52;c;%s\\a\\033]8;;javascript:alert(1)\\033\\\\link\\033]8;;\\033\\\\\\033]0;pwned\\a\\033[c\\033[6n\\033[14t'" +
      ' "$(printf owned | base64)"; echo; echo "af""ter"',
  );
  await page.keyboard.press('Enter');
  await seen(page, /^(after)$/m, 'the shell alive after the sequences');
  assert.equal(await page.title(), title, 'the page title is untouched');
  const clipboard = await page.evaluate(async () => {
    try {
      return await (
        globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }
      ).navigator.clipboard.readText();
    } catch {
      return '(no access)';
    }
  });
  assert.notEqual(clipboard, 'owned');
  assert.deepEqual(dialogs, []);
  // The terminal's answers to the queries arrive as typed input: clear the line before going on.
  await new Promise((r) => setTimeout(r, 500));
  await page.keyboard.press('Control+C');

  // On a busy host the terminal's query answers can arrive after that Ctrl+C and garble the line:
  // clear it again and retype until the shell exits (three tries).
  const exited = page.locator('[data-testid="terminal-note"]', { hasText: 'exited with code 4' });
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.type('exit 4');
    await page.keyboard.press('Enter');
    try {
      await exited.waitFor({ timeout: 15_000 });
      break;
    } catch (err) {
      if (attempt === 3) throw err;
      await page.keyboard.press('Control+C');
    }
  }
  await page.locator('[data-testid="terminal-new"]').waitFor();
  const link = page.locator('[data-testid="recordings"] a').first();
  await link.waitFor();
  const href = await link.getAttribute('href');
  assert.match(href ?? '', /^\/api\/v1\/recordings\/[0-9a-f-]{36}\.cast$/);
  const cast = await page.evaluate(async (url) => (await fetch(url)).text(), href!);
  assert.match(cast.split('\n')[0] ?? '', /"version":2/);
  const output = cast
    .trimEnd()
    .split('\n')
    .slice(1)
    .map((l) => JSON.parse(l) as [number, string, string])
    .filter((e) => e[1] === 'o')
    .map((e) => e[2])
    .join('');
  assert.match(output, /[\r\n]hi\r\n/);

  // The player: play, change speed, seek to the end: the screen shows what the session showed.
  await page.locator('[data-testid="recording-play"]').first().click();
  await page.locator('[data-testid="player"]').waitFor();
  await page.selectOption('[data-testid="player-speed"]', '8');
  await page
    .locator('[data-testid="player-position"]')
    .fill((await page.locator('[data-testid="player-position"]').getAttribute('max')) ?? '0');
  assert.equal(await seen(page, /^(hi)$/m, 'hi in the player', 'player-screen'), 'hi');
  // The ended session, its recordings and the player: desktop and phone, dark and light.
  const played = await axeViolationsInViews(page, { shot: 'test-results/terminal-player' });
  assert.deepEqual(played, [], `axe, the player:\n${played.join('\n')}`);
  // On a phone the session recorded at desktop width is scaled to the player's width: nothing
  // scrolls sideways (the player's screen or the page) and the controls are in view; unticking
  // "Fit to width" shows it at its own size, scrolling inside the screen.
  const desktop = page.viewportSize()!;
  await page.setViewportSize(viewports.phone);
  let fitted: PlayerWidths | undefined;
  await waitFor(
    async () => {
      fitted = await playerWidths(page);
      return fitted.screenScroll <= fitted.screen && fitted.page <= viewports.phone.width;
    },
    5_000,
    'the player fitted to a phone',
  ).catch(() => assert.fail(`the player scrolls sideways on a phone: ${JSON.stringify(fitted)}`));
  assert.ok(fitted!.controlsRight <= viewports.phone.width, `controls in view: ${JSON.stringify(fitted)}`);
  await page.locator('[data-testid="player-fit"]').uncheck();
  await waitFor(
    async () => (await playerWidths(page)).screenScroll > viewports.phone.width,
    5_000,
    'the player at its own size, scrolling',
  );
  // ...and reachable by keyboard: focused, the arrow keys scroll it.
  const playerScreen = page.locator('[data-testid="player-screen"]');
  await playerScreen.focus();
  await page.keyboard.press('ArrowRight');
  await waitFor(
    () => playerScreen.evaluate((el) => (el as unknown as { scrollLeft: number }).scrollLeft > 0),
    5_000,
    'the unfitted player scrolled by the arrow keys',
  );
  await page.locator('[data-testid="player-fit"]').check();
  await page.setViewportSize(desktop);
  assert.deepEqual(pageErrors, []);
});

/** Widths of the player at the page's size: its screen's box and content, the page's, its controls' right edge. */
interface PlayerWidths {
  screen: number;
  screenScroll: number;
  page: number;
  controlsRight: number;
}
async function playerWidths(page: Page): Promise<PlayerWidths> {
  return page.evaluate(() => {
    interface Box {
      scrollWidth: number;
      clientWidth: number;
      getBoundingClientRect(): { right: number };
    }
    const { document } = globalThis as unknown as {
      document: {
        documentElement: Box;
        querySelector(s: string): Box | null;
        querySelectorAll(s: string): Box[];
      };
    };
    const screen = document.querySelector('[data-testid="player-screen"]')!;
    const controls = [
      ...document.querySelectorAll(
        '[data-testid="player"] button, [data-testid="player"] input, [data-testid="player"] select',
      ),
    ];
    return {
      screen: screen.clientWidth,
      screenScroll: screen.scrollWidth,
      page: document.documentElement.scrollWidth,
      controlsRight: Math.max(...controls.map((c) => c.getBoundingClientRect().right)),
    };
  });
}

test('on a phone, the extra keys row sends Ctrl+C, Tab and the arrows', { timeout: 150_000 }, async (t) => {
  const browser = await launchChromium();
  t.after(() => browser.close());
  const { page, pageErrors } = await openSignedIn(browser, ctl.url, ctl.firstAdmin!, {
    viewport: 'phone',
    path: `/hosts/${hostId}/terminal`,
  });
  await page.click('[data-testid="terminal-open"]');
  await page.locator('[data-testid="terminal-status"]', { hasText: 'Live' }).waitFor();
  await page.locator('[data-testid="terminal"]').click();
  const keys = page.locator('[data-testid="terminal-keys"]');
  await keys.waitFor({ state: 'visible' });
  const key = (name: string) => keys.getByRole('button', { name, exact: true });
  const enter = async (text: string) => {
    await page.keyboard.type(text);
    await page.keyboard.press('Enter');
  };
  await enter('echo "re""ady"');
  await seen(page, /^(ready)$/m, 'the shell answering', 'terminal', SHELL_READY_MS);

  // Ctrl, then c typed: ^C stops the running command, so the next one answers at once.
  await enter('sleep 120');
  await key('Ctrl').click();
  assert.equal(await key('Ctrl').getAttribute('aria-pressed'), 'true');
  await page.keyboard.type('c');
  assert.equal(await key('Ctrl').getAttribute('aria-pressed'), 'false', 'Ctrl applies to one key');
  await enter('echo "st""opped"');
  await seen(page, /^(stopped)$/m, 'the command after Ctrl then c');

  // Tab completes `ech` to `echo`; the up arrow recalls that command, Enter runs it again.
  await page.keyboard.type('ech');
  await key('Tab').click();
  await enter(' "t""ab"');
  await seen(page, /^(tab)$/m, 'the command completed by Tab');
  await key('Up').click();
  await page.keyboard.press('Enter');
  await waitFor(async () => [...(await screen(page)).matchAll(/^tab$/gm)].length === 2, 15_000, 'tab twice');

  // The buttons never took the focus from the terminal (a phone's keyboard stays open).
  assert.equal(
    await page.evaluate(() =>
      (
        globalThis as unknown as {
          document: { activeElement: { getAttribute(n: string): string | null } | null };
        }
      ).document.activeElement?.getAttribute('aria-label'),
    ),
    'Terminal input',
  );
  const v = await axeViolationsInThemes(page);
  assert.deepEqual(v, [], `axe, the live terminal with its keys on a phone:\n${v.join('\n')}`);
  assert.deepEqual(pageErrors, []);
});

test(
  'a full-screen program switches to the alternate screen and back; ^C stops yes',
  { timeout: 150_000 },
  async (t) => {
    const { page, pageErrors } = await openTerminalPage(t);
    await page.keyboard.type('echo "re""ady"');
    await page.keyboard.press('Enter');
    await seen(page, /^(ready)$/m, 'the shell ready', 'terminal', SHELL_READY_MS);
    assert.equal(await bufferType(page), 'normal');
    // vi (vim.tiny or vim: TERM is xterm-256color, whose terminfo switches screens), no user vimrc.
    await page.keyboard.type('vi -u NONE -n');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await bufferType(page)) === 'alternate', 15_000, 'the alternate screen');
    await page.keyboard.type(':q!');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await bufferType(page)) === 'normal', 15_000, 'back to the normal screen');

    await page.keyboard.type('yes');
    await page.keyboard.press('Enter');
    await seen(page, /^(y)$/m, 'yes flooding');
    await page.keyboard.press('Control+C');
    // The flood stops: the shell answers again (the prompt may need a moment under the flood's tail).
    await waitFor(
      async () => {
        await page.keyboard.type('echo "do""ne=$((6*7))"');
        await page.keyboard.press('Enter');
        await new Promise((r) => setTimeout(r, 500));
        return /^done=42$/m.test(await screen(page));
      },
      30_000,
      'the shell after ^C',
    );
    assert.equal(await page.locator('[data-testid="terminal-status"]').textContent(), 'Live');

    // By keyboard out of the terminal (no keyboard trap): Tab is the shell's, Esc then Tab moves
    // the focus on to the search box, Shift+Tab from there back into the terminal.
    const inTerminal = () =>
      page.evaluate(
        `document.activeElement !== null && document.activeElement.closest('[data-testid="terminal"]') !== null`,
      );
    await page.keyboard.press('Tab');
    assert.equal(await inTerminal(), true, 'Tab stays in the terminal');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    assert.equal(
      await page.evaluate('document.activeElement && document.activeElement.id'),
      'terminal-search',
    );
    await page.keyboard.press('Shift+Tab');
    assert.equal(await inTerminal(), true, 'Shift+Tab returns to the terminal');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await inTerminal(), false, 'Esc then Shift+Tab leaves it backwards');
    assert.equal(await page.locator('[data-testid="terminal-status"]').textContent(), 'Live');
    assert.deepEqual(pageErrors, []);
  },
);

test('a user without terminal.open is told why in the console', { timeout: 60_000 }, async (t) => {
  const api = new ApiClient(ctl.url);
  await api.login(ctl.firstAdmin!.username, ctl.firstAdmin!.password);
  const created = await api.post('/users', {
    username: 'console-operator',
    password: TEST_PASSWORD,
    role: 'operator',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { page, pageErrors } = await terminalTab(t, {
    username: 'console-operator',
    password: TEST_PASSWORD,
  });
  await page.locator('[data-testid="terminal-status"]', { hasText: 'Ended' }).waitFor();
  const note = await page.locator('[data-testid="terminal-note"]').textContent();
  assert.match(
    note ?? '',
    /You may not open a terminal on this host: that needs the terminal\.open permission/,
  );
  assert.equal(await page.locator('[data-testid="terminal-note"]').getAttribute('role'), 'alert');
  const refused = await axeViolationsInViews(page, { shot: 'test-results/terminal-refused' });
  assert.deepEqual(refused, [], `axe, the refusal:\n${refused.join('\n')}`);
  assert.deepEqual(pageErrors, []);
});

// Last: it kills the file's agent.
test(
  'kill -9 of the agent mid-session: the page says the session ended; asciinema reads the recording',
  { timeout: 150_000 },
  async (t) => {
    const { page, pageErrors } = await openTerminalPage(t);
    await page.keyboard.type('echo "be""fore-kill"');
    await page.keyboard.press('Enter');
    await seen(page, /^(before-kill)$/m, 'before-kill on the screen', 'terminal', SHELL_READY_MS);
    await kill(agent);
    await page.locator('[data-testid="terminal-status"]', { hasText: 'Ended' }).waitFor({ timeout: 30_000 });
    const note = (await page.locator('[data-testid="terminal-note"]').textContent()) ?? '';
    assert.match(note, /^The session ended: |^The connection to the controller was lost\./);
    // The recording is finalized (ended, no exit code: the shell did not exit) and listed.
    const api = new ApiClient(ctl.url);
    await api.login(ctl.firstAdmin!.username, ctl.firstAdmin!.password);
    const rec = await waitFor(
      async () =>
        (
          await api.get<{ recordings: { id: string; endedAt: string | null; exitCode: number | null }[] }>(
            `/recordings?hostId=${hostId}&limit=50`,
          )
        ).body.recordings.find((r) => r.endedAt !== null && r.exitCode === null),
      30_000,
      'the recording finalized',
    );
    const res = await api.fetchRaw(`/recordings/${rec.id}.cast`);
    assert.equal(res.status, 200);
    const cast = await res.text();
    const lines = cast.trimEnd().split('\n');
    assert.match(lines[0]!, /"version":2/);
    for (const line of lines) JSON.parse(line);
    assert.match(cast, /before-kill/);
    // Debian's asciinema reads it (.ci/run installs it; under CI a missing one fails).
    if (existsSync('/usr/bin/asciinema') || process.env.CI) {
      const file = join(ctl.dataDir, 'killed.cast');
      writeFileSync(file, cast);
      // asciinema cat insists on a terminal: give it one (script); the file name is our own.
      const played = execFileSync('script', ['-qec', `asciinema cat '${file}'`, '/dev/null'], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      assert.match(played, /before-kill/);
    }
    assert.deepEqual(pageErrors, []);
  },
);
