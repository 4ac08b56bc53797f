// Proves one agent per state directory: a live holder refuses a second, a stale lock (dead pid)
// is taken over, and release frees the directory only for its own holder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE, lockStateDir, StateDirLocked } from './lock.ts';

test('a second holder is refused while the first lives; release frees it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const release = lockStateDir(dir);
  // Another live process (our parent) appears to hold it.
  assert.throws(() => lockStateDir(dir, process.ppid), StateDirLocked);
  release();
  assert.equal(existsSync(join(dir, LOCK_FILE)), false);
  lockStateDir(dir, process.ppid)();
});

test('a lock left by a dead process is taken over', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dead = spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(String(process.pid))',
  ]).stdout.toString();
  writeFileSync(join(dir, LOCK_FILE), `${dead}\n`);
  const release = lockStateDir(dir);
  release();
  writeFileSync(join(dir, LOCK_FILE), 'garbage');
  lockStateDir(dir)();
});
