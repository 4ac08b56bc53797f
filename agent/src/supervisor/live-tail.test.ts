// Proves the live output channel: its backlog is one sequence in capture order (stdout and stderr
// lines interleaved as the process printed them, stderr marked), and its backpressure: a reader
// slower than the writer gets a `{"skipped":bytes}` marker and then whole lines of the newest
// output, in order, and what waits for it never grows past one read (memory stays flat however
// far the writer runs ahead). Also the tailer's capture times the backlog is merged by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { decodeLogLine, processLogsChannel } from '@keel/shared';
import type { CapabilityContext } from '../capabilities.ts';
import type { ChannelPort } from '../channels/hub.ts';
import type { Spool } from '../link/spool.ts';
import { liveTail, supervisorCapability } from './index.ts';
import { LogTailer } from './log-tail.ts';
import { MemorySpool } from '../../../test/helpers/memory-spool.ts';

const line = (n: number) => `line ${String(n).padStart(7, '0')} ${'x'.repeat(86)}\n`;

test(
  'a slow live reader skips ahead with a marker and gets whole, ordered lines of the newest output',
  { timeout: 60_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-live-'));
    const out = join(dir, 'stdout.log');
    writeFileSync(out, line(0));
    const abort = new AbortController();
    let closed = false;
    const received: Buffer[] = [];
    let largestWrite = 0;
    const port: ChannelPort = {
      id: 'live-test',
      async write(bytes) {
        received.push(Buffer.from(bytes));
        largestWrite = Math.max(largestWrite, bytes.length);
        // A slow reader: each write is taken only after a while.
        await new Promise((r) => setTimeout(r, 200));
      },
      close() {
        closed = true;
        abort.abort();
      },
      get closed() {
        return closed;
      },
      signal: abort.signal,
    };
    t.after(() => {
      closed = true;
      rmSync(dir, { recursive: true, force: true });
    });
    const tail = liveTail(port, [{ s: 'out', path: out }], 0);
    // 4 MiB appear at once, far more than the 1 MiB a reader may lag.
    const N = 40_000;
    let chunk = '';
    for (let i = 1; i <= N; i++) chunk += line(i);
    appendFileSync(out, chunk);
    const text = () => Buffer.concat(received).toString('utf8');
    const deadline = Date.now() + 45_000;
    while (!text().includes(`"l":"${line(N).trimEnd()}"`)) {
      assert.ok(Date.now() < deadline, 'the last line reached the reader');
      await new Promise((r) => setTimeout(r, 50));
    }
    closed = true;
    await tail;
    const messages = text()
      .trim()
      .split('\n')
      .map((m) => JSON.parse(m) as { skipped?: number; s?: string; l?: string });
    const marker = messages.findIndex((m) => m.skipped !== undefined);
    assert.ok(marker >= 0, 'a skipped marker');
    assert.ok(messages[marker]!.skipped! >= 2 * 1024 * 1024, `skipped ${messages[marker]!.skipped} bytes`);
    const after = messages.slice(marker + 1).filter((m) => m.l !== undefined);
    assert.ok(after.length > 0);
    const numbers = after.map((m) => {
      assert.match(m.l!, /^line \d{7} x{86}$/, 'whole lines only');
      return Number(m.l!.slice(5, 12));
    });
    for (let i = 1; i < numbers.length; i++)
      assert.equal(numbers[i], numbers[i - 1]! + 1, 'in order, none missing');
    assert.equal(numbers.at(-1), N);
    // What the reader was handed at once stayed around one read (256 KiB of lines as JSON).
    assert.ok(largestWrite < 512 * 1024, `largest write ${largestWrite} bytes`);
  },
);

test(
  'a live view keeps its pace: a fast reader of a firehose gets at most maxBytesPerSecond, the rest skipped with markers',
  { timeout: 60_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-live-pace-'));
    const out = join(dir, 'stdout.log');
    writeFileSync(out, '');
    const { port, messages } = collectingPort();
    t.after(() => {
      port.close({ reason: 'test over' });
      rmSync(dir, { recursive: true, force: true });
    });
    const pace = 256 * 1024;
    const t0 = Date.now();
    const tail = liveTail(port, [{ s: 'out', path: out }], 0, () => undefined, pace);
    // A firehose: 1 MiB every 100 ms for 2 s (10 MiB/s, 40x the pace), numbered lines.
    let n = 0;
    for (let step = 0; step < 20; step++) {
      let chunk = '';
      for (let i = 0; i < 10_000; i++) chunk += line(++n);
      appendFileSync(out, chunk);
      await new Promise((r) => setTimeout(r, 100));
    }
    // The tail keeps following: the last line arrives, at the pace, after a skip.
    const deadline = Date.now() + 20_000;
    while (!messages().some((m) => m.l === line(n).trimEnd())) {
      assert.ok(Date.now() < deadline, 'the last line reached the reader');
      await new Promise((r) => setTimeout(r, 50));
    }
    const elapsed = (Date.now() - t0) / 1000;
    port.close({ reason: 'test over' });
    await tail;
    const all = messages() as { skipped?: number; l?: string }[];
    const lines = all.filter((m) => m.l !== undefined);
    const delivered = lines.reduce((a, m) => a + m.l!.length + 1, 0);
    // At most one share (a quarter second's bytes) over the pace for the time it ran.
    assert.ok(
      delivered <= pace * elapsed + pace / 4,
      `${delivered} bytes delivered in ${elapsed.toFixed(1)} s at a pace of ${pace}/s`,
    );
    assert.ok(delivered >= pace, `the view was not starved: ${delivered} bytes`);
    const skipped = all.filter((m) => m.skipped !== undefined).reduce((a, m) => a + m.skipped!, 0);
    assert.ok(skipped >= 10 * 1024 * 1024, `${skipped} bytes skipped ahead`);
    // Between markers, whole lines in order.
    let prev = -1;
    for (const m of all) {
      if (m.skipped !== undefined) {
        prev = -1;
        continue;
      }
      assert.match(m.l!, /^line \d{7} x{86}$/, 'whole lines only');
      const k = Number(m.l!.slice(5, 12));
      if (prev >= 0) assert.equal(k, prev + 1, 'in order, none missing between markers');
      prev = k;
    }
  },
);

/** An in-memory stand-in for the logs spool (the real Spool is tested in link/spool.test.ts). */
/** A channel port that keeps what is written. */
function collectingPort() {
  const abort = new AbortController();
  let closed = false;
  const received: Buffer[] = [];
  const port: ChannelPort = {
    id: 'live-order-test',
    write(bytes) {
      received.push(Buffer.from(bytes));
      return Promise.resolve();
    },
    close() {
      closed = true;
      abort.abort();
    },
    get closed() {
      return closed;
    },
    signal: abort.signal,
  };
  const messages = () =>
    Buffer.concat(received)
      .toString('utf8')
      .split('\n')
      .filter((m) => m !== '')
      .map((m) => JSON.parse(m) as { s: string; t: number; l: string });
  return { port, messages };
}

test(
  'a live tail opened after a process alternated stdout and stderr gets the backlog in the order it was printed',
  { timeout: 30_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-live-order-'));
    const spool = new MemorySpool();
    const cap = supervisorCapability({ dir });
    const ctx: CapabilityContext = {
      log: pino({ level: 'silent' }),
      emit: () => {},
      send: () => {},
      onSession: () => {},
      stream: () => spool as unknown as Spool,
    };
    await cap.start(ctx);
    t.after(() => {
      try {
        const { pid } = JSON.parse(readFileSync(join(dir, 'alternating', 'run.json'), 'utf8')) as {
          pid: number;
        };
        if (pid > 0) process.kill(-pid, 'SIGKILL'); // the keeper leads the group
      } catch {
        // gone
      }
      cap.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    // Argv only (no shell parses it): each line a while after the other, longer than a tail tick.
    const script =
      'for i in 1 2 3 4 5 6; do echo out$i; sleep 0.3; echo err$i >&2; sleep 0.3; done; sleep 30';
    await cap.requests['process.apply']({ spec: { name: 'alternating', argv: ['sh', '-c', script] } });
    // Every line captured (in the logs spool) before the live tail opens: all of it is backlog.
    const deadline = Date.now() + 15_000;
    while (spool.records.filter((r) => decodeLogLine(r.payload)?.process === 'alternating').length < 12) {
      assert.ok(Date.now() < deadline, 'the twelve lines reached the spool');
      await new Promise((r) => setTimeout(r, 50));
    }
    const { port, messages } = collectingPort();
    const handler = cap.channels[processLogsChannel.kind]!;
    handler.open(port, { name: 'alternating', backlogBytes: 16 * 1024 });
    while (messages().length < 12) {
      assert.ok(Date.now() < deadline + 5_000, 'the backlog reached the reader');
      await new Promise((r) => setTimeout(r, 20));
    }
    port.close({ reason: 'test done' });
    const got = messages();
    assert.deepEqual(
      got.map((m) => `${m.s}:${m.l}`),
      [1, 2, 3, 4, 5, 6].flatMap((i) => [`out:out${i}`, `err:err${i}`]),
    );
    // Each line says when it was captured (the time its record has in the logs stream): in order.
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.t >= got[i - 1]!.t);
  },
);

test("LogTailer.captureTime: a line's time is the tick that read it; unread lines are newest; old marks give an upper bound", () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-capture-'));
  const file = join(dir, 'stdout.log');
  writeFileSync(file, 'a\n');
  let clock = 1_000;
  const tailer = new LogTailer({ dir, spool: new MemorySpool(), now: () => clock });
  try {
    tailer.add({ process: 'p', stream: 'stdout', path: file });
    assert.equal(tailer.captureTime(file, 2), Infinity, 'not read yet');
    tailer.tick();
    assert.equal(tailer.captureTime(file, 2), 1_000);
    appendFileSync(file, 'bb\n');
    assert.equal(tailer.captureTime(file, 5), Infinity);
    clock = 1_200;
    tailer.tick();
    assert.deepEqual([tailer.captureTime(file, 2), tailer.captureTime(file, 5)], [1_000, 1_200]);
    assert.equal(tailer.captureTime(join(dir, 'other.log'), 2), undefined);
    // Past 2,048 reads the oldest marks go: their lines get the newest let-go mark's time.
    for (let i = 0; i < 2_100; i++) {
      clock += 200;
      appendFileSync(file, 'c\n');
      tailer.tick();
    }
    const first = tailer.captureTime(file, 2)!;
    assert.ok(first > 1_000 && first < 1_200 + 200 * 60, `upper bound ${first}`);
    assert.equal(tailer.captureTime(file, 5 + 2 * 2_100), clock);
    // A file started over forgets its marks.
    tailer.reset(file);
    assert.equal(tailer.captureTime(file, 2), Infinity);
  } finally {
    tailer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
