// Proves that a process's output file stays bounded on disk during one long run: what the tailer
// handed to the spool is punched out of the file (fallocate) while the process keeps appending,
// and every line still reaches the spool exactly once and in order, across a tailer restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogLine } from '@keel/shared';
import { LogTailer } from './log-tail.ts';
import { MemorySpool } from '../../../test/helpers/memory-spool.ts';

test(
  'the spooled part of an output file is punched out while the process writes on; no line lost or repeated',
  { timeout: 120_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'stdout.log');
    const N = 60_000;
    // As the supervisor hands it over: the file opened O_APPEND as the writer's stdout.
    const fd = openSync(file, 'a', 0o600);
    // It writes the first half, waits until the test has restarted the tailer (the `go` file), then
    // writes the rest: the restart falls mid-run however fast the machine runs the writer.
    const go = join(dir, 'go');
    const half = `while [ $i -lt $1 ]; do i=$((i+1)); echo "line $i ${'x'.repeat(90)}"; done`;
    const writer = spawn(
      'sh',
      [
        '-c',
        `i=0; ${half}; while [ ! -e "$2" ]; do sleep 0.05; done; ${half.replace('$1', '$3')}`,
        'writer',
        String(N / 2),
        go,
        String(N),
      ],
      { stdio: ['ignore', fd, 'ignore'] },
    );
    closeSync(fd);
    const exited = new Promise<void>((r) => writer.on('exit', () => r()));
    const spool = new MemorySpool();
    const opts = { dir, spool, keepBytes: 64 * 1024, punchEveryBytes: 256 * 1024 };
    let tailer = new LogTailer(opts);
    tailer.add({ process: 'p', stream: 'stdout', path: file });
    let done = false;
    void exited.then(() => (done = true));
    let restarted = false;
    let maxDisk = 0;
    while (!done) {
      tailer.tick();
      const st = statSync(file);
      maxDisk = Math.max(maxDisk, st.blocks * 512);
      // Half-way, the agent restarts: a new tailer resumes from the intent file.
      if (!restarted && spool.records.length >= N / 2) {
        tailer = new LogTailer(opts);
        tailer.add({ process: 'p', stream: 'stdout', path: file });
        restarted = true;
        writeFileSync(go, '');
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // The writer may be megabytes ahead of the last tick (a fast machine runs it in a fraction of a
    // second): drain reads to the end.
    tailer.drain();
    // A punch that was running when the last lines were read goes on in the helper, and the one
    // due after it follows (#punch): the disk bound holds once they are done.
    for (let i = 0; i < 500 && tailer.punching(file); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(tailer.punching(file), false, 'the punches ended');
    tailer.close();
    assert.equal(tailer.punchError, null);
    assert.ok(restarted, 'the tailer was restarted mid-run');
    // A line the writer was slow to finish (a busy machine) may come as a `continued` part and its
    // rest: join them, as a reader does.
    const lines: string[] = [];
    let part = '';
    for (const r of spool.records) {
      const l = decodeLogLine(r.payload)!;
      part += Buffer.from(l.line).toString();
      if (!l.continued) {
        lines.push(part);
        part = '';
      }
    }
    const numbers = lines.map((l) => Number(l.split(' ')[1]));
    assert.equal(numbers.length, N);
    numbers.forEach((n, i) => assert.equal(n, i + 1, `line ${i + 1} is line ${i + 1}`));
    const size = statSync(file).size;
    const disk = statSync(file).blocks * 512;
    assert.ok(size > 5_000_000, `the file's apparent size is the whole run's output (${size})`);
    // Kept: 64 KiB below the spooled offset + less than punchMaxEveryBytes (1 MiB here) not yet
    // punched; far below the 5.8 MB written.
    assert.ok(disk <= (64 + 1024 + 8) * 1024, `disk use ${disk} bytes at the end`);
    assert.ok(maxDisk < 4 * 1024 * 1024, `disk use at most ${maxDisk} bytes during the run`);
  },
);

test('a fast writer is punched at most once per interval, and at once when the larger spacing is due', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-punch-every-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'stdout.log');
  writeFileSync(file, '');
  let now = 1_000_000;
  const KiB = 1024;
  const tailer = new LogTailer({
    dir,
    spool: new MemorySpool(),
    now: () => now,
    keepBytes: 0,
    punchEveryBytes: 64 * KiB,
    punchMaxEveryBytes: 256 * KiB,
    punchIntervalMs: 1_000,
  });
  tailer.add({ process: 'p', stream: 'stdout', path: file });
  const lines = (kib: number) => `${'x'.repeat(1023)}\n`.repeat(kib);
  const settle = async () => {
    while (tailer.punching(file)) await new Promise((r) => setTimeout(r, 10));
  };
  const disk = () => statSync(file).blocks * 512;
  appendFileSync(file, lines(100));
  tailer.tick(); // 100 KiB spooled, none punched yet: punched
  await settle();
  assert.equal(tailer.punchError, null);
  assert.ok(disk() < 64 * KiB, `first punch: ${disk()} bytes on disk`);
  now += 10;
  appendFileSync(file, lines(100));
  tailer.tick(); // 100 KiB more, 10 ms later: waits for the interval
  await settle();
  assert.ok(disk() >= 96 * KiB, `within the interval, not punched: ${disk()}`);
  now += 1_000;
  appendFileSync(file, lines(1));
  tailer.tick(); // the interval passed (a tick that spooled lines punches)
  await settle();
  assert.ok(disk() < 64 * KiB, `after the interval: ${disk()}`);
  now += 10;
  appendFileSync(file, lines(300));
  tailer.tick(); // 300 KiB more at once: past the larger spacing, punched within the interval
  await settle();
  assert.ok(disk() < 64 * KiB, `past punchMaxEveryBytes: ${disk()}`);
  // Lines spooled while a punch runs (one at a time) are punched when it ends, once past the
  // larger spacing: a process that has ended brings no further tick.
  now += 10;
  appendFileSync(file, lines(300));
  tailer.tick(); // a punch starts
  assert.equal(tailer.punching(file), true);
  appendFileSync(file, lines(300));
  tailer.tick(); // 300 KiB read while it runs: not punched by this tick
  await settle();
  assert.ok(disk() < 64 * KiB, `what was spooled during a punch: ${disk()}`);
});

/** Ticks until the file's punch settled; returns its bytes on disk. */
async function punchedDisk(tailer: LogTailer, file: string): Promise<number> {
  const until = Date.now() + 10_000;
  while (tailer.punching(file) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  assert.equal(tailer.punching(file), false, 'the punch settled');
  return statSync(file).blocks * 512;
}

test('punches go through one long-lived helper (the agent forks nothing per punch), and one child each when asked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-punch-helper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const KiB = 1024;
  const lines = (kib: number) => `${'y'.repeat(1023)}\n`.repeat(kib);
  for (const punchBy of ['helper', 'spawn'] as const) {
    const files = [join(dir, `${punchBy}-a.log`), join(dir, `${punchBy}-b.log`)];
    const tailer = new LogTailer({
      dir,
      spool: new MemorySpool(),
      keepBytes: 0,
      punchEveryBytes: 64 * KiB,
      punchIntervalMs: 0,
      punchBy,
    });
    t.after(() => tailer.close());
    for (const f of files) {
      writeFileSync(f, '');
      tailer.add({ process: punchBy, stream: f.endsWith('a.log') ? 'stdout' : 'stderr', path: f });
    }
    const pids = new Set<number | null>();
    for (let round = 0; round < 4; round++) {
      for (const f of files) appendFileSync(f, lines(128));
      tailer.tick(); // both files punched at once: answers come back in order
      for (const f of files)
        assert.ok((await punchedDisk(tailer, f)) < 64 * KiB, `${punchBy} round ${round}`);
      pids.add(tailer.puncher?.pid ?? null);
    }
    assert.equal(tailer.punchError, null);
    if (punchBy === 'helper') {
      assert.equal(tailer.puncher?.started, 1, 'one helper for eight punches of two files');
      assert.equal(pids.size, 1);
      assert.notEqual([...pids][0], null);
    } else assert.equal(tailer.puncher, null);
  }
});

test('a helper that cannot punch hands the punch to a child of its own, and punches go that way from then on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-punch-fallback-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const KiB = 1024;
  const file = join(dir, 'stdout.log');
  writeFileSync(file, '');
  const tailer = new LogTailer({
    dir,
    spool: new MemorySpool(),
    keepBytes: 0,
    punchEveryBytes: 64 * KiB,
    punchIntervalMs: 0,
  });
  tailer.add({ process: 'p', stream: 'stdout', path: file });
  // The helper is gone before the first punch (as if it could not start or was killed).
  tailer.puncher!.close();
  const closedHelper = tailer.puncher!;
  closedHelper.punch = (_fd, _off, _len, done) => done('the punch helper is not running');
  appendFileSync(file, `${'z'.repeat(1023)}\n`.repeat(128));
  tailer.tick();
  assert.ok((await punchedDisk(tailer, file)) < 64 * KiB, 'punched by a child of its own');
  assert.equal(tailer.puncher, null, 'one child per punch from then on');
  assert.equal(tailer.punchError, null);
});
