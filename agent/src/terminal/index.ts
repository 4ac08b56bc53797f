// The terminal capability: the `terminal` channel, a login shell on a PTY of this host. Output goes
// to the channel as the PTY gives it, paced by the channel's credit (the PTY is not read while the
// channel's queue is full, so a `yes` flood blocks `yes`, not the agent's memory, and ^C still
// reaches the PTY at once). Input comes as records (shared/src/messages/terminal.ts): typed bytes
// and resizes. The shell's sessions end with the channel, whichever side ends it, and after
// `idleTimeoutMs` without input.
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import type { Logger } from 'pino';
import { TerminalRecordReader, terminalChannel, type TerminalChannelParams } from '@keel/shared';
import type { AgentCapability } from '../capabilities.ts';
import type { ChannelHandler, ChannelPort, ChannelSession } from '../channels/hub.ts';
import { killSessions, spawnTerminal, type TerminalProcess, type TerminalSpawn } from './pty.ts';

export interface TerminalOptions {
  /**
   * Whose login shell to start when the agent runs as root (`KEEL_TERMINAL_USER`, default `root`).
   * An agent that is not root always starts its own user's shell.
   */
  user?: string;
  /** Ends a session after this long without input (`KEEL_TERMINAL_IDLE_MINUTES`, default 30 min; 0: never). */
  idleTimeoutMs?: number;
  /** `auto` (node-pty, else `script`), or force one (tests). */
  backend?: 'auto' | 'node-pty' | 'script';
  /** SIGHUP -> SIGKILL grace when a session ends. */
  killGraceMs?: number;
  log?: Logger;
}

/**
 * Input (a paste) the agent lets wait for the PTY before it takes the next chunk from the channel:
 * beyond this, the channel's credit holds the rest back to the browser.
 */
export const TERMINAL_INPUT_HIGH_WATER = 64 * 1024;

interface PasswdEntry {
  name: string;
  uid: number;
  home: string;
  shell: string;
}

/** Looks a user up in /etc/passwd (names only of the usual form; never passed to a shell). */
export async function lookupUser(name: string): Promise<PasswdEntry | null> {
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(name)) return null;
  const text = await readFile('/etc/passwd', 'utf8');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7) {
      return { name, uid: Number(f[2]), home: f[5] ?? '/', shell: f[6] || '/bin/sh' };
    }
  }
  return null;
}

/** What to run for a session: the login shell of the configured (or the agent's own) user. */
export async function loginSpawn(opts: TerminalOptions, size: TerminalChannelParams): Promise<TerminalSpawn> {
  const me = userInfo();
  const base = {
    TERM: 'xterm-256color',
    COLORTERM: 'truecolor',
    LANG: process.env.LANG ?? 'C.UTF-8',
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  };
  const wanted = opts.user ?? 'root';
  if (me.uid === 0 && wanted !== me.username) {
    const entry = await lookupUser(wanted);
    if (!entry) throw new Error(`terminal user ${wanted.slice(0, 64)} does not exist`);
    // runuser -l: a real login (initgroups, PAM session, the user's shell and home), started by root.
    return {
      file: 'runuser',
      args: ['-l', entry.name],
      env: base,
      cwd: entry.home,
      ...size,
    };
  }
  const entry = await lookupUser(me.username);
  const shell = entry?.shell ?? process.env.SHELL ?? '/bin/sh';
  const home = entry?.home ?? me.homedir;
  return {
    file: shell,
    args: ['-l'],
    env: { ...base, HOME: home, USER: me.username, LOGNAME: me.username, SHELL: shell },
    cwd: home,
    ...size,
  };
}

/** The terminal channel handler. */
export function terminalChannelHandler(opts: TerminalOptions = {}): ChannelHandler<TerminalChannelParams> {
  const idleMs = opts.idleTimeoutMs ?? 30 * 60_000;
  return {
    definition: terminalChannel,
    open(port, params): ChannelSession {
      const session = new TerminalSession(port, opts, idleMs);
      session.starting(session.start(params));
      return {
        onData: (chunk) => session.input(chunk),
        onClose: () => session.end(),
      };
    },
  };
}

class TerminalSession {
  #proc: TerminalProcess | null = null;
  #reader = new TerminalRecordReader();
  #output: Promise<void> = Promise.resolve();
  #queued = 0;
  #idle: NodeJS.Timeout | null = null;
  #ended = false;
  #earlyInput: Buffer[] = [];
  #started: Promise<void> = Promise.resolve();

  constructor(
    private port: ChannelPort,
    private opts: TerminalOptions,
    private idleMs: number,
  ) {}

  /** Input before the shell exists waits for it (bounded by the window, not queued without end). */
  starting(started: Promise<void>): void {
    this.#started = started;
  }

  async start(params: TerminalChannelParams): Promise<void> {
    try {
      const spec = await loginSpawn(this.opts, params);
      if (this.#ended) return;
      const proc = await spawnTerminal(spec, this.opts.backend);
      this.#proc = proc;
      if (this.#ended) return void this.#kill(proc);
      this.opts.log?.info(
        { channel: this.port.id, pid: proc.pid, backend: proc.backend },
        'terminal started',
      );
      proc.onData((chunk) => this.#out(chunk));
      proc.onExit((exitCode) => {
        // node-pty may report the exit before the last output: let it arrive, then close after it.
        setTimeout(() => {
          void this.#output.then(() => this.port.close({ reason: 'the shell exited', exitCode }));
          void this.#kill(proc);
        }, 50);
      });
      for (const chunk of this.#earlyInput.splice(0)) this.input(chunk);
      this.#touch();
    } catch (err) {
      this.opts.log?.warn({ err, channel: this.port.id }, 'terminal failed to start');
      this.port.close({
        reason: `the terminal failed to start: ${err instanceof Error ? err.message : String(err)}`.slice(
          0,
          400,
        ),
        code: 'request.failed',
      });
    }
  }

  #out(chunk: Buffer): void {
    const proc = this.#proc;
    if (!proc || this.#ended) return;
    // A write waits while the channel's queue is full; once a second chunk waits behind it, stop
    // reading the PTY until both are out (the program then blocks on its full PTY buffer).
    if (++this.#queued === 2) proc.pause();
    this.#output = this.#output
      .then(() => this.port.write(chunk))
      .then(() => {
        if (--this.#queued === 0 && !this.#ended) proc.resume();
      });
  }

  /**
   * Takes one chunk of input records. The returned promise settles once the PTY has room for more
   * (the channel returns the chunk's credit only then), so a paste is paced by the program reading
   * it: at most TERMINAL_INPUT_HIGH_WATER bytes wait in the agent, the rest stays with the client.
   */
  input(chunk: Buffer): void | Promise<void> {
    if (this.#ended) return;
    if (!this.#proc) {
      this.#earlyInput.push(chunk);
      return this.#started;
    }
    this.#touch();
    const proc = this.#proc;
    for (const record of this.#reader.push(chunk)) {
      if (record.type === 'input') proc.write(record.data);
      else if (record.type === 'resize') proc.resize(record.cols, record.rows);
    }
    if (proc.pendingInput() >= TERMINAL_INPUT_HIGH_WATER) return proc.inputRoom(TERMINAL_INPUT_HIGH_WATER);
  }

  #touch(): void {
    if (this.idleMs <= 0) return;
    if (this.#idle) this.#idle.refresh();
    else {
      this.#idle = setTimeout(() => {
        void this.port
          .write(
            Buffer.from(`\r\n[keel: no input for ${Math.round(this.idleMs / 1000)} s, session closed]\r\n`),
          )
          .then(() => this.port.close({ reason: 'idle timeout', code: 'terminal.idle' }));
      }, this.idleMs);
      this.#idle.unref();
    }
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#idle) clearTimeout(this.#idle);
    if (this.#proc) void this.#kill(this.#proc);
  }

  async #kill(proc: TerminalProcess): Promise<void> {
    try {
      await killSessions(await proc.sessionIds(), this.opts.killGraceMs);
    } catch (err) {
      this.opts.log?.warn({ err, pid: proc.pid }, 'ending a terminal session failed');
    }
  }
}

/** The terminal capability: the `terminal` channel kind. */
export function terminalCapability(opts: TerminalOptions = {}): AgentCapability {
  return { name: 'terminal', channels: { terminal: terminalChannelHandler(opts) as ChannelHandler } };
}
