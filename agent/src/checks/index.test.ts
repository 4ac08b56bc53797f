// Proves when the agent runs its service checks: a check a push adds runs at once (not after its
// first interval), then on its interval; a push that leaves a check as it was keeps its timer (a
// reconnect's push runs nothing again); an edited check runs at once with its new target; a removed
// one stops; checks read back from disk at start are spread over the first seconds.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { CheckSpec } from '@keel/shared';
import { checksCapability } from './index.ts';

const ID_A = '0000aaaa-0000-4000-8000-000000000001';
const ID_B = '0000bbbb-0000-4000-8000-000000000002';
const tcp = (id: string, port: number, intervalSeconds = 60): CheckSpec => ({
  id,
  kind: 'tcp',
  intervalSeconds,
  timeoutMs: 1_000,
  target: { host: '127.0.0.1', port },
});

/** The capability with a probe that records what it ran, its timers mocked. */
function setUp(t: TestContext) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000_000 });
  const dir = mkdtempSync(join(tmpdir(), 'keel-checks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ran: string[] = [];
  const appended: string[] = [];
  const make = () =>
    checksCapability({
      dir,
      probe: async (spec, now) => {
        ran.push(`${spec.id.slice(4, 8)}:${(spec.target as { port: number }).port}`);
        return { checkId: spec.id, t: (now ?? Date.now)(), ok: true, latencyMs: 1 };
      },
    });
  const start = (cap: ReturnType<typeof make>) => {
    cap.start!({
      log: { info: () => {}, error: (o: unknown) => assert.fail(String(o)) } as never,
      emit: () => {},
      send: () => {},
      onSession: () => {},
      stream: () =>
        ({
          append: (records: { payload: Buffer }[]) =>
            appended.push(
              ...records.map((r) => (JSON.parse(r.payload.toString()) as { checkId: string }).checkId),
            ),
        }) as never,
    });
    return cap;
  };
  let generation = 0;
  const apply = async (cap: ReturnType<typeof make>, checks: CheckSpec[], same = false) => {
    if (!same) generation++;
    await cap.requests!['checks.apply']!({ generation, checks }, {} as never);
  };
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
  };
  return { make, start, apply, settle, ran, appended };
}

test('a pushed check runs at once, then every interval; an unchanged push restarts nothing', async (t) => {
  const { make, start, apply, settle, ran, appended } = setUp(t);
  const cap = start(make());
  t.after(() => cap.stop?.());
  await apply(cap, [tcp(ID_A, 1001)]);
  t.mock.timers.tick(0);
  await settle();
  assert.deepEqual(ran, ['aaaa:1001'], 'the new check ran without waiting for its interval');
  assert.deepEqual(appended, [ID_A], 'its result went to the checks stream');

  // The same set again (a reconnect's push), 30 s later: no extra run, the 60 s rhythm holds.
  t.mock.timers.tick(30_000);
  await apply(cap, [tcp(ID_A, 1001)], true);
  t.mock.timers.tick(0);
  await settle();
  assert.deepEqual(ran, ['aaaa:1001']);
  t.mock.timers.tick(30_000);
  await settle();
  assert.deepEqual(ran, ['aaaa:1001', 'aaaa:1001'], 'the second run came one interval after the first');

  // A second check added: it runs at once, the first does not run again.
  await apply(cap, [tcp(ID_A, 1001), tcp(ID_B, 2002)]);
  t.mock.timers.tick(0);
  await settle();
  assert.deepEqual(ran.slice(2), ['bbbb:2002']);

  // The first check edited (a new port): it runs at once with the new target.
  await apply(cap, [tcp(ID_A, 1003), tcp(ID_B, 2002)]);
  t.mock.timers.tick(0);
  await settle();
  assert.deepEqual(ran.slice(3), ['aaaa:1003']);

  // The second removed: it never runs again; the first keeps its interval.
  await apply(cap, [tcp(ID_A, 1003)]);
  t.mock.timers.tick(60_000);
  await settle();
  assert.deepEqual(ran.slice(4), ['aaaa:1003']);
});

test('checks read back at start are spread over the first seconds, not all at once', async (t) => {
  const { make, start, apply, settle, ran } = setUp(t);
  const first = start(make());
  await apply(first, [tcp(ID_A, 1001, 5), tcp(ID_B, 2002, 5)]);
  t.mock.timers.tick(0);
  await settle();
  first.stop?.();
  ran.length = 0;

  // A restarted agent: the same set from checks.json, each at its own offset (by id) within 5 s.
  const again = start(make());
  t.after(() => again.stop?.());
  t.mock.timers.tick(0);
  await settle();
  const offsetA = parseInt(ID_A.slice(0, 8), 16) % 5_000;
  const offsetB = parseInt(ID_B.slice(0, 8), 16) % 5_000;
  assert.ok(offsetA > 0 && offsetB > 0 && offsetA !== offsetB);
  assert.deepEqual(ran, [], 'nothing ran before its offset');
  t.mock.timers.tick(Math.max(offsetA, offsetB));
  await settle();
  assert.deepEqual([...ran].sort(), ['aaaa:1001', 'bbbb:2002']);
});
