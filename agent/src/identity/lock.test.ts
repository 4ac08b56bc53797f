// Proves one agent per state directory: a live holder refuses a second (also when it has our own
// pid, as containers do), a stale lock (dead pid, closed socket) is taken over, and release frees
// the directory only for its own holder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE, lockStateDir, StateDirLocked } from './lock.ts';

test('a live keel-agent holder refuses a second; release frees it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A live process whose command line names keel-agent holds the directory.
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'keel-agent'], {
    stdio: 'ignore',
  });
  t.after(() => holder.kill('SIGKILL'));
  const release = await lockStateDir(dir, holder.pid!);
  await assert.rejects(lockStateDir(dir), StateDirLocked);
  release();
  assert.equal(existsSync(join(dir, LOCK_FILE)), false);
  (await lockStateDir(dir))();
});

test('a holder with our own pid (another container on a shared volume) is told apart by its socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Both containers run the agent as pid 1: the pid in the lock is our own, yet its holder is live.
  const release = await lockStateDir(dir, 1);
  await assert.rejects(lockStateDir(dir, 1), StateDirLocked);
  release();
  // The same lock left by a container that stopped (its socket is gone) is taken over.
  writeFileSync(join(dir, LOCK_FILE), '1\n');
  (await lockStateDir(dir, 1))();
});

test('a pid that now belongs to another program (after a reboot) does not hold the directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Our parent is alive but is not a keel-agent.
  writeFileSync(join(dir, LOCK_FILE), `${process.ppid}\n`);
  (await lockStateDir(dir))();
});

test('a lock left by a dead process is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dead = spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(String(process.pid))',
  ]).stdout.toString();
  writeFileSync(join(dir, LOCK_FILE), `${dead}\n`);
  const release = await lockStateDir(dir);
  release();
  writeFileSync(join(dir, LOCK_FILE), 'garbage');
  (await lockStateDir(dir))();
});
