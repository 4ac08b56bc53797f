// Proves the keeper adds nothing to a program's output: a program ended by a stop's signal
// (SIGTERM, SIGUSR1, SIGQUIT) leaves in its stderr log only what it wrote itself — dash, which the
// keeper runs as, reports a foreground child killed by a signal ("Terminated") on its stderr —
// while its end (the signal) is still reported, and a program that cannot be run still says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { decodeLogLine, processSpecSchema, type StreamRecord } from '@keel/shared';
import { LogTailer } from './log-tail.ts';
import { Supervisor } from './supervisor.ts';

const log = pino({ level: 'silent' });

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function setup(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'keel-keeper-'));
  const records: StreamRecord[] = [];
  const spool = {
    get lastSeq() {
      return records.length;
    },
    append(rs: readonly StreamRecord[]) {
      const firstSeq = records.length + 1;
      records.push(...rs);
      return { firstSeq, lastSeq: records.length };
    },
  };
  const tailer = new LogTailer({ dir, spool });
  const sup = new Supervisor({ dir, tailer, log });
  t.after(() => {
    sup.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const stderrLines = (name: string) =>
    records
      .map((r) => decodeLogLine(r.payload)!)
      .filter((l) => l.process === name && l.stream === 'stderr')
      .map((l) => Buffer.from(l.line).toString('utf8'));
  return { dir, sup, tailer, stderrLines };
}

for (const signal of ['SIGTERM', 'SIGUSR1', 'SIGQUIT'] as const) {
  test(
    `a program ended by a stop's ${signal} has only its own words in its stderr log`,
    { timeout: 30_000 },
    async (t) => {
      const { dir, sup, tailer, stderrLines } = setup(t);
      const name = `p-${signal.toLowerCase()}`;
      await sup.apply(
        processSpecSchema.parse({
          name,
          // Prints one line to each stream, then waits to be stopped (exec: the signal ends sleep itself).
          argv: ['sh', '-c', 'echo out-line; echo err-line >&2; exec sleep 600'],
          restart: { policy: 'never' },
          stop: { signal, graceMs: 10_000 },
        }),
      );
      const stderrLog = join(dir, name, 'stderr.log');
      await until('the program wrote its line', () => readFileSync(stderrLog, 'utf8') === 'err-line\n');
      const st = await sup.stop(name);
      assert.equal(st.state, 'stopped');
      assert.equal(st.exitSignal, signal, 'the end is still reported');
      tailer.tick(true);
      assert.equal(
        readFileSync(stderrLog, 'utf8'),
        'err-line\n',
        'the file holds only what the program wrote',
      );
      assert.deepEqual(stderrLines(name), ['err-line'], 'and so do the stored lines');
      assert.equal(readFileSync(join(dir, name, 'stdout.log'), 'utf8'), 'out-line\n');
    },
  );
}

test('a program that cannot be run says why in its stderr log (exit 127)', { timeout: 30_000 }, async (t) => {
  const { dir, sup } = setup(t);
  await sup.apply(
    processSpecSchema.parse({
      name: 'missing',
      argv: ['/nonexistent/prog', 'a'],
      restart: { policy: 'never' },
    }),
  );
  await until('it exited', () => sup.status('missing').state === 'exited');
  assert.equal(sup.status('missing').exitCode, 127);
  assert.match(readFileSync(join(dir, 'missing', 'stderr.log'), 'utf8'), /\/nonexistent\/prog: not found/);
});
