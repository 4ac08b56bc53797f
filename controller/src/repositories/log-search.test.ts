// Proves the search's chunk reads on every test driver: the pages (on PostgreSQL binary COPYs,
// two at a time) hold exactly what a plain query reads (the same chunks, bodies and order, oldest
// first, a time range honoured, at most a page of 32 chunks at a time), stored or decoded; a
// search that stops early ends its reads and leaves every pooled connection answering; a COPY
// whose output arrives in one read leaves its connection answering (postgres.js 3.4 left it
// paused for ever: readCopy); and the COPY parser refuses what is not the expected rows.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { insertTestHost, testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { decodeChunk } from './chunk-codec.ts';
import { parseCopyRows, readCopy } from './chunk-copy.ts';
import { createLogSearchRepository, type LogChunk } from './log-search.ts';
import { LOGS_STREAM } from './processes.ts';
import { createStreamRepository } from './streams.ts';

const T0 = Date.UTC(2030, 0, 1);

/** `p`, or a rejection naming `what` after `ms` (a connection that never answers again). */
function within<T>(ms: number, what: string, p: PromiseLike<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    Promise.resolve(p).finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]);
}
const CHUNKS = 70;
const LINES = 50;

async function all(pages: AsyncGenerator<LogChunk[]>): Promise<{ pages: number[]; chunks: LogChunk[] }> {
  const sizes: number[] = [];
  const chunks: LogChunk[] = [];
  for await (const page of pages) {
    sizes.push(page.length);
    chunks.push(...page);
  }
  return { pages: sizes, chunks };
}

for (const target of testDatabaseTargets()) {
  describe(`log search reads (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let hostId: string;

    before(async () => {
      testDb = await target.create();
      handle = await testDb.open();
      db = handle.db;
      hostId = await insertTestHost(db);
      const streams = createStreamRepository(db);
      for (let c = 0; c < CHUNKS; c++) {
        const records = [];
        for (let i = 0; i < LINES; i++) {
          const n = c * LINES + i;
          records.push({
            ts: T0 + n * 1000,
            payload: encodeLogLine({
              process: 'app',
              stream: 'stdout',
              continued: false,
              line: Buffer.from(`line ${n} ${randomBytes(8).toString('hex')}`),
            }),
          });
        }
        await streams.append(hostId, LOGS_STREAM, {
          firstSeq: c * LINES + 1,
          count: LINES,
          body: encodeRecords(records),
        });
      }
    });
    after(() => testDb.cleanup());

    test(
      'pages hold every chunk in order, as the plain query path reads them',
      { timeout: 60_000 },
      async () => {
        const read = await all(createLogSearchRepository(db).pages(hostId, {}));
        // The query path (bytea as the driver returns it): the COPY (PostgreSQL: readCopy; PGlite:
        // its /dev/blob) must give the same chunks.
        const plain = await all(createLogSearchRepository(db, { copy: false }).pages(hostId, {}));
        assert.equal(read.chunks.length, CHUNKS);
        assert.deepEqual(
          read.chunks.map((c) => c.firstSeq),
          Array.from({ length: CHUNKS }, (_, c) => c * LINES + 1),
        );
        assert.ok(read.pages.every((n) => n <= 32));
        assert.deepEqual(
          read.chunks.map((c) => [c.firstSeq, c.count, c.body.toString('hex')]),
          plain.chunks.map((c) => [c.firstSeq, c.count, c.body.toString('hex')]),
        );
        // As stored: the same chunks, undecoded.
        const stored: { firstSeq: number; body: string }[] = [];
        for await (const page of createLogSearchRepository(db).storedPages(hostId, {})) {
          assert.ok(page.length <= 32);
          for (const c of page) {
            stored.push({ firstSeq: c.firstSeq, body: (await decodeChunk(c.codec, c.data)).toString('hex') });
          }
        }
        assert.deepEqual(
          stored,
          plain.chunks.map((c) => ({ firstSeq: c.firstSeq, body: c.body.toString('hex') })),
        );
      },
    );

    test('a time range reads only the chunks that meet it', { timeout: 60_000 }, async () => {
      const since = T0 + 10 * LINES * 1000; // chunk 10's first line
      const until = T0 + 45 * LINES * 1000; // chunk 45's first line: not included
      const read = await all(createLogSearchRepository(db).pages(hostId, { since, until }));
      assert.deepEqual(
        read.chunks.map((c) => c.firstSeq),
        Array.from({ length: 35 }, (_, k) => (10 + k) * LINES + 1),
      );
    });

    test(
      'a search that stops after its first page ends the reads; the next query runs',
      { timeout: 60_000 },
      async () => {
        const pages = createLogSearchRepository(db).pages(hostId, {});
        const first = await pages.next();
        assert.equal((first.value as LogChunk[]).length, 32);
        await pages.return(undefined);
        // The pages fetched ahead were read to their end: every pooled connection answers (more
        // queries at once than the pool has connections), and so does the next search.
        await within(
          10_000,
          'queries after an early stop',
          Promise.all(Array.from({ length: 24 }, () => db.execute(sql`select 1`))),
        );
        const again = await within(
          10_000,
          'the next search',
          all(createLogSearchRepository(db).pages(hostId, {})),
        );
        assert.equal(again.chunks.length, CHUNKS);
        // A time range of 35 chunks (a page of 32 and a small one), stopped at once, many times.
        for (let k = 0; k < 5; k++) {
          const some = createLogSearchRepository(db).pages(hostId, {
            since: T0 + 10 * LINES * 1000,
            until: T0 + 45 * LINES * 1000,
          });
          await some.next();
          await some.return(undefined);
        }
        await within(
          10_000,
          'queries after early stops',
          Promise.all(Array.from({ length: 24 }, () => db.execute(sql`select 1`))),
        );
      },
    );

    test(
      'a COPY whose output arrives in one read leaves its connection answering',
      { timeout: 60_000, skip: target.driver !== 'postgres' && 'PostgreSQL only (COPY)' },
      async () => {
        // One connection, so that the next query goes where the COPY went. Outputs from one small
        // read to several reads' worth: each ends with the stream's buffer (16 KiB) overfull.
        const client = postgres(testDb.options.url!, { max: 1, onnotice: () => {} });
        try {
          for (const size of [100, 20_000, 40_000, 60_000, 300_000]) {
            const out = await within(
              10_000,
              `COPY of ${size} bytes`,
              readCopy(client, `copy (select repeat('x', ${size})) to stdout`),
            );
            assert.equal(Buffer.concat(out).length, size + 1);
            const [row] = await within(
              10_000,
              `a query after a COPY of ${size} bytes`,
              client`select 1 as one`,
            );
            assert.equal(row!.one, 1);
          }
        } finally {
          await client.end({ timeout: 1 });
        }
      },
    );
  });
}

test('the COPY parser refuses what is not the expected rows', () => {
  assert.throws(() => parseCopyRows(Buffer.from('not a copy at all, not at all')), /not a binary COPY/);
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const row = (fields: number) => {
    const b = Buffer.alloc(2);
    b.writeInt16BE(fields);
    return b;
  };
  assert.deepEqual(parseCopyRows(Buffer.concat([header, row(-1)])), []);
  assert.throws(() => parseCopyRows(Buffer.concat([header, row(3)])), /unexpected COPY row/);
  // A data field longer than what is there.
  const seq = Buffer.alloc(12);
  seq.writeInt32BE(8);
  const count = Buffer.alloc(8);
  count.writeInt32BE(4);
  const codec = Buffer.alloc(6);
  codec.writeInt32BE(2);
  const data = Buffer.alloc(4);
  data.writeInt32BE(1000);
  assert.throws(
    () => parseCopyRows(Buffer.concat([header, row(4), seq, count, codec, data, Buffer.alloc(10)])),
    /unexpected COPY field/,
  );
  // Rows given in parts, split anywhere (a row across parts is joined): the same rows.
  const body = Buffer.from('some chunk bytes');
  const rowBytes = (n: number) => {
    const r = Buffer.alloc(32 + body.length);
    r.writeInt16BE(4, 0);
    r.writeInt32BE(8, 2);
    r.writeBigInt64BE(BigInt(n), 6);
    r.writeInt32BE(4, 14);
    r.writeInt32BE(n * 10, 18);
    r.writeInt32BE(2, 22);
    r.writeInt16BE(2, 26);
    r.writeInt32BE(body.length, 28);
    body.copy(r, 32);
    return r;
  };
  const whole = Buffer.concat([header, rowBytes(1), rowBytes(2), rowBytes(3), row(-1)]);
  const want = parseCopyRows(whole);
  assert.deepEqual(
    want.map((r) => [r.firstSeq, r.count, r.codec, r.data.toString()]),
    [1, 2, 3].map((n) => [n, n * 10, 2, 'some chunk bytes']),
  );
  for (const cuts of [[5], [19, 67], [20, 21, 22, 100], [whole.length - 1]]) {
    const parts: Buffer[] = [];
    let from = 0;
    for (const c of [...cuts, whole.length]) {
      parts.push(whole.subarray(from, c));
      from = c;
    }
    assert.deepEqual(parseCopyRows(parts), want);
  }
  assert.throws(() => parseCopyRows([whole.subarray(0, 60)]), /ends inside a row/);
});
