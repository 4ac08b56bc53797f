// Proves the live output channel's backpressure: a reader slower than the writer gets a
// `{"skipped":bytes}` marker and then whole lines of the newest output, in order, and what waits
// for it never grows past one read (memory stays flat however far the writer runs ahead).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChannelPort } from '../channels/hub.ts';
import { liveTail } from './index.ts';

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
