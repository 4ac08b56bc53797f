// Proves the regex search over chunks as stored (a pattern with no literal to narrow it: every
// chunk is read, decoded and matched in the regex workers; anchored ones tried at line starts
// only, lines with a lone CR among them; lines lacking a shorter required literal skipped in the
// workers), on every test driver, against the
// per-line answer computed here: the same lines, ranges, order, seq, time, stream and process,
// across LZ4, deflate and uncompressed chunks and several batches (both workers); with a time
// range, one process and one stream; long lines cut; non-ASCII text; a search stopped early by
// its limit or its caller (and the next search on the same storage answers); at most maxRunning
// searches at once, each freeing its place however it ends; a chunk that does not decode ends the
// search with ChunkDecodeError.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { and, eq } from 'drizzle-orm';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import type { Db, OpenDatabase } from '../db/index.ts';
import { chunkCodec, streamChunks } from '../db/schema/streams.ts';
import { insertTestHost, testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { ChunkDecodeError, decodeChunk } from '../repositories/chunk-codec.ts';
import { createHostRepository } from '../repositories/hosts.ts';
import { createLogSearchRepository } from '../repositories/log-search.ts';
import { LOGS_STREAM } from '../repositories/processes.ts';
import { createStreamRepository } from '../repositories/streams.ts';
import { lineLiterals, requiredLiterals } from './log-prefilter.ts';
import {
  createLogSearchService,
  linesStartOnly,
  type LogSearchEvent,
  type LogSearchMatch,
} from './log-search.ts';

const T0 = Date.UTC(2030, 0, 1);
const CHUNKS = 12;
const LINES = 2_000;
const actor = { id: 'test', role: 'owner' as const, ip: null };

interface Line {
  seq: number;
  ts: number;
  process: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

/** Line n: ~100 bytes, numbered; some non-ASCII, some on stderr, one very long. */
function lineOf(n: number): Line {
  let text = `n ${String(n).padStart(9, '0')} ${['GET', 'PUT', 'POST'][n % 3]} /api/${(n * 7919) % 100000} ${n % 250}ms req=${randomBytes(6).toString('hex')}`;
  if (n % 997 === 0) text += ' naïve café ✓';
  if (n === 5_001) text += ' ' + '7'.repeat(6_000) + ' ';
  // A lone CR: with the batch's `m` flag `^` holds after it, on its own line it does not.
  if (n % 1_009 === 0) text += '\rn 7 PUT 7 ';
  return {
    seq: n,
    ts: T0 + n,
    process: n % 5 === 0 ? 'worker' : 'api',
    stream: n % 11 === 0 ? 'stderr' : 'stdout',
    text,
  };
}

/** The per-line answer: each line's ranges as the search defines them (at most 32). */
function expected(
  lines: Line[],
  q: string,
  caseSensitive = false,
): { seq: number; ranges: [number, number][] }[] {
  const re = new RegExp(q, `g${caseSensitive ? '' : 'i'}u`);
  const out: { seq: number; ranges: [number, number][] }[] = [];
  for (const l of lines) {
    re.lastIndex = 0;
    const ranges: [number, number][] = [];
    let hit = false;
    let m: RegExpExecArray | null;
    while ((m = re.exec(l.text)) !== null) {
      hit = true;
      if (m[0].length === 0) {
        re.lastIndex++;
        if (re.lastIndex > l.text.length) break;
        continue;
      }
      ranges.push([m.index, m.index + m[0].length]);
      if (ranges.length >= 32) break;
    }
    if (hit) {
      out.push({
        seq: l.seq,
        ranges: ranges.filter(([s]) => s < 4096).map(([s, e]) => [s, Math.min(e, 4096)]),
      });
    }
  }
  return out;
}

test('a pattern is tried at line starts only when it starts with ^, has no top-level |, stays in a line', () => {
  for (const q of [
    '^n \\d*7 ',
    '^(a|b)c',
    '^a[|]b',
    '^a\\|b',
    '^(?:x|(y|z))+$',
    '^\\S+ \\w\\b[\\d.-]',
    '^(a)\\1',
  ]) {
    assert.equal(linesStartOnly(q), true, q);
  }
  // Not anchored, or a try could run on into the next lines of the batch.
  for (const q of [
    'n ^',
    '^a|b',
    '(^a)',
    '^a[)]|b',
    '\\^a',
    'x|^a',
    '^[\\s\\S]*7',
    '^a\\s',
    '^[^x]*',
    '^\\D',
    '^\\W',
    '^a\\nb',
    '^\\x0a',
    '^\\u000a',
    '^\\p{Cc}',
    '^a\nb',
    '^[\\n]',
  ]) {
    assert.equal(linesStartOnly(q), false, q);
  }
});

for (const target of testDatabaseTargets()) {
  describe(`regex search over stored chunks (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;
    let db: Db;
    let hostId: string;
    const lines: Line[] = [];

    const search = async (
      query: Parameters<ReturnType<typeof createLogSearchService>['start']>[1],
      signal?: AbortSignal,
    ) => {
      const service = createLogSearchService({
        hosts: createHostRepository(db),
        logs: createLogSearchRepository(db),
      });
      const events: LogSearchEvent[] = [];
      for await (const e of await service.start(
        actor,
        { hostId, regex: true, limit: 2000, ...query },
        signal,
      )) {
        events.push(e);
      }
      return events;
    };
    const found = (events: LogSearchEvent[]) => events.filter((e): e is LogSearchMatch => e.type === 'match');

    before(async () => {
      testDb = await target.create();
      handle = await testDb.open();
      db = handle.db;
      hostId = await insertTestHost(db);
      const streams = createStreamRepository(db);
      for (let c = 0; c < CHUNKS; c++) {
        const records = [];
        for (let i = 0; i < LINES; i++) {
          const l = lineOf(c * LINES + i + 1);
          lines.push(l);
          records.push({
            ts: l.ts,
            payload: encodeLogLine({
              process: l.process,
              stream: l.stream,
              continued: false,
              line: Buffer.from(l.text),
            }),
          });
        }
        await streams.append(hostId, LOGS_STREAM, {
          firstSeq: c * LINES + 1,
          count: LINES,
          body: encodeRecords(records),
        });
      }
      // Chunk 2 as a controller before LZ4 stored it (deflate), chunk 3 uncompressed.
      for (const [c, codec] of [
        [1, chunkCodec.deflateRaw],
        [2, chunkCodec.none],
      ] as const) {
        const which = and(eq(streamChunks.hostId, hostId), eq(streamChunks.firstSeq, c * LINES + 1));
        const [stored] = await db.select().from(streamChunks).where(which);
        const raw = await decodeChunk(stored!.codec, stored!.data);
        await db
          .update(streamChunks)
          .set({ codec, data: codec === chunkCodec.none ? raw : deflateRawSync(raw, { level: 1 }) })
          .where(which);
      }
    });
    after(() => testDb.cleanup());

    test(
      'every line the pattern matches, as the per-line answer, in order',
      { timeout: 120_000 },
      async () => {
        // Anchored ones (`^`, no top-level `|`) are tried at each line's start only.
        const none = [
          '^n \\d*7 ',
          '^n \\d*[27] .UT \\S+3 ',
          '^(n|x) \\d*3.(GET|PUT)',
          '\\d{3}7.(GET|PUT)',
          'é \\S',
          '(?=7{40})\\d{40}',
          '\\d{4}$',
          '\\d99 \\d+ms',
          '/\\d+(00|11) ',
        ];
        // Of those, the ones whose workers skip the lines lacking a shorter literal (`7 `, `2 ` or
        // `7 `, `99 `, `00 ` or `11 `) before matching (lineLiterals); the answer is the same.
        const lineNarrowed = ['^n \\d*7 ', '^n \\d*[27] .UT \\S+3 ', '\\d99 \\d+ms', '/\\d+(00|11) '];
        // The same with literals (since 1 Dec `7 (GET|PUT)` requires `7 get` or `7 put`, `7{40}`
        // forty 7s): chunks are narrowed by them, the answer is the same.
        const narrowed = ['\\d{3}7 (GET|PUT)', '7{40}', '\\d7 [Pp]UT /api'];
        for (const q of [...none, ...narrowed]) {
          // No literal to narrow the first: every chunk is read as stored and decoded in the workers.
          assert.equal(requiredLiterals({ q, regex: true }).length === 0, none.includes(q), q);
          assert.equal(
            lineLiterals({ q, regex: true }) !== null && none.includes(q),
            lineNarrowed.includes(q),
            q,
          );
          const events = await search({ q });
          const want = expected(lines, q);
          assert.ok(want.length > 0, q);
          const got = found(events);
          assert.deepEqual(
            got.map((m) => ({ seq: m.seq, ranges: m.ranges })),
            want.slice(0, 2000),
            q,
          );
          for (const m of got) {
            const l = lines[m.seq - 1]!;
            assert.deepEqual([m.ts, m.process, m.stream], [l.ts, l.process, l.stream]);
            assert.equal(m.text, l.text.slice(0, 4096));
            assert.equal(m.cut, l.text.length > 4096);
          }
          const end = events.at(-1) as Extract<LogSearchEvent, { type: 'end' }>;
          assert.equal(end.type, 'end');
          assert.equal(end.reason, want.length > 2000 ? 'limit' : 'done');
          if (end.reason === 'done' && none.includes(q)) assert.equal(end.scannedLines, CHUNKS * LINES);
        }
      },
    );

    test('a time range, one process and one stream select the lines', { timeout: 120_000 }, async () => {
      const q = '\\d5 (GET|PUT)';
      const since = T0 + 3_000;
      const until = T0 + 19_000;
      const events = await search({ q, since, until, process: 'worker', stream: 'stderr' });
      const want = expected(
        lines.filter((l) => l.ts >= since && l.ts < until && l.process === 'worker' && l.stream === 'stderr'),
        q,
      );
      assert.ok(want.length > 0);
      assert.deepEqual(
        found(events).map((m) => ({ seq: m.seq, ranges: m.ranges })),
        want,
      );
      // Case-sensitive: lower case finds nothing.
      assert.equal(found(await search({ q: '\\d5 (get|put)', caseSensitive: true })).length, 0);
    });

    test(
      'a search stopped early (limit, caller) ends; the next one answers',
      { timeout: 120_000 },
      async () => {
        const q = '^n \\d*[0-9] ';
        let events = await search({ q, limit: 10 });
        assert.deepEqual(
          found(events).map((m) => m.seq),
          Array.from({ length: 10 }, (_, i) => i + 1),
        );
        assert.equal((events.at(-1) as { reason: string }).reason, 'limit');
        const abort = new AbortController();
        const service = createLogSearchService({
          hosts: createHostRepository(db),
          logs: createLogSearchRepository(db),
        });
        const run = await service.start(actor, { q, hostId, regex: true, limit: 2000 }, abort.signal);
        assert.equal((await run.next()).value?.type, 'match');
        abort.abort();
        let last: LogSearchEvent | undefined;
        for await (const e of run) last = e;
        assert.equal((last as { reason: string }).reason, 'cancelled');
        // The reads it left behind did not hold a connection: a whole search runs after it.
        events = await search({ q: '7{40}' });
        assert.deepEqual(
          found(events).map((m) => m.seq),
          [5_001],
        );
      },
    );

    test(
      'at most maxRunning searches run at once; a search frees its place however it ends',
      { timeout: 120_000 },
      async () => {
        const service = createLogSearchService({
          hosts: createHostRepository(db),
          logs: createLogSearchRepository(db),
          maxRunning: 2,
        });
        const q = '^n \\d*[0-9] ';
        const start = () => service.start(actor, { q, hostId, regex: true, limit: 2000 });
        // Two started, neither read yet: the third is refused before anything is looked up.
        const a = await start();
        const b = await start();
        assert.equal(service.running, 2);
        await assert.rejects(
          start(),
          (err: { code?: string; status?: number; retryAfterSeconds?: number }) => {
            assert.equal(err.code, 'search.busy');
            assert.equal(err.status, 429);
            assert.equal(err.retryAfterSeconds, 2);
            return true;
          },
        );
        // Returned before its first event (a client gone at once): its place is free.
        await a.return(undefined);
        assert.equal(service.running, 1);
        const c = await start();
        // Read to its end: free again.
        let last: LogSearchEvent | undefined;
        for await (const e of b) last = e;
        assert.equal(last?.type, 'end');
        assert.equal(service.running, 1);
        // Stopped after its first event by the caller.
        assert.equal((await c.next()).value?.type, 'match');
        await c.return(undefined);
        assert.equal(service.running, 0);
        // A refusal after the count (an unknown host) does not keep a place.
        await assert.rejects(
          service.start(actor, { q, hostId: '00000000-0000-4000-8000-000000000000', regex: true }),
          (err: { code?: string }) => err.code === 'host.not_found',
        );
        assert.equal(service.running, 0);
        assert.equal(found(await search({ q: '7{40}' })).length, 1);
      },
    );

    test(
      'a chunk that does not decode ends the search with ChunkDecodeError',
      { timeout: 120_000 },
      async () => {
        const which = and(eq(streamChunks.hostId, hostId), eq(streamChunks.firstSeq, 5 * LINES + 1));
        const [stored] = await db.select().from(streamChunks).where(which);
        try {
          // A valid size prefix, then a block whose literals run past its end.
          await db
            .update(streamChunks)
            .set({ codec: chunkCodec.lz4, data: Buffer.from([0, 0, 4, 0, 0xff, 1]) })
            .where(which);
          await assert.rejects(search({ q: '^n \\d*7 ' }), ChunkDecodeError);
        } finally {
          await db.update(streamChunks).set({ codec: stored!.codec, data: stored!.data }).where(which);
        }
        assert.equal(found(await search({ q: '7{40}' })).length, 1);
      },
    );
  });
}
