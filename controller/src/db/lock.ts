// One process per embedded database. PGlite is PostgreSQL in single-user mode inside this process:
// a second process opening the same directory (`keel-controller create-admin` beside the running
// controller, or a second controller) works on its own copy of the pages, so what it writes is lost
// or, worse, corrupts the first one's. The holder listens on a Linux abstract unix socket named
// after the directory: binding is atomic (EADDRINUSE for everyone else), nothing is left on disk,
// and the kernel frees the name when the holder exits, even on kill -9 or power loss. Connecting
// to the socket gets the holder's pid, for the message.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';

/** Thrown when another live process holds the embedded database directory. */
export class DatabaseInUse extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number | null,
  ) {
    super(
      `the embedded database in ${dir} is in use by another keel-controller process${pid ? ` (pid ${pid})` : ''}; ` +
        'PGlite allows one process at a time',
    );
    this.name = 'DatabaseInUse';
  }
}

/** The abstract socket name for a directory (a leading NUL: no file, freed when the process ends). */
export function lockAddress(dir: string): string {
  let real = dir;
  try {
    real = realpathSync(dir);
  } catch {
    // not created yet: the name of the path as given
  }
  return `\0keel-controller-db-${createHash('sha256').update(real).digest('hex').slice(0, 32)}`;
}

function holderPid(address: string): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = connect(address);
    let text = '';
    const done = (pid: number | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => done(null), 1_000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.once('end', () => {
      const pid = Number.parseInt(text, 10);
      done(Number.isSafeInteger(pid) && pid > 0 ? pid : null);
    });
    socket.once('error', () => done(null));
  });
}

/**
 * Takes the embedded database directory for this process; resolves with the release function.
 * Rejects with DatabaseInUse while another process holds it.
 */
export async function lockDatabaseDir(dir: string): Promise<() => Promise<void>> {
  const address = lockAddress(dir);
  const server: Server = createServer((c) => c.end(`${process.pid}\n`));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address, () => resolve());
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new DatabaseInUse(dir, await holderPid(address));
    }
    throw err;
  }
  server.unref();
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}
