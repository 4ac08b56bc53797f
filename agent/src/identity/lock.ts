// One running agent per state directory: `keel-agent run` holds `<stateDir>/agent.pid`, so a second
// copy (a manual run beside the systemd unit) cannot write the same spool and corrupt its numbering.
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
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
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      // Created with its content in one step (link fails if the lock exists), so no other
      // starter can ever read an empty lock and mistake it for a stale one.
      const fresh = `${path}.${pid}.new`;
      writeFileSync(fresh, `${pid}\n`, { mode: 0o600 });
      try {
        linkSync(fresh, path);
      } finally {
        unlinkSync(fresh);
      }
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
      // Stale (or unreadable) lock. Take it over without racing another starter: move it aside
      // under a name of our own, and only delete it if it is still the stale one we judged.
      const aside = `${path}.${pid}.stale`;
      try {
        renameSync(path, aside);
      } catch {
        continue; // someone else moved it first
      }
      let moved = NaN;
      try {
        moved = Number.parseInt(readFileSync(aside, 'utf8').trim(), 10);
      } catch {
        // unreadable: treat as stale
      }
      if (Object.is(moved, holder)) {
        unlinkSync(aside);
      } else {
        // We moved a fresh lock another starter had just taken: put it back, unless yet another
        // lock appeared meanwhile, and let that holder win.
        try {
          linkSync(aside, path);
        } catch {
          // a newer lock exists
        }
        unlinkSync(aside);
      }
    }
  }
  throw new Error(`could not take ${path}`);
}
