// The files a process spec asks for (a template's config files), written into the process's working
// directory before each start — as Wings rewrites a server's config files on every boot. Confined:
// the path is relative without "..", every directory on the way is created inside the working
// directory and must resolve inside it, and the file itself is never followed through a symlink
// (written to a temporary name and renamed over it).
import {
  chownSync,
  closeSync,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  realpathSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { constants as fsc } from 'node:fs';
import { dirname, join, relative, isAbsolute } from 'node:path';
import { randomBytes } from 'node:crypto';
import { KeelError, type ProcessFile } from '@keel/shared';

function inside(root: string, path: string): boolean {
  const r = relative(root, path);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/**
 * Writes `files` under `cwd` (created when missing), owned by `owner` when given. Throws
 * `request.invalid` for a path that would leave the directory.
 */
export function writeProcessFiles(
  cwd: string,
  files: readonly ProcessFile[],
  owner: { uid: number; gid: number } | null,
): void {
  mkdirSync(cwd, { recursive: true, mode: 0o755 });
  const root = realpathSync(cwd);
  for (const f of files) {
    const target = join(root, f.path);
    if (!inside(root, target))
      throw new KeelError('request.invalid', `file ${f.path} is outside the working directory`);
    const dir = dirname(target);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    if (!inside(root, realpathSync(dir))) {
      throw new KeelError(
        'request.invalid',
        `file ${f.path}: its directory leads outside the working directory`,
      );
    }
    try {
      if (lstatSync(target).isDirectory())
        throw new KeelError('request.invalid', `file ${f.path} is a directory`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const tmp = join(dir, `.${randomBytes(6).toString('hex')}.keel-tmp`);
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, f.mode);
    try {
      fchmodSync(fd, f.mode); // exactly the mode asked for, whatever the umask
      writeSync(fd, Buffer.from(f.content, 'utf8'));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (owner) chownSync(tmp, owner.uid, owner.gid);
    renameSync(tmp, target);
  }
}
