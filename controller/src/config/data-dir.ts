// The controller's data directory holds its private key, the embedded database and the local
// agent's state: nobody but the controller's user may read or change any of it. A directory made
// by us is 0700 from the start, but one that already existed (made by hand, by a package, or by an
// older Keel) may be 0755, and PGlite creates its files with the process umask (0644, or 0666 under
// umask 0). So at every start the data dir and what Keel keeps in it are checked and tightened: no
// group or other bits. Only Keel's own entries are walked (a data dir pointed at a home directory
// by mistake must not have the user's other files changed); the data dir's own 0700 already keeps
// everything else in it from other users. What cannot be tightened (another owner) stops the
// start with a message saying so.
import { chmodSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Thrown when a path in the data dir is open to others and cannot be tightened. */
export class DataDirModeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataDirModeError';
  }
}

/** What securing the data dir changed. */
export interface DataDirFixes {
  /** Paths whose mode was tightened, with the mode they had. */
  fixed: { path: string; mode: number }[];
}

/** What Keel keeps in its data dir: walked and tightened (everything else is left as it is). */
export const dataDirEntries = ['db', 'agent', 'controller.key', 'master.key', 'audit-head.json'];

/**
 * Removes group and other permission bits from `dir` and from Keel's entries in it, recursively
 * (symbolic links are left alone: their own mode means nothing, and their targets are not ours
 * to change). A missing `dir` is fine (it is created 0700 later).
 *
 * @example const { fixed } = secureDataDir(config.dataDir); if (fixed.length) log.warn(...)
 */
export function secureDataDir(dir: string): DataDirFixes {
  const fixes: DataDirFixes = { fixed: [] };
  const visit = (path: string) => {
    let stat;
    try {
      stat = lstatSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // gone meanwhile
      throw err;
    }
    if (stat.isSymbolicLink()) return;
    const mode = stat.mode & 0o7777;
    if (mode & 0o077) {
      try {
        chmodSync(path, mode & ~0o077);
      } catch (err) {
        throw new DataDirModeError(
          `${path} is open to other users (mode ${mode.toString(8)}) and cannot be changed ` +
            `(${(err as NodeJS.ErrnoException).code ?? (err as Error).message}, owner uid ${stat.uid}); ` +
            `run: chown -R "$(id -un)" ${dir} && chmod -R go-rwx ${dir}`,
        );
      }
      fixes.fixed.push({ path, mode });
    }
    if (stat.isDirectory() && path !== dir) for (const name of readdirSync(path)) visit(join(path, name));
  };
  visit(dir);
  for (const name of dataDirEntries) visit(join(dir, name));
  return fixes;
}
