// Proves a spec's files are written confined to the working directory: nested directories are
// made, the mode is exact whatever the umask, an existing file is replaced whole, a symlink at the
// file's place is replaced rather than followed, a directory symlink leading outside is refused
// (nothing written outside), and a directory in the file's place is refused.
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  lstatSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { KeelError } from '@keel/shared';
import { writeProcessFiles } from './files.ts';

const root = mkdtempSync(join(tmpdir(), 'keel-files-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('files are written whole, with their mode, in nested directories', { timeout: 10_000 }, () => {
  const cwd = join(root, 'work');
  writeProcessFiles(cwd, [{ path: 'conf/a/server.properties', content: 'port=1\n', mode: 0o640 }], null);
  const file = join(cwd, 'conf/a/server.properties');
  assert.equal(readFileSync(file, 'utf8'), 'port=1\n');
  assert.equal(statSync(file).mode & 0o777, 0o640);
  writeProcessFiles(cwd, [{ path: 'conf/a/server.properties', content: 'port=2\n', mode: 0o600 }], null);
  assert.equal(readFileSync(file, 'utf8'), 'port=2\n');
  assert.equal(statSync(file).mode & 0o777, 0o600);
});

test(
  'a symlink is replaced, never followed; a way out through a directory link is refused',
  { timeout: 10_000 },
  () => {
    const cwd = join(root, 'confined');
    const outside = join(root, 'outside');
    mkdirSync(cwd, { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'secret'), 'keep me');
    symlinkSync(join(outside, 'secret'), join(cwd, 'link'));
    writeProcessFiles(cwd, [{ path: 'link', content: 'new', mode: 0o644 }], null);
    assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), 'keep me', 'the target was not written');
    assert.ok(!lstatSync(join(cwd, 'link')).isSymbolicLink(), 'the link was replaced by a file');

    symlinkSync(outside, join(cwd, 'out'));
    assert.throws(
      () => writeProcessFiles(cwd, [{ path: 'out/evil.txt', content: 'x', mode: 0o644 }], null),
      (err: unknown) => err instanceof KeelError && err.code === 'request.invalid',
    );
    assert.ok(!existsSync(join(outside, 'evil.txt')), 'nothing written outside');

    mkdirSync(join(cwd, 'adir'));
    assert.throws(
      () => writeProcessFiles(cwd, [{ path: 'adir', content: 'x', mode: 0o644 }], null),
      KeelError,
    );
  },
);
