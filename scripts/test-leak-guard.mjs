// Imported last by every test process of scripts/test.mjs, so its root after() hook runs after
// every test file's own. node:test (Node 20) prints its summary, and lets the process exit, only
// once the event loop is empty: one handle that a test or the code under test leaked (a timer, a
// socket) held a whole batch until the runner's 15-minute hang guard. Here a process still alive
// 30 s after the last after() hook writes what is still active to its events file and exits; the
// runner then counts the tests from their own records and prints the leak, to be fixed where it
// is made. A process with nothing left never waits for this timer (it is unref'd).
import { appendFileSync } from 'node:fs';
import { after } from 'node:test';

const events = process.env.KEEL_TEST_EVENTS_FILE;
const graceMs = Number(process.env.KEEL_TEST_LEAK_GRACE_MS) || 30_000;

after(() => {
  setTimeout(() => {
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap');
    try {
      if (events) appendFileSync(events, `${JSON.stringify({ kind: 'left', resources: left })}\n`);
    } finally {
      process.exit(0);
    }
  }, graceMs).unref();
});
