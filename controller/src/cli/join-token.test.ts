// Proves `keel-controller join-token`: the secret alone on stdout, defaults of one use, limits
// checked before the database is opened, and the system actor `cli` recorded as the maker.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { joinTokenCommand } from './join-token.ts';

function sink() {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

function maker() {
  const calls: unknown[][] = [];
  let opened = 0;
  const service = {
    create: (input: unknown, actor: unknown) => {
      calls.push([input, actor]);
      return Promise.resolve({
        secret: 'kjt_secret',
        token: {},
        command: '',
        enrollCommand: '',
        requirements: '',
      });
    },
  } as unknown as Parameters<typeof joinTokenCommand>[1]['joinTokens'];
  return {
    calls,
    opened: () => opened,
    open: () => {
      opened++;
      return Promise.resolve(service as never);
    },
  };
}

test('prints only the secret; one use by default; made by the cli actor', async () => {
  const out = sink();
  const m = maker();
  assert.equal(await joinTokenCommand([], { joinTokens: m.open, stdout: out.stream }), 0);
  assert.equal(out.text(), 'kjt_secret\n');
  assert.deepEqual(m.calls, [
    [
      { uses: 1, ttlSeconds: undefined, note: 'keel-controller join-token' },
      { id: 'cli', ip: null },
    ],
  ]);
  await joinTokenCommand(['--uses', '3', '--ttl', '600', '--note', 'rack 2'], {
    joinTokens: m.open,
    stdout: out.stream,
  });
  assert.deepEqual(m.calls[1]![0], { uses: 3, ttlSeconds: 600, note: 'rack 2' });
});

test('bad values are usage errors (exit 2) and never open the database', async () => {
  for (const args of [['--uses', '0'], ['--uses', 'x'], ['--ttl', '5'], ['--bogus']]) {
    const err = sink();
    const m = maker();
    assert.equal(await joinTokenCommand(args, { joinTokens: m.open, stderr: err.stream }), 2, args.join(' '));
    assert.match(err.text(), /^keel-controller join-token: .*\(see keel-controller join-token --help\)\n$/);
    assert.equal(m.opened(), 0);
  }
});
