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

function spawnNodePty(pty: NodePty, spec: TerminalSpawn): TerminalProcess {
  const proc = pty.spawn(spec.file, spec.args, {
    name: spec.env.TERM ?? 'xterm-256color',
    cols: spec.cols,
    rows: spec.rows,
    cwd: spec.cwd,
    env: spec.env,
    encoding: null,
  });
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

/** Quotes one word for `sh -c` (the only shell string: fixed argv from the agent's own config). */
function shellWord(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function spawnScript(spec: TerminalSpawn): TerminalProcess {
  // script runs `$SHELL -c <command>` in a new session on a fresh PTY; -e passes the exit code on,
  // -f flushes every write, -q drops the banner. /dev/null: no typescript file.
  const command = ['exec', ...[spec.file, ...spec.args].map(shellWord)].join(' ');
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
    for (let i = 0; i < 100 && !exited && shellPid === null; i++) {
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
      await new Promise((r) => setTimeout(r, 10));
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
  void applySize();
  return {
    backend: 'script',
    pid,
    onData: (listener) => child.stdout.on('data', listener),
    onExit: (listener) => child.once('exit', (code, signal) => listener(code ?? (signal ? 128 : 1))),
    write: (bytes) => {
      if (!child.stdin.destroyed) child.stdin.write(bytes);
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
