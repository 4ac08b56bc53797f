// Proves host facts accept real-world text and refuse what PostgreSQL cannot store as jsonb
// (NUL, unpaired surrogates), so one agent's facts cannot fail a batch written for many hosts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostFactsSchema } from './facts.ts';
import { sampleFacts } from '../../../test/helpers/facts.ts';

test('facts with ordinary and non-ASCII text pass', () => {
  assert.ok(hostFactsSchema.safeParse({ ...sampleFacts, hostname: 'сервер-1.例え.jp 🚀' }).success);
});

test('NUL and unpaired surrogates are refused', () => {
  for (const hostname of ['x\u0000y', 'x\ud800y', 'x\udc00', '\ud83d']) {
    assert.equal(
      hostFactsSchema.safeParse({ ...sampleFacts, hostname }).success,
      false,
      JSON.stringify(hostname),
    );
  }
  assert.equal(
    hostFactsSchema.safeParse({ ...sampleFacts, disks: [{ ...sampleFacts.disks[0]!, mount: '/a\u0000' }] })
      .success,
    false,
  );
});
