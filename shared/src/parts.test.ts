// Proves the gathering of large params/results from parts: a value split by partsOf comes back
// byte for byte; a part out of order or past the declared size is refused; declared sizes count
// against every budget (per session and per process) and are released when done or dropped; a
// value over MAX_PAYLOAD_BYTES is refused up front; a header with `size` and a part frame decode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame, encodeFrame } from './codec.ts';
import { MAX_PAYLOAD_BYTES, PartAssembler, PartBudget, partBytesFor, partsOf } from './parts.ts';

test('a value split into parts is gathered back whole', { timeout: 10_000 }, () => {
  const json = Buffer.from(JSON.stringify({ users: Array.from({ length: 5000 }, (_, i) => `u${i}`) }));
  const budget = new PartBudget(1 << 20);
  const g = new PartAssembler(budget);
  assert.ok(g.begin('r1', json.length));
  assert.equal(budget.used, json.length);
  let done: Buffer | null = null;
  let n = 0;
  for (const { frame, body } of partsOf('r1', json, 4096)) {
    n++;
    const out = g.add(frame.id, frame.offset, body);
    if (out.kind === 'done') done = out.json;
    else assert.equal(out.kind, 'more');
  }
  assert.ok(n > 1);
  assert.deepEqual(done, json);
  assert.equal(budget.used, 0, 'released once whole');
});

test('out of order, past the size or unknown parts are refused', { timeout: 10_000 }, () => {
  const g = new PartAssembler(new PartBudget(1 << 20));
  assert.ok(g.begin('a', 10));
  assert.equal(g.add('a', 5, Buffer.alloc(5)).kind, 'bad');
  assert.equal(g.add('a', 0, Buffer.alloc(5)).kind, 'unknown', 'a bad part ends the value');
  assert.ok(g.begin('b', 10));
  assert.equal(g.add('b', 0, Buffer.alloc(11)).kind, 'bad');
  assert.equal(g.add('zzz', 0, Buffer.alloc(1)).kind, 'unknown');
});

test('budgets bound what is gathered at once', { timeout: 10_000 }, () => {
  const perProcess = new PartBudget(100);
  const one = new PartAssembler(new PartBudget(60), perProcess);
  const two = new PartAssembler(new PartBudget(60), perProcess);
  assert.ok(one.begin('a', 60));
  assert.equal(one.begin('b', 1), false, 'the session budget is full');
  assert.ok(two.begin('c', 40));
  assert.equal(two.begin('d', 1), false, 'the process budget is full');
  one.dropAll();
  assert.equal(perProcess.used, 40);
  assert.ok(two.begin('d', 20));
  assert.equal(new PartAssembler(new PartBudget(Infinity)).begin('x', MAX_PAYLOAD_BYTES + 1), false);
  assert.equal(partBytesFor(65_536), 32_768);
  assert.equal(partBytesFor(4 << 20), 256 * 1024);
});

test('headers with size and part frames pass the codec', { timeout: 10_000 }, () => {
  const req = decodeFrame(
    encodeFrame({ type: 'req', id: 'r', method: 'config.apply', timeoutMs: 1000, params: null, size: 5 }),
  );
  assert.ok(req.ok && req.value.frame.type === 'req' && req.value.frame.size === 5);
  const part = decodeFrame(encodeFrame({ type: 'part', id: 'r', offset: 0 }, Buffer.from('[1,2]')));
  assert.ok(part.ok);
  assert.equal(part.value.body.toString(), '[1,2]');
  const tooBig = decodeFrame(
    encodeFrame({ type: 'res', id: 'r', ok: true, result: null, size: MAX_PAYLOAD_BYTES + 1 }),
  );
  assert.equal(tooBig.ok, false);
});
