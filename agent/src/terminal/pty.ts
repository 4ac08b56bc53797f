// How the terminal capability gets a PTY: node-pty where its native module loads (loaded on first
// use, so an agent that never opens a terminal never pays for it), else util-linux `script`, which
// every Debian and RHEL host has. Both give the same TerminalProcess; both run the shell in a
// session of its own, and `killSessions` ends every process of those sessions (job-controlled
// pipelines included), so nothing outlives the channel.
import { spawn } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type * as NodePtyModule from 'node-pty';

/** A shell on a PTY, whichever way it was made. */
export interface TerminalProcess {
  /** `node-pty` or `script`. */
  readonly backend: 'node-pty' | 'script';
  /** Pid of the process the agent started. */
  readonly pid: number;
  onData(listener: (chunk: Buffer) => void): void;
  onExit(listener: (exitCode: number) => void): void;
  write(bytes: Buffer): void;
  /** Input written and not yet taken by the PTY, in bytes (what a paste has queued). */
  pendingInput(): number;
  /**
   * Resolves once less than `limit` bytes of input wait for the PTY: the terminal awaits it before
   * it takes the next chunk, so a huge paste into a program that does not read is held by the
   * channel's credit, not queued in the agent's memory.
   */
  inputRoom(limit: number): Promise<void>;
  resize(cols: number, rows: number): void;
  /** Stops reading output (the PTY's buffer fills and the program blocks: flow control). */
  pause(): void;
  resume(): void;
  /** The session ids whose processes belong to this terminal. */
  sessionIds(): Promise<number[]>;
}

/** What to run: argv (never a shell string built from input), environment, size. */
export interface TerminalSpawn {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  cols: number;
  rows: number;
}

type NodePty = typeof NodePtyModule;
let nodePty: Promise<NodePty | null> | undefined;

/** node-pty, or null when its native module cannot load here (then `script` serves). */
export function loadNodePty(): Promise<NodePty | null> {
  nodePty ??= import('node-pty').then(
    (m) => ((m as { default?: NodePty }).default ?? m) as NodePty,
    () => null,
  );
  return nodePty;
}

/** Starts a terminal with the preferred backend (`auto`: node-pty, else `script`). */
export async function spawnTerminal(
  spec: TerminalSpawn,
  backend: 'auto' | 'node-pty' | 'script' = 'auto',
): Promise<TerminalProcess> {
  if (backend !== 'script') {
    const pty = await loadNodePty();
    if (pty) return spawnNodePty(pty, spec);
    if (backend === 'node-pty') throw new Error('node-pty cannot be loaded on this host');
  }
  return spawnScript(spec);
}

/** How often a full PTY is looked at again while input waits (node-pty has no drain event). */
const INPUT_POLL_MS = 10;

/**
 * Bytes queued in node-pty's own write queue (node-pty 1.x keeps unwritten input in
 * `_writeStream._writeQueue` and retries on EAGAIN); 0 when that shape is not there.
 */
function nodePtyQueued(proc: unknown): number {
  const queue = (proc as { _writeStream?: { _writeQueue?: { buffer: Uint8Array; offset: number }[] } })
    ._writeStream?._writeQueue;
  if (!Array.isArray(queue)) return 0;
  let n = 0;
  for (const task of queue) n += (task.buffer?.byteLength ?? 0) - (task.offset ?? 0);
  return n;
}

function spawnNodePty(pty: NodePty, spec: TerminalSpawn): TerminalProcess {
  const proc = pty.spawn(spec.file, spec.args, {
    name: spec.env.TERM ?? 'xterm-256color',
    cols: spec.cols,
    rows: spec.rows,
    cwd: spec.cwd,
    env: spec.env,
    encoding: null,
  });
  let exited = false;
  proc.onExit(() => (exited = true));
  return {
    backend: 'node-pty',
    pid: proc.pid,
    onData: (listener) => {
      proc.onData((d: string | Buffer) => listener(typeof d === 'string' ? Buffer.from(d) : d));
    },
    onExit: (listener) => {
      proc.onExit(({ exitCode, signal }) => listener(signal ? 128 + signal : exitCode));
    },
    write: (bytes) => proc.write(bytes as unknown as string),
    pendingInput: () => nodePtyQueued(proc),
    inputRoom: async (limit) => {
      while (!exited && nodePtyQueued(proc) >= limit) await new Promise((r) => setTimeout(r, INPUT_POLL_MS));
    },
    resize: (cols, rows) => {
      try {
        proc.resize(cols, rows);
      } catch {
        // the shell is gone; the exit handler ends the channel
      }
    },
    pause: () => proc.pause(),
    resume: () => proc.resume(),
    // node-pty makes the shell a session leader: its pid is the session id.
    sessionIds: async () => [proc.pid],
  };
}

/** A terminal's rows or columns as `stty` takes them: a whole number, 1-65535 (a PTY's range). */
function ptyDimension(n: number): string {
  return String(Math.min(65_535, Math.max(1, Math.trunc(Number(n)) || 1)));
}

/** Quotes one word for `sh -c` (the only shell string: fixed argv from the agent's own config). */
function shellWord(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function spawnScript(spec: TerminalSpawn): TerminalProcess {
  // script runs `$SHELL -c <command>` in a new session on a fresh PTY; -e passes the exit code on,
  // -f flushes every write, -q drops the banner. /dev/null: no typescript file. The PTY gets its
  // size from `stty` before the shell starts (its stdin is the PTY): set from outside once the shell
  // is found, the shell could answer first, and a busy host showed `stty size` as "0 0".
  const command = [
    'stty',
    'rows',
    ptyDimension(spec.rows),
    'cols',
    ptyDimension(spec.cols),
    '2>/dev/null;',
    'exec',
    ...[spec.file, ...spec.args].map(shellWord),
  ].join(' ');
  const child = spawn('script', ['-qefc', command, '/dev/null'], {
    cwd: spec.cwd,
    env: { ...spec.env, SHELL: '/bin/sh' },
    stdio: ['pipe', 'pipe', 'ignore'],
    detached: true,
  });
  const pid = child.pid ?? -1;
  let size = { cols: spec.cols, rows: spec.rows };
  let ptsPath: string | null = null;
  let shellPid: number | null = null;
  let exited = false;
  child.once('exit', () => (exited = true));
  child.stdin.on('error', () => {});
  // The PTY's size is set on its slave side with stty (script has no resize of its own); the slave
  // is the shell's stdin, found once the shell exists.
  const findShell = async (): Promise<void> => {
    // Up to 10 s: on a loaded host the shell can take more than a second to appear, and a resize
    // before it is found waits for it (it was 100 tries of 10 ms).
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !exited && shellPid === null) {
      const kids = await childrenOf(pid);
      if (kids[0] !== undefined) {
        try {
          const link = await readlink(`/proc/${kids[0]}/fd/0`);
          if (link.startsWith('/dev/pts/')) {
            shellPid = kids[0];
            ptsPath = link;
            break;
          }
        } catch {
          // not ready yet
        }
      }
      if (shellPid === null) await new Promise((r) => setTimeout(r, 10));
    }
  };
  const applySize = async () => {
    await ready;
    if (!ptsPath || exited) return;
    const stty = spawn('stty', ['-F', ptsPath, 'rows', String(size.rows), 'cols', String(size.cols)], {
      stdio: 'ignore',
    });
    stty.on('error', () => {});
  };
  const ready = findShell();
  return {
    backend: 'script',
    pid,
    onData: (listener) => child.stdout.on('data', listener),
    onExit: (listener) => child.once('exit', (code, signal) => listener(code ?? (signal ? 128 : 1))),
    write: (bytes) => {
      if (!child.stdin.destroyed) child.stdin.write(bytes);
    },
    pendingInput: () => child.stdin.writableLength,
    inputRoom: async (limit) => {
      while (!exited && !child.stdin.destroyed && child.stdin.writableLength >= limit)
        await new Promise((r) => {
          child.stdin.once('drain', r);
          child.once('exit', r);
        });
    },
    resize: (cols, rows) => {
      size = { cols, rows };
      void applySize();
    },
    pause: () => child.stdout.pause(),
    resume: () => child.stdout.resume(),
    sessionIds: async () => {
      await ready;
      return [pid, ...(shellPid === null ? await childrenOf(pid) : [shellPid])];
    },
  };
}

async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Pids of every process whose session id is one of `sids` (Linux /proc). */
export async function processesInSessions(sids: readonly number[]): Promise<number[]> {
  const wanted = new Set(sids.filter((s) => s > 1));
  if (wanted.size === 0) return [];
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // Fields after the command (which may hold spaces and parens): state ppid pgrp session …
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (wanted.has(Number(fields[3]))) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Ends every process of the given sessions: SIGHUP (what a hung-up terminal sends) and SIGCONT
 * (so a stopped job sees it), then SIGKILL for what is left after `graceMs`.
 */
export async function killSessions(sids: readonly number[], graceMs = 1_500): Promise<void> {
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  const first = await processesInSessions(sids);
  if (first.length === 0) return;
  signal(first, 'SIGHUP');
  signal(first, 'SIGCONT');
  await new Promise((r) => setTimeout(r, graceMs).unref());
  signal(await processesInSessions(sids), 'SIGKILL');
}
