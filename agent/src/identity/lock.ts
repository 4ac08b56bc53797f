// One running agent per state directory: `keel-agent run` holds `<stateDir>/agent.pid`, so a second
// copy (a manual run beside the systemd unit) cannot write the same spool and corrupt its numbering.
// The holder also listens on `<stateDir>/agent.sock`: a socket that answers proves a live holder
// even where its pid means nothing to us (two containers sharing one state volume are both pid 1,
// and a restarted container finds its own pid in the stale lock it left).
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';

/** The lock file's name inside the state directory. */
export const LOCK_FILE = 'agent.pid';
/** The holder's liveness socket inside the state directory. */
export const LOCK_SOCKET = 'agent.sock';
/** Longest path a unix socket can have (sun_path, with its NUL). */
const MAX_SOCKET_PATH = 107;

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

/** Resolves true when something accepts a connection on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  if (path.length > MAX_SOCKET_PATH) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), 2_000); // a holder too busy to accept is still alive
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false)); // ENOENT, ECONNREFUSED: nobody listens
  });
}

/** Listens on the liveness socket (replacing a stale one); null where no socket can be made. */
async function listenLiveness(path: string): Promise<Server | null> {
  if (path.length > MAX_SOCKET_PATH) return null;
  try {
    unlinkSync(path); // we hold the pid lock: any socket file here is a dead holder's
  } catch {
    // none
  }
  const server = createServer((c) => c.end());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } catch {
    return null; // e.g. a file system without sockets: the pid lock still applies
  }
  server.unref();
  return server;
}

/**
 * Takes the state directory for this process; resolves with the release function. A lock left by
 * a process that no longer exists (kill -9, power loss, a restarted container) is taken over.
 */
export async function lockStateDir(stateDir: string, pid = process.pid): Promise<() => void> {
  const path = join(stateDir, LOCK_FILE);
  const socketPath = join(stateDir, LOCK_SOCKET);
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
      const server = await listenLiveness(socketPath);
      return () => {
        server?.close();
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
      const live =
        (await socketAnswers(socketPath)) ||
        (Number.isSafeInteger(holder) && holder > 0 && holder !== pid && agentAlive(holder));
      if (live) throw new StateDirLocked(path, holder);
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
