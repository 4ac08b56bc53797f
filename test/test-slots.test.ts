// The machine-wide test slots (scripts/test-slots.mjs): runs of scripts/test.mjs on one machine
// share one CPU budget and one count of processes; slots of runners that are gone are reclaimed.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { machineSlots, startTimeOf } from '../scripts/test-slots.mjs';

const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function slotDir() {
  const d = mkdtempSync(join(tmpdir(), 'keel-slots-'));
  dirs.push(d);
  return d;
}
/** A live process standing in for another runner (its pid owns slots). */
function otherRunner() {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  children.push(c);
  assert.ok(c.pid);
  return c;
}

test('two runners share one budget and one count of places; freeing lets the other start', () => {
  const dir = slotDir();
  const other = otherRunner();
  const a = machineSlots({ dir, budget: 2, places: 3, pid: other.pid });
  const b = machineSlots({ dir, budget: 2, places: 3 });
  assert.equal(a.take('job-0', 1.5), true);
  assert.equal(b.take('job-0', 1.0), false, "over the machine's budget beside the other run's 1.5");
  assert.equal(b.take('job-1', 0.4), true, 'a lighter job fits beside it');
  assert.deepEqual(b.usage(), { load: 1.9, places: 2, slots: 2 });
  assert.equal(a.take('job-1', 0.05), true);
  assert.equal(b.take('job-2', 0.05), false, 'three places taken on the machine');
  assert.equal(b.take('job-3', 0.05, { idle: true }), true, 'an idle job takes no place');
  a.free('job-0');
  assert.equal(b.take('job-0', 1.0), true, 'the other run freed 1.5 cores and a place');
  b.freeAll();
  assert.deepEqual(a.usage(), { load: 0.05, places: 1, slots: 1 });
});

test('a runner that measured idle cores may exceed the budget by the factor it gives, places still count', () => {
  const dir = slotDir();
  const a = machineSlots({ dir, budget: 2, places: 3 });
  assert.equal(a.take('job-0', 1.2), true);
  assert.equal(a.take('job-1', 1.2), false, 'by the expected loads alone it waits');
  assert.equal(a.take('job-1', 1.2, { over: 1.5 }), true, 'with the cores measured idle: 2.4 of 3');
  assert.equal(a.take('job-2', 0.7, { over: 1.5 }), false, '3.1 is over 1.5 times the budget');
  assert.equal(a.take('job-2', 0.5, { over: 1.5 }), true);
  assert.equal(a.take('job-3', 0.05, { over: 1.5 }), false, 'three places taken');
});

test('on an idle machine one job starts whatever its load', () => {
  const dir = slotDir();
  const a = machineSlots({ dir, budget: 1, places: 1 });
  assert.equal(a.take('job-0', 2), true);
  assert.equal(a.take('job-1', 0.05), false);
});

test('the slots of a runner that died, or whose pid now names another process, are reclaimed', async () => {
  const dir = slotDir();
  const gone = otherRunner();
  const dead = machineSlots({ dir, budget: 2, places: 6, pid: gone.pid });
  assert.equal(dead.take('job-0', 2), true);
  // A slot whose pid is alive (this process) but started at another time: a reused pid.
  const start = startTimeOf(process.pid);
  assert.ok(start, 'this test needs /proc');
  writeFileSync(
    join(dir, `${process.pid}.${Number(start) - 1}.job-9`),
    JSON.stringify({ load: 2, idle: false }),
  );
  const b = machineSlots({ dir, budget: 2, places: 6 });
  assert.equal(b.take('job-0', 1), false, 'the other runner still lives');
  gone.kill('SIGKILL');
  await new Promise((r) => gone.once('exit', r));
  assert.equal(b.take('job-0', 1), true, 'its slots and the reused pid’s went back to the machine');
  assert.deepEqual(readdirSync(dir).sort(), [`${process.pid}.${start}.job-0`]);
});

test('a lock left by a dead runner is taken over', async () => {
  const dir = slotDir();
  const gone = otherRunner();
  writeFileSync(join(dir, '.lock'), `${gone.pid}.${startTimeOf(gone.pid!)}`);
  gone.kill('SIGKILL');
  await new Promise((r) => gone.once('exit', r));
  const b = machineSlots({ dir, budget: 2, places: 6 });
  assert.equal(b.take('job-0', 1), true);
  assert.deepEqual(readdirSync(dir).length, 1);
});
