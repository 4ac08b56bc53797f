// Proves a recording's end reason reads in plain words in the console (the stored/API text
// unchanged): a session closed in the browser, idle and restart ends, the size-cap note kept, and
// reasons it does not know shown as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEndReason } from './end-reason.ts';

test('end reasons read in plain words; unknown ones as stored; the size-cap note is kept', () => {
  assert.equal(
    describeEndReason('client closed the channel'),
    'closed in the browser (or its connection dropped)',
  );
  assert.equal(describeEndReason('idle timeout'), 'closed after being idle too long');
  assert.equal(
    describeEndReason('client closed the channel (the recording stopped at its size cap)'),
    'closed in the browser (or its connection dropped) (the recording stopped at its size cap)',
  );
  assert.equal(
    describeEndReason('terminal.open was withdrawn from this user'),
    'terminal.open was withdrawn from this user',
  );
  assert.equal(describeEndReason(null), '—');
  assert.equal(describeEndReason(''), '—');
});
