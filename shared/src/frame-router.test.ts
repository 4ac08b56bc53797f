// Proves the frame registry dispatches by type, refuses a second handler for one type and reports
// a frame with no handler (the link ends close the session on it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameRouter } from './frame-router.ts';

test('dispatches by type, one handler per type, false for an unregistered type', () => {
  const router = new FrameRouter<string>();
  const seen: string[] = [];
  router.register('stream.ack', (frame, _body, ctx) => seen.push(`${ctx}:${frame.stream}:${frame.seq}`));
  assert.throws(() => router.register('stream.ack', () => {}), /already has a handler/);
  assert.equal(router.dispatch({ type: 'stream.ack', stream: 'events', seq: 3 }, Buffer.alloc(0), 'a'), true);
  assert.deepEqual(seen, ['a:events:3']);
  assert.equal(router.dispatch({ type: 'enrolled', hostId: 'x' }, Buffer.alloc(0), 'a'), false);
  assert.deepEqual(router.types, ['stream.ack']);
  assert.equal(router.has('stream.ack'), true);
});
