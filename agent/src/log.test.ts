// Proves the agent's logger writes the very lines pino writes with the shared log format (the calls
// the agent makes: message only, fields and message, errors under `err` with code and cause, an
// Error as the only argument, child bindings, levels below the threshold left out).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { logFormat } from '@keel/shared';
import { createLog } from './log.ts';

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
