// Proves that a process event stored without its audit row (the controller gone, or the append
// failing, between the two writes) is not acked, and gets its row exactly once when the agent
// resends the batch, to the same controller or to a restarted one, with the hash chain intact.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { encodeRecords, type RecordBatch } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { hosts as hostsTable } from '../db/schema/hosts.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { chunkSink, StreamSinks } from '../gateway/sinks.ts';
import { createAuditRepository } from '../repositories/audit.ts';
import { createStreamRepository } from '../repositories/streams.ts';
import { createAuditService, type AuditService } from './audit.ts';
import { processEventsAuditor } from './process-audit.ts';

const log = pino({ level: 'silent' });
const T0 = Date.UTC(2030, 0, 1);

/** Host events `firstSeq..` as the agent sends them on its `events` stream. */
function events(firstSeq: number, payloads: Record<string, unknown>[]): RecordBatch {
  return {
    firstSeq,
    count: payloads.length,
    body: encodeRecords(
      payloads.map((p, i) => ({ ts: T0 + (firstSeq + i) * 1000, payload: Buffer.from(JSON.stringify(p)) })),
    ),
  };
}

const BATCH = events(1, [
  { kind: 'process.started', process: 'web', pid: 100 },
  { kind: 'host.online' }, // not a process event: no row
  { kind: 'process.exited', process: 'web', code: 7 },
  { kind: 'process.restarting', process: 'web', attempt: 1 },
]);

/**
 * One controller run: its audit service (the real one, on the shared database) with an injected
 * failure at the `failAt`-th append of this run — the point where a kill -9 would have stopped it —
 * and the events sink with the auditor as the server wires them.
 */
function controllerRun(db: Db, failAt?: number) {
  const real = createAuditService({ audit: createAuditRepository(db), log });
  let appends = 0;
  const audit: AuditService = {
    ...real,
    record: (...args: Parameters<AuditService['record']>) => {
      appends++;
      if (appends === failAt) return Promise.reject(new Error('injected: gone before the audit append'));
      return real.record(...args);
    },
  };
  const streams = createStreamRepository(db);
  const sinks = new StreamSinks(chunkSink({ store: { appendStream: (h, s, b) => streams.append(h, s, b) } }));
  sinks.onStored('events', processEventsAuditor({ audit }));
  return { sinks, audit: real, streams };
}

for (const target of testDatabaseTargets()) {
  describe(`process events into the audit trail (${target.driver})`, () => {
    let testDb: TestDatabase;
    let db: Db;

    before(
      async () => {
        testDb = await target.create();
        db = (await testDb.open()).db;
      },
      { timeout: 180_000 },
    );
    after(() => testDb.cleanup());

    const newHost = async () => {
      const [row] = await db
        .insert(hostsTable)
        .values({ name: 'h', publicKey: randomBytes(32).toString('base64url') })
        .returning({ id: hostsTable.id });
      return row!.id;
    };
    const trail = async (audit: AuditService, hostId: string) =>
      (await audit.list({ actor: `agent:${hostId}`, limit: 100 }))
        .reverse()
        .map((r) => `${r.action}#${String(r.detail.seq)}`);

    for (const failAt of [1, 2]) {
      test(
        `an append failing at row ${failAt} of the batch leaves it unacked; resends write each row once`,
        { timeout: 60_000 },
        async () => {
          const hostId = await newHost();
          const first = controllerRun(db, failAt);
          // The events are stored, the audit append fails: no ack, so the agent keeps the batch.
          await assert.rejects(first.sinks.append(hostId, 'events', BATCH), /injected/);
          assert.equal(await first.streams.cursor(hostId, 'events'), 4, 'the events were stored');
          assert.equal((await trail(first.audit, hostId)).length, failAt - 1);

          // The agent reconnects to the same controller and resends: the rows go in, and the ack.
          assert.equal((await first.sinks.append(hostId, 'events', BATCH)).ackedSeq, 4);
          const want = ['process.started#1', 'process.exited#3', 'process.restarting#4'];
          assert.deepEqual(await trail(first.audit, hostId), want);

          // A restarted controller gets the same batch again (its ack was lost), then new events.
          const second = controllerRun(db);
          assert.equal((await second.sinks.append(hostId, 'events', BATCH)).ackedSeq, 4);
          await second.sinks.append(
            hostId,
            'events',
            events(5, [{ kind: 'process.crash_loop', process: 'web' }]),
          );
          assert.deepEqual(await trail(second.audit, hostId), [...want, 'process.crash_loop#5']);

          const verified = await second.audit.verify();
          assert.equal(verified.ok, true, JSON.stringify(verified));
        },
      );
    }

    test(
      'a controller killed after the store, before the audit, writes the rows on the resend',
      { timeout: 60_000 },
      async () => {
        const hostId = await newHost();
        // The store alone: what a controller killed between the two writes left behind (unacked).
        await createStreamRepository(db).append(hostId, 'events', BATCH);
        const next = controllerRun(db);
        assert.deepEqual(await trail(next.audit, hostId), []);
        assert.equal((await next.sinks.append(hostId, 'events', BATCH)).ackedSeq, 4);
        assert.deepEqual(await trail(next.audit, hostId), [
          'process.started#1',
          'process.exited#3',
          'process.restarting#4',
        ]);
        assert.equal((await next.audit.verify()).ok, true);
      },
    );
  });
}
