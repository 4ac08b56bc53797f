// Proves one agent per state directory: a live holder refuses a second (also when it has our own
// pid, as containers do), a stale lock (dead pid, closed socket) is taken over, and release frees
// the directory only for its own holder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE, lockStateDir, StateDirLocked } from './lock.ts';
import { tsLoader } from '../../../scripts/test-loader-url.mjs';

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
  // The same lock left by a container that stopped is taken over: without a socket, and with one
  // that nobody listens on any more.
  writeFileSync(join(dir, LOCK_FILE), '1\n');
  (await lockStateDir(dir, 1))();
  writeFileSync(join(dir, LOCK_FILE), '1 0123456789abcdef agent.0123456789abcdef.sock\n');
  writeFileSync(join(dir, 'agent.0123456789abcdef.sock'), '');
  (await lockStateDir(dir, 1))();
  assert.equal(existsSync(join(dir, 'agent.0123456789abcdef.sock')), false, 'the dead socket is removed');
});

test('two starters with the same pid at the same moment (two containers): exactly one wins', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lockModule = new URL('./lock.ts', import.meta.url).href;
  // Each child loads the module, says "ready", waits for "go" on stdin, tries the lock as pid 1,
  // says how it went, and holds what it got until stdin closes. The parent sends "go" to both
  // only when both are ready, so the two attempts start within a millisecond or so.
  const script =
    `const { lockStateDir } = await import(${JSON.stringify(lockModule)});` +
    `const lines = process.stdin; lines.setEncoding('utf8');` +
    `console.log('ready');` +
    `await new Promise((go) => lines.once('data', go));` +
    `let release = () => {};` +
    `try { release = await lockStateDir(${JSON.stringify(dir)}, 1); console.log('won'); }` +
    ` catch (e) { console.log(e.name); }` +
    `lines.on('end', () => { release(); process.exit(0); }); lines.resume();`;
  const start = () => {
    const p = spawn(process.execPath, ['--import', tsLoader, '--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    const waiters: (() => void)[] = [];
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      lines.push(...d.split('\n').filter(Boolean));
      for (const w of waiters.splice(0)) w();
    });
    const line = (n: number) =>
      new Promise<string>((resolve) => {
        const check = () => (lines.length > n ? resolve(lines[n]!) : waiters.push(check));
        check();
      });
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    return { p, line, exited };
  };
  for (const stale of [false, true, false, true]) {
    if (stale) writeFileSync(join(dir, LOCK_FILE), '1\n'); // a stopped container's lock
    const pair = [start(), start()];
    t.after(() => pair.forEach((c) => c.p.kill('SIGKILL')));
    await Promise.all(pair.map((c) => c.line(0))); // both loaded
    for (const c of pair) c.p.stdin.write('go\n');
    const results = await Promise.all(pair.map((c) => c.line(1)));
    assert.deepEqual(results.sort(), ['StateDirLocked', 'won'], `stale lock: ${stale}`);
    for (const c of pair) c.p.stdin.end();
    await Promise.all(pair.map((c) => c.exited));
  }
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

test('the holder removes what crashed starters left once it is old; release leaves a newer lock alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const old = new Date(Date.now() - 5 * 60_000);
  const leftovers = ['agent.pid.00000000000000aa.new', 'agent.00000000000000bb.sock'];
  for (const name of leftovers) {
    writeFileSync(join(dir, name), '');
    utimesSync(join(dir, name), old, old);
  }
  writeFileSync(join(dir, 'agent.pid.00000000000000cc.new'), ''); // fresh: another starter's
  const release = await lockStateDir(dir);
  for (const name of leftovers) assert.equal(existsSync(join(dir, name)), false, name);
  assert.equal(existsSync(join(dir, 'agent.pid.00000000000000cc.new')), true);
  // Someone replaced the lock meanwhile (an operator, a takeover): release must not remove it.
  writeFileSync(join(dir, LOCK_FILE), '4242 00000000000000dd\n');
  release();
  assert.equal(readFileSync(join(dir, LOCK_FILE), 'utf8'), '4242 00000000000000dd\n');
});
