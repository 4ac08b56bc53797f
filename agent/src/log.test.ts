// Proves the agent's logger writes the very lines pino writes with the shared log format (the calls
// the agent makes: message only, fields and message, errors under `err` with code and cause, an
// Error as the only argument, child bindings, levels below the threshold left out).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { logFormat } from '@keel/shared';
import { createLog, STDOUT_QUEUE_BYTES } from './log.ts';
import { tsLoader } from '../../scripts/test-loader-url.mjs';

const repoRoot = join(import.meta.dirname, '../..');

// Made once, so that both loggers see the same stacks.
const coded = Object.assign(new TypeError('bad value'), { code: 'E_BAD' });
const caused = new Error('apply failed', { cause: new Error('nginx -t exited 1') });

function calls(log: pino.Logger): void {
  log.info('connected');
  log.info({ host: 'h-1', n: 3, nested: { a: [1, 'x"y\n'], u: undefined }, f: () => 1 }, 'with fields');
  const child = log.child({ capability: 'configs' });
  child.warn({ err: coded, instance: 'edge' }, 'could not apply');
  child.error(coded);
  child.error(caused, 'with a message');
  child.error({ err: caused }, 'caused');
  child.debug('below the level');
  log.warn({ err: 'a string' }, 'not an error');
  log.info({ msg: 'from the object' });
  log.error({ code: 'agent.x', reason: 'it "broke"' }, 'quotes and unicode — ✓');
  log.child({ channel: 'c1' }).child({ kind: 'echo' }).info('nested child');
}

const normalize = (text: string) => text.replace(/"time":"[^"]+"/g, '"time":"T"');

test('the agent logger writes what pino writes', () => {
  let fromPino = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      fromPino += chunk.toString();
      done();
    },
  });
  calls(pino({ name: 'keel-agent', level: 'info', ...logFormat }, sink));
  let ours = '';
  calls(createLog({ name: 'keel-agent', level: 'info', ...logFormat, write: (line) => (ours += line) }));
  assert.ok(fromPino.split('\n').length > 10);
  assert.equal(normalize(ours), normalize(fromPino));
});

test('levels: threshold, silent, changed at run time, isLevelEnabled', () => {
  const lines: string[] = [];
  const log = createLog({ level: 'warn', ...logFormat, write: (l) => lines.push(l) });
  log.info('no');
  log.warn('yes');
  assert.equal(log.isLevelEnabled('info'), false);
  log.level = 'debug';
  log.debug('now yes');
  assert.equal(log.level, 'debug');
  log.level = 'silent';
  log.fatal('never');
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['yes', 'now yes'],
  );
});

test('a full stdout never holds the logger up: lines beyond the queue are dropped and counted', async () => {
  // A child logs 2,000 lines of ~1 KiB to a pipe its parent does not read (a stuck journald, a busy
  // test reader). pino, and this logger before, waited up to 1 s per line (and on an inherited
  // blocking pipe until the reader read). Now every call returns at once; what fits in the pipe and
  // the queue (STDOUT_QUEUE_BYTES) comes out whole and in order once the parent reads, then one
  // line says how many were dropped.
  const child = spawn(
    process.execPath,
    [
      '--import',
      tsLoader,
      '--input-type=module',
      '-e',
      `
      const { createLog } = await import(${JSON.stringify(join(import.meta.dirname, 'log.ts'))});
      const { logFormat } = await import('@keel/shared');
      const log = createLog({ name: 'keel-agent', level: 'info', ...logFormat });
      const pad = 'x'.repeat(1000);
      let worst = 0;
      const t0 = performance.now();
      for (let i = 0; i < 2000; i++) {
        const s = performance.now();
        log.info({ i, pad }, 'line');
        worst = Math.max(worst, performance.now() - s);
      }
      process.stderr.write(JSON.stringify({ worst, total: performance.now() - t0 }) + '\\n');
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));
      `,
    ],
    { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  child.stdout.pause();
  try {
    let err = '';
    const timing = await new Promise<{ worst: number; total: number }>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const line = err.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line) as { worst: number; total: number });
      });
      child.once('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    // The old logger: >= 1 s for the first line that met a full pipe (or never, on a blocking one),
    // and so >= 1 s a line for the ~1,900 lines after it. The bounds leave room for a scheduler or
    // GC pause on a loaded machine (one call took 142 ms with six test files on two cores) and
    // still fail that logger.
    assert.ok(timing.worst < 750, `slowest log call ${timing.worst.toFixed(1)} ms`);
    assert.ok(timing.total < 15_000, `2,000 calls took ${timing.total.toFixed(0)} ms`);
    // Now read: the held-back lines drain, then the marker.
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no drop marker in ${out.length} bytes`)), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('log lines were dropped')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stdout.resume();
    });
    child.stdin.end();
    await new Promise((r) => child.once('exit', r));
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { i?: number; msg: string; dropped?: number; level: string });
    const kept = lines.filter((l) => l.msg === 'line').map((l) => l.i);
    const marker = lines.at(-1)!;
    assert.equal(marker.level, 'warn');
    assert.equal(marker.msg, `stdout was full: ${marker.dropped} log lines were dropped`);
    // Whole lines, in order, from the first: nothing cut, nothing reordered.
    assert.deepEqual(
      kept,
      kept.map((_, n) => n),
    );
    assert.equal(kept.length + marker.dropped!, 2000);
    assert.ok(marker.dropped! > 0, 'the pipe and the queue could not hold 2 MB');
    // The queue was used (more came out than a pipe holds alone).
    assert.ok(kept.length * 1050 > STDOUT_QUEUE_BYTES, `${kept.length} lines kept`);
  } finally {
    child.kill('SIGKILL');
  }
});
