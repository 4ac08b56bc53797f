// Imported last by every test process of scripts/test.mjs, so its root after() hook runs after
// every test file's own. node:test (Node 20) prints its summary, and lets the process exit, only
// once the event loop is empty: one handle that a test or the code under test leaked (a timer, a
// socket) held a whole batch until the runner's 15-minute hang guard. Here a process still alive
// 30 s after the last after() hook writes what is still active to its events file and exits; the
// runner then counts the tests from their own records and prints the leak, to be fixed where it
// is made. A process with nothing left never waits for this timer (it is unref'd).
//
// A timer left is also named by where its callback is defined (file:line:column, which the
// runner maps back to the `.ts` source, and the callback's first characters): found then, in
// this process's heap through the inspector (every Timeout object, kept if still pending and
// ref'd), so it costs nothing until a leak. A leak that shows only in some runs (a race) is named
// in the run where it shows.
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after } from 'node:test';

const events = process.env.KEEL_TEST_EVENTS_FILE;
const graceMs = Number(process.env.KEEL_TEST_LEAK_GRACE_MS) || 30_000;

/** Where the callbacks of the ref'd timers still pending are defined (the inspector answers synchronously). */
function pendingTimers() {
  const found = [];
  const probe = setTimeout(() => {}, 1);
  clearTimeout(probe);
  globalThis.__keelTimeoutPrototype = Object.getPrototypeOf(probe);
  let session;
  try {
    // Loaded here: a Node built without the inspector still runs the guard.
    const { Session } = createRequire(import.meta.url)('node:inspector');
    session = new Session();
    session.connect();
  } catch (error) {
    return [`(timers not found: ${error.message})`];
  }
  const scripts = new Map();
  session.on('Debugger.scriptParsed', ({ params }) => scripts.set(params.scriptId, params.url));
  const post = (method, params) => {
    let answer;
    session.post(method, params, (error, result) => {
      if (error) throw error;
      answer = result;
    });
    return answer;
  };
  try {
    post('Debugger.enable', {});
    const proto = post('Runtime.evaluate', { expression: 'globalThis.__keelTimeoutPrototype' });
    const all = post('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId });
    const live = post('Runtime.callFunctionOn', {
      objectId: all.objects.objectId,
      functionDeclaration:
        'function () { return this.filter((t) => !t._destroyed && t.hasRef()).map((t) => t._onTimeout); }',
    });
    for (const item of post('Runtime.getProperties', { objectId: live.result.objectId, ownProperties: true })
      .result) {
      if (!/^\d+$/.test(item.name)) continue;
      const fn = post('Runtime.getProperties', { objectId: item.value.objectId, ownProperties: true });
      const at = fn.internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value;
      const where = at
        ? `${scripts.get(at.scriptId) ?? '?'}:${at.lineNumber + 1}:${at.columnNumber + 1}`
        : '?';
      found.push(`${where} ${String(item.value.description).replace(/\s+/g, ' ').slice(0, 100)}`);
    }
  } catch (error) {
    found.push(`(timers not found: ${error.message})`);
  } finally {
    session.disconnect();
  }
  return found;
}

after(() => {
  setTimeout(() => {
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap');
    try {
      const timers = left.includes('Timeout') ? pendingTimers() : [];
      if (events) appendFileSync(events, `${JSON.stringify({ kind: 'left', resources: left, timers })}\n`);
    } finally {
      process.exit(0);
    }
  }, graceMs).unref();
});
