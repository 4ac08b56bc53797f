// One running agent per state directory: `keel-agent run` holds `<stateDir>/agent.pid`, so a second
// copy (a manual run beside the systemd unit) cannot write the same spool and corrupt its numbering.
//
// The lock file says `<pid> <nonce> <socket>`. Before publishing it, the holder listens on a unix
// socket of its own (`agent.<nonce>.sock`), so a lock that anyone can see has a live socket behind
// it for as long as its holder runs: a socket that answers proves a live holder even where its pid
// means nothing to us (two containers sharing one state volume are both pid 1, and a restarted
// container finds its own pid in the lock it left). Locks without a socket (older agents, or a file
// system without sockets) fall back to asking whether the pid is a running keel-agent.
import { randomBytes } from 'node:crypto';
import {
  linkSync,
  lstatSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';

/** The lock file's name inside the state directory. */
export const LOCK_FILE = 'agent.pid';
/** Longest path a unix socket can have (sun_path, with its NUL), in bytes. */
const MAX_SOCKET_PATH = 107;
const SOCKET_NAME = /^agent\.[0-9a-f]{16}\.sock$/;

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

interface LockInfo {
  pid: number;
  /** The holder's liveness socket (a file name in the state directory), when it has one. */
  socket: string | null;
}

function parseLock(text: string): LockInfo | null {
  const [pidText, , socket] = text.trim().split(' ');
  const pid = Number.parseInt(pidText ?? '', 10);
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  return { pid, socket: socket && SOCKET_NAME.test(socket) ? socket : null };
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

/** Listens on a fresh liveness socket; null (with the reason) where none can be made. */
async function listenLiveness(path: string): Promise<{ server: Server | null; why?: string }> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return { server: null, why: 'the path is too long' };
  const server = createServer((c) => c.end());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } catch (err) {
    return { server: null, why: (err as Error).message };
  }
  server.unref();
  return { server };
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** How old a leftover of a crashed starter must be before the lock holder removes it. */
const LEFTOVER_MS = 60_000;

/**
 * Removes what crashed starters left (temp lock files, sockets nobody listens on) once they are
 * old enough that no starter can still be using them.
 */
function removeLeftovers(stateDir: string, ownSocket: string): void {
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    const leftover =
      (SOCKET_NAME.test(name) && name !== ownSocket) ||
      /^agent\.pid\.[0-9a-f]{16}\.(new|stale|release)$/.test(name);
    if (!leftover) continue;
    const file = join(stateDir, name);
    try {
      if (now - lstatSync(file).mtimeMs > LEFTOVER_MS) unlinkSync(file);
    } catch {
      // gone already
    }
  }
}

/**
 * Takes the state directory for this process; resolves with the release function. A lock left by
 * a process that no longer exists (kill -9, power loss, a stopped container) is taken over.
 * `warn` hears about a lock that can only rely on the pid (no liveness socket could be made).
 */
export async function lockStateDir(
  stateDir: string,
  pid = process.pid,
  warn: (message: string) => void = () => {},
): Promise<() => void> {
  const path = join(stateDir, LOCK_FILE);
  const nonce = randomBytes(8).toString('hex');
  const socketName = `agent.${nonce}.sock`;
  const { server, why } = await listenLiveness(join(stateDir, socketName));
  if (!server) {
    warn(`no liveness socket in ${stateDir} (${why}); the state-dir lock relies on the pid alone`);
  }
  const content = `${pid} ${nonce}${server ? ` ${socketName}` : ''}\n`;
  const release = () => {
    // The lock goes first, while our socket still proves us alive: closing the socket first would
    // let another starter take the lock over, and our unlink could then remove its new lock.
    const aside = `${path}.${nonce}.release`;
    try {
      renameSync(path, aside);
      if (readText(aside) !== content) {
        try {
          linkSync(aside, path); // not ours after all: put it back
        } catch {
          // a newer lock exists
        }
      }
      unlinkQuietly(aside);
    } catch {
      // no lock left
    }
    server?.close(); // removes our own socket file
  };
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      // Created with its content in one step (link fails if the lock exists), so no other
      // starter can ever read an empty or half-written lock and mistake it for a stale one.
      const fresh = `${path}.${nonce}.new`;
      writeFileSync(fresh, content, { mode: 0o600 });
      try {
        linkSync(fresh, path);
        removeLeftovers(stateDir, socketName);
        return release;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        unlinkQuietly(fresh);
      }
      const text = readText(path);
      if (text === null) continue; // vanished between link and read: try again
      const holder = parseLock(text);
      // The holder's socket decides; without one (older agents, no socket possible, or a path
      // too long for us to reach, e.g. the volume mounted deeper here) the pid does.
      const holderSocket = holder?.socket ? join(stateDir, holder.socket) : null;
      const live = !holder
        ? false
        : holderSocket && Buffer.byteLength(holderSocket) <= MAX_SOCKET_PATH
          ? await socketAnswers(holderSocket)
          : holder.pid !== pid && agentAlive(holder.pid);
      if (live) throw new StateDirLocked(path, holder!.pid);
      // Stale (or unreadable) lock. Take it over without racing another starter: move it aside
      // under a name of our own, and only delete it if it is still the stale one we judged.
      const aside = `${path}.${nonce}.stale`;
      try {
        renameSync(path, aside);
      } catch {
        continue; // someone else moved it first
      }
      if (readText(aside) === text) {
        unlinkQuietly(aside);
        if (holder?.socket) unlinkQuietly(join(stateDir, holder.socket)); // the dead holder's
      } else {
        // We moved a fresh lock another starter had just taken: put it back, unless yet another
        // lock appeared meanwhile, and let that holder win.
        try {
          linkSync(aside, path);
        } catch {
          // a newer lock exists
        }
        unlinkQuietly(aside);
      }
    }
    throw new Error(`could not take ${path}`);
  } catch (err) {
    server?.close();
    throw err;
  }
}
