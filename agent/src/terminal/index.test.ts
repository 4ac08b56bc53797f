// Proves the terminal channel handler on both PTY backends (node-pty, and util-linux `script` as
// the fallback): a login shell with TERM=xterm-256color answers typed commands, a resize reaches
// `stty size`, several sessions run at once, a huge paste into a program that does not read is
// held back (bounded agent memory), a `yes` flood into a port that does not read stays
// bounded and ^C stops it, ^Z stops a foreground job (job control works), the whole session
// ends with the channel (no orphaned shell), and an idle session is closed.
//
// The shell is the login shell of the tests' terminal user (KEEL_TEST_TERMINAL_USER, `keel-test`,
// which `npm test` creates when run as root, started with `runuser -l` as an agent running as root
// does), else of the user running the tests, whose profile runs first (root's here runs `pyenv
// init`: 3.7 s alone, 8-17 s for six at once at load 19, as each takes pyenv's rehash lock in
// turn). Each session first waits for its shell to answer, bounded by SHELL_READY_MS; the
// capability's own timings are asserted after that.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { afterEach, describe, test } from 'node:test';
import { encodeTerminalInput, encodeTerminalResize, type ChannelEnd } from '@keel/shared';
import type { ChannelPort, ChannelSession } from '../channels/hub.ts';
import { TERMINAL_INPUT_HIGH_WATER, terminalChannelHandler, type TerminalOptions } from './index.ts';
import { processesInSessions } from './pty.ts';

interface FakeChannel {
  session: ChannelSession;
  text: () => string;
  bytes: () => number;
  closed: Promise<ChannelEnd>;
  /** While set, writes do not resolve (a client that does not read). */
  stall: (on: boolean) => void;
  type: (s: string) => Promise<void>;
  until: (re: RegExp, ms?: number) => Promise<string>;
  end: () => void;
}

/** Channels a test opened: ended after it, so a failed test leaves no shell (nor a hung run). */
const opened: FakeChannel[] = [];
/** The login user for every session (unset: the user running the tests). */
const user = process.env.KEEL_TEST_TERMINAL_USER ? { user: process.env.KEEL_TEST_TERMINAL_USER } : {};
afterEach(() => {
  for (const ch of opened.splice(0)) ch.end();
});

function open(opts: TerminalOptions, size = { cols: 80, rows: 24 }): FakeChannel {
  const chunks: Buffer[] = [];
  let total = 0;
  let stalled = false;
  let release: () => void = () => {};
  let markClosed: (end: ChannelEnd) => void = () => {};
  const closed = new Promise<ChannelEnd>((r) => (markClosed = r));
  const abort = new AbortController();
  let isClosed = false;
  let session: ChannelSession = {};
  const port: ChannelPort = {
    id: 't1',
    async write(bytes) {
      chunks.push(Buffer.from(bytes));
      total += bytes.length;
      if (stalled) await new Promise<void>((r) => (release = r));
    },
    close(end) {
      if (isClosed) return;
      isClosed = true;
      abort.abort();
      markClosed(end);
      session.onClose?.(end);
    },
    get closed() {
      return isClosed;
    },
    signal: abort.signal,
  };
  session = terminalChannelHandler(opts).open(port, size);
  const text = () => Buffer.concat(chunks).toString('utf8');
  const channel: FakeChannel = {
    session,
    text,
    bytes: () => total,
    closed,
    stall(on) {
      stalled = on;
      if (!on) release();
    },
    async type(s) {
      await session.onData?.(Buffer.from(encodeTerminalInput(s)));
    },
    async until(re, ms = 5_000) {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        const m = re.exec(text());
        if (m) return m[1] ?? m[0];
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no ${re} in output: ${JSON.stringify(text().slice(-500))}`);
    },
    end() {
      port.close({ reason: 'client closed the channel' });
    },
  };
  opened.push(channel);
  return channel;
}

/** How long a login shell may take through its profile before it answers (see the top). */
const SHELL_READY_MS = 60_000;

/** Opens a channel and waits until its shell answers a typed command. */
async function openReady(opts: TerminalOptions, size?: { cols: number; rows: number }): Promise<FakeChannel> {
  const ch = open(opts, size);
  await ch.type('echo "shell-""up"\r');
  await ch.until(/[\r\n](shell-up)\r\n/, SHELL_READY_MS);
  return ch;
}

/**
 * Waits until a `sleep` child of the shell `shell` runs, not stopped, as its terminal's foreground
 * job (its process group is the terminal's foreground group): what ^Z then stops and ^C ends. A
 * fixed pause before the key was a guess: a key that comes before the shell has handed the
 * terminal to the job goes to the shell.
 */
async function sleepInForeground(shell: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = await readFile(`/proc/${name}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        // After the command: state ppid pgrp session tty_nr tpgid …
        const [state, ppid, pgrp, , , tpgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (comm === 'sleep' && Number(ppid) === shell && state !== 'T' && pgrp === tpgid) return;
      } catch {
        // gone meanwhile
      }
    }
    if (Date.now() > deadline) throw new Error(`no sleep in the foreground of shell ${shell}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The session id of a live process (Linux /proc): what the agent ends when the channel goes. */
async function sessionOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // After the command: state ppid pgrp session …
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until no process of session `sid` is left and none of `pids` lives. */
async function gone(sid: number, pids: number[], ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if ((await processesInSessions([sid])).length === 0 && !pids.some(alive)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

for (const backend of ['node-pty', 'script'] as const) {
  describe(`terminal on ${backend}`, () => {
    const opts: TerminalOptions = { backend, killGraceMs: 300, idleTimeoutMs: 0, ...user };

    test(
      'a login shell answers, TERM is xterm-256color, a resize reaches stty',
      { timeout: 80_000 },
      async () => {
        const ch = await openReady(opts, { cols: 100, rows: 30 });
        await ch.type('echo "t=$TERM"\r');
        assert.equal(await ch.until(/t=([\w-]+)\r\n/), 'xterm-256color');
        await ch.type('stty size\r');
        assert.equal(await ch.until(/(30 100)/), '30 100');
        await ch.session.onData?.(Buffer.from(encodeTerminalResize(132, 43)));
        // A resize reaches the PTY a moment later (as SIGWINCH does in any terminal; the script
        // backend runs `stty -F`): asked again until it shows, at most 20 times.
        let size = '';
        for (let i = 0; i < 20 && size !== '43 132'; i++) {
          await ch.type('stty size\r');
          size = await ch.until(/(43 132)/, 1_000).catch(() => '');
        }
        assert.equal(size, '43 132');
        await ch.type('exit 3\r');
        const end = await ch.closed;
        assert.equal(end.exitCode, 3);
      },
    );

    test('closing the channel ends the shell and its jobs (no orphans)', { timeout: 80_000 }, async () => {
      const ch = await openReady(opts);
      await ch.type('sleep 300 & echo "pid=$$ job=$!"\r');
      const pid = Number(await ch.until(/pid=(\d+) job=\d/));
      const job = Number(await ch.until(/pid=\d+ job=(\d+)/));
      // The shell's session id, not its pid: the session leader is the process the backend
      // started (`runuser -l`, `script`), above the shell. The session holds the shell and its
      // job, so an empty session below means both went.
      const sid = await sessionOf(pid);
      assert.ok(sid > 1);
      const members = await processesInSessions([sid]);
      assert.ok(members.includes(pid) && members.includes(job), `session ${sid}: ${members.join(' ')}`);
      // A second session at the same time works on its own.
      const other = await openReady(opts);
      await other.type('echo "other=$$"\r');
      const otherPid = Number(await other.until(/other=(\d+)/));
      const otherSid = await sessionOf(otherPid);
      assert.notEqual(otherSid, sid);
      ch.end();
      assert.ok(await gone(sid, [pid, job]), 'the shell and its background job are gone');
      assert.ok(alive(otherPid), 'the other session is still there');
      assert.ok((await processesInSessions([otherSid])).includes(otherPid));
      other.end();
      assert.ok(await gone(otherSid, [otherPid]));
    });

    test(
      'a huge paste into a program that does not read is held back, not queued',
      // util-linux `script` (2.35+) reads its stdin into a buffer of its own whatever the PTY takes,
      // so on that backend a paste waits in `script`, not paced by the agent (docs/terminal.md).
      {
        timeout: 90_000,
        skip: backend === 'script' ? 'script buffers input itself' : false,
      },
      async () => {
        const ch = await openReady(opts);
        await ch.type('stty raw -echo; echo "ready=$((6*7))"; sleep 60\r');
        await ch.until(/ready=(42)/);
        // 4 MiB in 64 KiB chunks, taken one after another as the channel hands them over. The shell's
        // program never reads, so after the PTY's own buffer and the agent's high-water mark the next
        // chunk must wait (the channel then keeps the rest of the paste with the client).
        const chunk = Buffer.from(encodeTerminalInput('x'.repeat(64 * 1024)));
        let taken = 0;
        let held: Promise<void> | null = null;
        for (let i = 0; i < 64; i++) {
          const p = Promise.resolve(ch.session.onData?.(chunk));
          const done = await Promise.race([
            p.then(() => true),
            new Promise((r) => setTimeout(r, 1_000, false)),
          ]);
          if (!done) {
            held = p;
            break;
          }
          taken++;
        }
        assert.ok(held, 'the paste was never held back');
        // What the agent took: at most its high-water mark, one chunk and what the PTY buffers itself.
        assert.ok(
          taken * 64 * 1024 <= TERMINAL_INPUT_HIGH_WATER + 64 * 1024 + 256 * 1024,
          `took ${taken} chunks`,
        );
        // The held chunk settles when the channel ends (the shell is gone), so nothing hangs.
        ch.end();
        await held;
      },
    );

    test('a yes flood into a stalled client stays bounded; ^C stops it', { timeout: 80_000 }, async () => {
      const ch = await openReady(opts);
      await ch.type('echo ready\r');
      await ch.until(/ready\r\n/);
      ch.stall(true);
      await ch.type('yes\r');
      await new Promise((r) => setTimeout(r, 500));
      const held = ch.bytes();
      await new Promise((r) => setTimeout(r, 500));
      // The PTY is not read while the client holds its writes: at most a chunk or two more.
      assert.ok(ch.bytes() - held < 256 * 1024, `read on while stalled: ${ch.bytes() - held} bytes`);
      await ch.type('\x03');
      ch.stall(false);
      await ch.type('echo "done=$((6*7))"\r');
      await ch.until(/done=(42)/, 10_000);
      ch.end();
    });

    test(
      '^Z stops the foreground job; the shell resumes it with fg and ^C ends it',
      { timeout: 80_000 },
      async () => {
        const ch = await openReady(opts);
        await ch.type('echo "re""ady"\r');
        await ch.until(/ready\r\n/);
        await ch.type('echo "pid=$$"\r');
        const shell = Number(await ch.until(/pid=(\d+)/));
        await ch.type('sleep 300\r');
        await sleepInForeground(shell);
        await ch.type('\x1a');
        // The shell's job control took the terminal back: the job is stopped, and the shell answers.
        await ch.type('jobs -l; echo "after=$((6*7))"\r');
        await ch.until(/after=(42)/, 10_000);
        assert.match(ch.text(), /Stopped.*sleep 300/);
        await ch.type('fg\r');
        await sleepInForeground(shell);
        await ch.type('\x03');
        await ch.type('jobs; echo "left=$((6*7))"\r');
        await ch.until(/left=(42)/, 10_000);
        assert.doesNotMatch(ch.text().slice(ch.text().lastIndexOf('fg')), /Stopped.*sleep 300/);
        ch.end();
      },
    );
  });
}

test('an idle session is closed', { timeout: 10_000 }, async () => {
  // Closed while its login profile still runs: the default grace between SIGHUP and SIGKILL lets
  // the profile's exit traps run (a pyenv rehash killed before its trap leaves a lock behind that
  // stalls every later login shell on the machine for 60 s).
  const ch = open({ idleTimeoutMs: 300, ...user });
  const end = await ch.closed;
  assert.equal(end.code, 'terminal.idle');
  assert.match(ch.text(), /session closed/);
});
