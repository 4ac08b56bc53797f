// One running agent per state directory: `keel-agent run` holds `<stateDir>/agent.pid`, so a second
// copy (a manual run beside the systemd unit) cannot write the same spool and corrupt its numbering.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** The lock file's name inside the state directory. */
export const LOCK_FILE = 'agent.pid';

/** Thrown when another live agent holds the state directory. */
export class StateDirLocked extends Error {
  constructor(
    readonly path: string,
    readonly pid: number,
  ) {
    super(`another keel-agent (pid ${pid}) is running with this state directory (${path})`);
    this.name = 'StateDirLocked';
  }
}

/**
 * True when `pid` is a running keel-agent. After a reboot (or on a cloned disk image) the pid in
 * a stale lock may belong to some other process: only a keel-agent holds the directory.
 */
function agentAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('keel-agent');
  } catch {
    return true; // no /proc to ask: a live process is taken to be the holder
  }
}

/**
 * Takes the state directory for this process; returns the release function. A lock left by a
 * process that no longer exists (kill -9, power loss) is taken over.
 */
export function lockStateDir(stateDir: string, pid = process.pid): () => void {
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (Number(readFileSync(path, 'utf8').trim()) === pid) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = NaN;
      try {
        holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      } catch {
        // vanished between open and read: try again
      }
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== pid && agentAlive(holder)) {
        throw new StateDirLocked(path, holder);
      }
      // Stale (or unreadable) lock: remove it and try again.
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it first
      }
    }
  }
  throw new Error(`could not take ${path}`);
}
