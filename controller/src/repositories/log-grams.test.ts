// Proves the gram filter's check inside the database, on every test driver: chunks not yet
// summarised are read whole; once the retention job's summary pass wrote their filters, a search
// that requires a literal reads the chunks that hold it (always) and skips the ones that do not
// (here all of them), with any case of the literal; a clause of alternatives reads a chunk holding
// any of them; and a search that requires nothing reads every chunk.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { and, eq } from 'drizzle-orm';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { insertTestHost, testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { logChunkSummaries } from '../db/schema/log-retention.ts';
import { streamChunks } from '../db/schema/streams.ts';
import { buildGramFilter } from './log-grams.ts';
import { createLogRetentionRepository } from './log-retention.ts';
import { createLogSearchRepository } from './log-search.ts';
import { LOGS_STREAM } from './processes.ts';
import { CHUNK_MAX_RAW_BYTES, createStreamRepository } from './streams.ts';

const T0 = Date.UTC(2030, 0, 1);
const LINES_PER_CHUNK = 2_000;
/** Every chunk but these holds only plain request lines; these hold one rare line each. */
const RARE: Record<number, string> = {
  2: 'kernel: Out Of Memory: killed process 4242',
  5: 'disk /dev/sda1 is full',
};

function line(i: number): string {
  const chunk = Math.floor(i / LINES_PER_CHUNK);
  if (i % LINES_PER_CHUNK === 777 && RARE[chunk]) return RARE[chunk];
  return `n ${String(i).padStart(9, '0')} GET /api/v1/items/${(i * 7919) % 100000} 200`;
}

for (const target of testDatabaseTargets()) {
  describe(`log gram filters in the database (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let hostId: string;
    const chunks = 8;
    /** Each chunk's records as appended. */
    const bodies: { body: Buffer; count: number }[] = [];

    before(async () => {
      testDb = await target.create();
      handle = await testDb.open();
      db = handle.db;
      hostId = await insertTestHost(db);
      const streams = createStreamRepository(db);
      // One append per chunk's lines (each well under CHUNK_MAX_RAW_BYTES: one chunk row each).
      for (let c = 0; c < chunks; c++) {
        const records = [];
        for (let i = c * LINES_PER_CHUNK; i < (c + 1) * LINES_PER_CHUNK; i++) {
          records.push({
            ts: T0 + i,
            payload: encodeLogLine({
              process: 'app',
              stream: 'stdout',
              continued: false,
              line: Buffer.from(line(i)),
            }),
          });
        }
        const body = encodeRecords(records);
        bodies.push({ body, count: records.length });
        assert.ok(body.length < CHUNK_MAX_RAW_BYTES);
        await streams.append(hostId, LOGS_STREAM, {
          firstSeq: c * LINES_PER_CHUNK + 1,
          count: records.length,
          body,
        });
      }
    });
    after(() => testDb.cleanup());

    /** The first seq of every chunk the search would read. */
    async function read(required: string[][]): Promise<number[]> {
      const out: number[] = [];
      for await (const page of createLogSearchRepository(db).pages(hostId, { required })) {
        for (const c of page) out.push(c.firstSeq);
      }
      return out;
    }
    const chunkSeq = (c: number) => c * LINES_PER_CHUNK + 1;

    test('chunks without a filter are read whole; with one, only those that may hold the literal', async () => {
      assert.equal((await read([['out of memory']])).length, chunks);
      const retention = createLogRetentionRepository(db);
      assert.equal(await retention.summariseMissing(hostId, 100), chunks);
      assert.equal(await retention.summariseMissing(hostId, 100), 0);
      // The filter stored is the one of the chunk's records, byte for byte, on either driver.
      for (const c of [0, 2]) {
        const [row] = await db
          .select({ grams: streamChunks.grams })
          .from(streamChunks)
          .where(and(eq(streamChunks.hostId, hostId), eq(streamChunks.firstSeq, chunkSeq(c))));
        assert.deepEqual(Buffer.from(row!.grams!), buildGramFilter(bodies[c]!.body, bodies[c]!.count));
      }
      assert.deepEqual(await read([['out of memory']]), [chunkSeq(2)]);
      assert.deepEqual(await read([['OUT OF MEMORY'], ['killed pro']]), [chunkSeq(2)]);
      assert.deepEqual(await read([['out of memory', '/dev/sda1']]), [chunkSeq(2), chunkSeq(5)]);
      assert.deepEqual(await read([['zebra crossing']]), []);
      assert.equal((await read([])).length, chunks);
      assert.equal((await read([['GET /api/v1']])).length, chunks);
    });

    test(
      'controllers sharing the database split the summary pass: each chunk is summarised once',
      { skip: target.driver === 'pglite' ? 'PGlite is one process' : false },
      async () => {
        await db.delete(logChunkSummaries).where(eq(logChunkSummaries.hostId, hostId));
        await db.update(streamChunks).set({ grams: null }).where(eq(streamChunks.hostId, hostId));
        const other = await testDb.open();
        const counts = await Promise.all(
          [db, other.db].map((d) => createLogRetentionRepository(d).summariseMissing(hostId, 100)),
        );
        assert.equal(counts[0]! + counts[1]!, chunks, `summarised ${counts.join(' + ')}`);
        assert.deepEqual(await read([['out of memory']]), [chunkSeq(2)]);
      },
    );
  });
}
