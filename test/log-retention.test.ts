// Proves per-process log retention on the real chunk storage: limits are set per process through
// the API (operator; audited; a viewer may read but not set them) with documented defaults; one
// run of the job deletes a chunk whose every line expired, rewrites a chunk shared with a process
// that keeps its lines (the expired records become tombstones: reads skip them and sequence
// numbers stay), keeps only the newest bytes of a process over its size limit (to the chunk), never
// touches chunks written in the last minutes, and the stream keeps accepting appends afterwards;
// one run summarises every chunk stored since the last, however many (a fast host's size limit).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { createLogRetentionRepository } from '../controller/src/repositories/log-retention.ts';
import { createProcessRepository } from '../controller/src/repositories/processes.ts';
import { createStreamRepository } from '../controller/src/repositories/streams.ts';
import { createLogRetentionService, logRetentionFromEnv } from '../controller/src/services/log-retention.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 30, 0, 0, 0);
let t: TestApp;
let operator: SignedIn;
let viewer: SignedIn;
let hostId: string;
let seq = 1;

async function append(lines: { process: string; text: string; ts: number }[]) {
  const body = encodeRecords(
    lines.map((l) => ({
      ts: l.ts,
      payload: encodeLogLine({
        process: l.process,
        stream: 'stdout',
        line: Buffer.from(l.text),
        continued: false,
      }),
    })),
  );
  await createStreamRepository(t.db).append(hostId, 'logs', { firstSeq: seq, count: lines.length, body });
  seq += lines.length;
}

async function lines(process: string): Promise<string[]> {
  const page = await createProcessRepository(t.db, createStreamRepository(t.db)).readLogs(hostId, process, {
    afterSeq: 0,
    limit: 10_000,
  });
  return page.lines.map((l) => l.text);
}

/** The retention job at NOW, with a 30-day, 1 GiB default. */
function retentionJob(repo: ReturnType<typeof createLogRetentionRepository>) {
  return createLogRetentionService({
    retention: repo,
    hosts: createHostRepository(t.db),
    audit: t.services.audit,
    log: pino({ level: 'silent' }),
    defaults: { maxAgeDays: 30, maxBytes: 1024 ** 3, intervalMs: 600_000 },
    now: () => NOW,
  });
}

before(async () => {
  t = await openTestApp();
  operator = await t.signInAs('operator');
  viewer = await t.signInAs('viewer');
  const [row] = await t.db
    .insert(hosts)
    .values({ name: 'retention-host', publicKey: randomBytes(32).toString('base64url') })
    .returning({ id: hosts.id });
  hostId = row!.id;
});
after(async () => t?.close());

test('defaults come from the environment, with documented fallbacks', { timeout: 10_000 }, () => {
  assert.deepEqual(logRetentionFromEnv({}), { maxAgeDays: 30, maxBytes: 1024 ** 3, intervalMs: 600_000 });
  assert.deepEqual(
    logRetentionFromEnv({
      KEEL_LOG_RETENTION_DAYS: '7',
      KEEL_LOG_RETENTION_BYTES: '1048576',
      KEEL_LOG_RETENTION_INTERVAL_SECONDS: '60',
    }),
    { maxAgeDays: 7, maxBytes: 1_048_576, intervalMs: 60_000 },
  );
  assert.equal(
    logRetentionFromEnv({ KEEL_LOG_RETENTION_DAYS: 'soon' }).maxAgeDays,
    30,
    'nonsense: the default',
  );
});

test(
  'limits per process through the API: an operator sets them, a viewer reads them',
  { timeout: 30_000 },
  async () => {
    const path = `/api/v1/hosts/${hostId}/processes/keep/log-retention`;
    let res = await t.request(path, {
      method: 'PUT',
      json: { maxAgeDays: 60, maxBytes: null },
      as: operator,
    });
    assert.equal(res.status, 200, await res.clone().text());
    res = await t.request(`/api/v1/hosts/${hostId}/processes/big/log-retention`, {
      method: 'PUT',
      json: { maxAgeDays: null, maxBytes: 4096 },
      as: operator,
    });
    assert.equal(res.status, 200);
    res = await t.request(path, { as: viewer });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { set: { maxAgeDays: number }; effective: { maxBytes: number } };
    assert.equal(body.set.maxAgeDays, 60);
    assert.equal(body.effective.maxBytes, t.services.logRetention.defaults.maxBytes);
    res = await t.request(path, { method: 'PUT', json: { maxAgeDays: 1, maxBytes: null }, as: viewer });
    assert.equal(res.status, 403);
    res = await t.request(path, { method: 'PUT', json: { maxAgeDays: 0, maxBytes: null }, as: operator });
    assert.equal(res.status, 400);
  },
);

test(
  'one run deletes, rewrites and trims by age and size; recent chunks stay',
  { timeout: 60_000 },
  async () => {
    // A chunk shared by `old` (default 30 days) and `keep` (60 days), 40 days old: rewritten.
    await append([
      { process: 'old', text: 'old 1', ts: NOW - 40 * DAY },
      { process: 'keep', text: 'keep 1', ts: NOW - 40 * DAY },
      { process: 'old', text: 'old 2', ts: NOW - 40 * DAY },
      { process: 'keep', text: 'keep 2', ts: NOW - 40 * DAY },
    ]);
    // A chunk of `old` alone, 35 days old: deleted.
    await append([
      { process: 'old', text: 'old 3', ts: NOW - 35 * DAY },
      { process: 'old', text: 'old 4', ts: NOW - 35 * DAY },
    ]);
    // `big` keeps its newest 4096 bytes: five chunks of 2,000 bytes, a day old.
    for (let i = 0; i < 5; i++) {
      await append([
        { process: 'big', text: `${i}a`.padEnd(1000, '.'), ts: NOW - DAY + i },
        { process: 'big', text: `${i}b`.padEnd(1000, '.'), ts: NOW - DAY + i },
      ]);
    }
    // A chunk from a minute ago holding a line older than any limit: left alone (resend window).
    await append([
      { process: 'old', text: 'old but in a fresh chunk', ts: NOW - 100 * DAY },
      { process: 'old', text: 'old 5', ts: NOW - 60_000 },
    ]);

    const retention = retentionJob(createLogRetentionRepository(t.db));
    const run = await retention.run();
    assert.equal(run.deletedChunks, 1 + 2, 'the old-only chunk and the two oldest chunks of big');
    assert.equal(run.rewrittenChunks, 1);
    assert.equal(run.removedLines, 2);

    assert.deepEqual(await lines('keep'), ['keep 1', 'keep 2']);
    assert.deepEqual(await lines('old'), ['old but in a fresh chunk', 'old 5']);
    assert.deepEqual(
      (await lines('big')).map((l) => l.slice(0, 2)),
      ['2a', '2b', '3a', '3b', '4a', '4b'],
      'the newest 4096 bytes, to the chunk',
    );
    // A second run has nothing left to do.
    const again = await retention.run();
    assert.deepEqual([again.deletedChunks, again.rewrittenChunks], [0, 0]);
    // The stream goes on: the next batch is stored after the cursor as before.
    await append([{ process: 'keep', text: 'keep 3', ts: NOW }]);
    assert.deepEqual(await lines('keep'), ['keep 1', 'keep 2', 'keep 3']);
  },
);

test(
  'one run summarises every chunk stored since the last (600 here): a size limit holds for a host that logs fast',
  { timeout: 120_000 },
  async () => {
    const [row] = await t.db
      .insert(hosts)
      .values({ name: 'retention-fast-host', publicKey: randomBytes(32).toString('base64url') })
      .returning({ id: hosts.id });
    const fastHost = row!.id;
    const streams = createStreamRepository(t.db);
    // 600 chunks of `flood` (two 1,000-byte lines each), a day old; its limit is 4096 bytes.
    const CHUNKS = 600;
    for (let i = 0; i < CHUNKS; i++) {
      const body = encodeRecords(
        ['a', 'b'].map((half) => ({
          ts: NOW - DAY + i,
          payload: encodeLogLine({
            process: 'flood',
            stream: 'stdout',
            line: Buffer.from(`${i}${half}`.padEnd(1000, '.')),
            continued: false,
          }),
        })),
      );
      await streams.append(fastHost, 'logs', { firstSeq: 2 * i + 1, count: 2, body });
    }
    const repo = createLogRetentionRepository(t.db);
    await repo.set(fastHost, 'flood', { maxAgeDays: null, maxBytes: 4096 });
    const retention = retentionJob(repo);
    const run = await retention.run();
    assert.ok(run.summarised >= CHUNKS, `summarised ${run.summarised}`);
    assert.equal(run.deletedChunks, CHUNKS - 3, 'all but the newest 4096 bytes, to the chunk');
    const page = await createProcessRepository(t.db, streams).readLogs(fastHost, 'flood', {
      afterSeq: 0,
      limit: 10_000,
    });
    assert.deepEqual(
      page.lines.map((l) => l.text.slice(0, 4)),
      ['597a', '597b', '598a', '598b', '599a', '599b'],
    );
  },
);
