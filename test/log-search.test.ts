// Proves fleet log search over stored log chunks (the real stream storage, lines appended as the
// agent link appends them): substring (case-insensitive by default) and regex hits with their
// ranges, within a time range, for one process, one host or the whole fleet; results arrive as
// NDJSON events ending with an `end` event; the match limit ends a search; a scoped user only
// searches the hosts of their grant (and another host is 404); a malformed pattern is a 400; a
// catastrophically backtracking regex is stopped by its time bound without stalling the
// controller (another request is answered meanwhile); a client that goes away ends the scan; and a
// search for one process skips the chunks the retention job's summaries show without it; and once
// the summary pass wrote the chunks' gram filters, a search that requires a literal reads only the
// chunks that may hold it, with the same answers; chunks stored before LZ4 (deflate) and new ones
// search alike, side by side; a chunk that does not decode ends the search with an error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { and, eq } from 'drizzle-orm';
import { encodeLogLine, encodeRecords } from '@keel/shared';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { chunkCodec, streamChunks } from '../controller/src/db/schema/streams.ts';
import { ChunkDecodeError, decodeChunk } from '../controller/src/repositories/chunk-codec.ts';
import { createLogRetentionRepository } from '../controller/src/repositories/log-retention.ts';
import { createStreamRepository } from '../controller/src/repositories/streams.ts';

let t: TestApp;
let owner: SignedIn;
let scoped: SignedIn;
const ids: Record<string, string> = {};
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const TIMEOUT = { timeout: 60_000 };
const EDGE_LINES = [
  'alpha end',
  'begin omega',
  'café ünïcode: status=500 at the end',
  'x\rprefix status=404',
  'status=200',
  '\u00ff\u{1F600} status=2001',
];

async function storeHost(name: string): Promise<string> {
  const [row] = await t.db
    .insert(hosts)
    .values({ name, publicKey: randomBytes(32).toString('base64url'), lastSeenAt: new Date() })
    .returning({ id: hosts.id });
  return row!.id;
}

/** Appends lines to a host's logs stream as one batch (as the agent link would). */
async function append(
  hostId: string,
  firstSeq: number,
  lines: { process: string; text: string; ts: number; stderr?: boolean }[],
) {
  const body = encodeRecords(
    lines.map((l) => ({
      ts: l.ts,
      payload: encodeLogLine({
        process: l.process,
        stream: l.stderr ? 'stderr' : 'stdout',
        line: Buffer.from(l.text),
        continued: false,
      }),
    })),
  );
  await createStreamRepository(t.db).append(hostId, 'logs', { firstSeq, count: lines.length, body });
}

type Event = Record<string, unknown> & { type: string };

async function search(
  query: Record<string, string>,
  as: SignedIn = owner,
): Promise<{ status: number; events: Event[] }> {
  const res = await t.request(`/api/v1/logs/search?${new URLSearchParams(query)}`, { as });
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, events: [JSON.parse(text) as Event] };
  assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
  return {
    status: 200,
    events: text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Event),
  };
}

const matches = (events: Event[]) => events.filter((e) => e.type === 'match');
const end = (events: Event[]) => events.at(-1) as Event & { reason: string; matches: number };

before(async () => {
  t = await openTestApp();
  owner = await t.signInAs('owner');
  ids.game = await storeHost('game-1');
  ids.proxy = await storeHost('proxy-1');
  await append(ids.game, 1, [
    { process: 'mc', text: 'Starting server on port 25565', ts: T0 },
    { process: 'mc', text: 'Player Alice joined the game', ts: T0 + 1_000 },
    { process: 'web', text: 'GET /index.html 200', ts: T0 + 2_000 },
    { process: 'mc', text: 'ERROR: player bob lost connection', ts: T0 + 3_000, stderr: true },
    { process: 'mc', text: 'player carol joined the game', ts: T0 + 60_000 },
  ]);
  const many = Array.from({ length: 3_000 }, (_, i) => ({
    process: 'mc',
    text: `tick ${i} player count ${i % 7}`,
    ts: T0 + 100_000 + i,
  }));
  await append(ids.game, 6, many);
  await append(ids.proxy, 1, [
    { process: 'telemt', text: 'player proxy connection from 10.0.0.1', ts: T0 + 500 },
    { process: 'telemt', text: 'a'.repeat(40) + '!', ts: T0 + 600 },
  ]);
  // Lines for the regex's whole-batch pass: matches across lines, line ends, non-ASCII text (a
  // host listed last: the fleet-wide tests below expect game-1's lines first).
  ids.edge = await storeHost('zz-edge-1');
  await append(
    ids.edge,
    1,
    EDGE_LINES.map((text, i) => ({ process: 'edge', text, ts: T0 + i })),
  );
  // A scoped viewer granted on a group holding only the proxy host.
  const post = async (path: string, json: unknown, method = 'POST') => {
    const res = await t.request(path, { method, json, as: owner });
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
    return res.json() as Promise<Record<string, { id: string }>>;
  };
  const group = (await post('/api/v1/groups', { name: 'proxies', hostIds: [ids.proxy] })).group!.id;
  const made = await post('/api/v1/users', {
    username: 'reseller',
    password: TEST_PASSWORD,
    role: 'viewer',
    scoped: true,
  });
  await post(`/api/v1/users/${made.user!.id}/grants`, { groupId: group, role: 'viewer' });
  scoped = await t.login('reseller');
});
after(async () => t?.close());

describe('log search', () => {
  test(
    'substring across the fleet, case-insensitive, with ranges; events end with `end`',
    TIMEOUT,
    async () => {
      const { status, events } = await search({ q: 'JOINED', limit: '100' });
      assert.equal(status, 200);
      const found = matches(events);
      assert.deepEqual(
        found.map((m) => m.text),
        ['Player Alice joined the game', 'player carol joined the game'],
      );
      assert.deepEqual(found[0]!.ranges, [[13, 19]]);
      assert.equal(found[0]!.hostName, 'game-1');
      assert.equal(found[0]!.process, 'mc');
      assert.equal(end(events).reason, 'done');
      assert.ok(
        events.some((e) => e.type === 'host' && e.hostId === ids.proxy),
        'every host reported',
      );
      // Case-sensitive finds none.
      assert.equal(matches((await search({ q: 'JOINED', caseSensitive: 'true' })).events).length, 0);
    },
  );

  test('regex, a time range, one host, one process, one stream', TIMEOUT, async () => {
    let r = await search({ q: 'player (alice|bob|carol)', regex: 'true', hostId: ids.game!, process: 'mc' });
    assert.equal(matches(r.events).length, 3);
    r = await search({
      q: 'player (alice|bob|carol)',
      regex: 'true',
      since: String(T0 + 500),
      until: String(T0 + 10_000),
    });
    assert.deepEqual(
      matches(r.events).map((m) => m.text),
      ['Player Alice joined the game', 'ERROR: player bob lost connection'],
    );
    r = await search({ q: 'player', stream: 'stderr' });
    assert.deepEqual(
      matches(r.events).map((m) => [m.stream, m.text]),
      [['stderr', 'ERROR: player bob lost connection']],
    );
    r = await search({ q: '\\d+\\.\\d+\\.\\d+\\.\\d+', regex: 'true', hostId: ids.proxy! });
    assert.deepEqual(matches(r.events)[0]!.ranges, [[29, 37]]);
  });

  test('a regex gives exactly the per-line result (run over whole batches first)', TIMEOUT, async () => {
    const texts = async (q: string) =>
      matches((await search({ q, regex: 'true', hostId: ids.edge!, caseSensitive: 'true' })).events);
    // A match across lines is no line's match; the lines it touched are still checked one by one.
    assert.deepEqual(await texts('end\\s+begin'), []);
    assert.deepEqual(
      (await texts('[^z]*omega')).map((m) => [m.text, m.ranges]),
      [['begin omega', [[0, 11]]]],
    );
    // `$` and `^` at a line's ends only (not after a lone \r inside a line).
    const ends = await texts('end$');
    assert.deepEqual(
      ends.map((m) => [m.text, m.ranges]),
      [
        ['alpha end', [[6, 9]]],
        [EDGE_LINES[2], [[EDGE_LINES[2]!.length - 3, EDGE_LINES[2]!.length]]],
      ],
    );
    assert.deepEqual(await texts('^prefix'), []);
    assert.equal((await texts('^x')).length, 1);
    // Ranges in UTF-16 units of the line's text, also after non-ASCII characters.
    const uni = await texts('status=(\\d+)');
    assert.deepEqual(
      uni.map((m) => m.ranges),
      [EDGE_LINES[2], EDGE_LINES[3], EDGE_LINES[4], EDGE_LINES[5]].map((t) => {
        const at = t!.indexOf('status=');
        return [[at, t!.indexOf(' ', at) < 0 ? t!.length : t!.indexOf(' ', at)]];
      }),
    );
    // Lookahead may look past a line's end: such a pattern runs per line (same answers).
    assert.deepEqual(
      (await texts('status=\\d{3}(?!\\d)')).map((m) => m.seq),
      [3, 4, 5],
    );
    assert.deepEqual(
      (await texts('end(?![^])')).map((m) => m.seq),
      [1, 3],
    );
  });

  test('a search for one process skips the chunks its summaries show without it', TIMEOUT, async () => {
    const query = { q: 'GET', hostId: ids.game!, process: 'web' };
    let r = await search(query);
    assert.equal(matches(r.events).length, 1);
    const before = end(r.events) as unknown as { readRecords: number };
    assert.equal(before.readRecords, 5 + 3_000, 'no summaries yet: every chunk is read');
    await createLogRetentionRepository(t.db).summariseMissing(ids.game!, 100);
    r = await search(query);
    assert.equal(matches(r.events).length, 1);
    assert.equal(
      (end(r.events) as unknown as { readRecords: number }).readRecords,
      5,
      'the mc-only chunk skipped',
    );
  });

  test(
    'gram filters skip chunks without the literal a search requires; the answers stay the same',
    TIMEOUT,
    async () => {
      const host = await storeHost('grams-1');
      // Three chunks (one append each): only the second holds the rare line.
      for (let c = 0; c < 3; c++) {
        await append(
          host,
          1 + c * 1_000,
          Array.from({ length: 1_000 }, (_, i) => ({
            process: 'api',
            text:
              c === 1 && i === 500
                ? 'WARN Disk Quota Exceeded for /srv'
                : `req ${c * 1_000 + i} GET /items 200`,
            ts: T0 + c * 1_000 + i,
          })),
        );
      }
      const queries: Record<string, string>[] = [
        { q: 'quota exceeded' },
        { q: 'Quota Exceeded', caseSensitive: 'true' },
        { q: 'disk (quota|limit) exceeded', regex: 'true' },
        { q: '^warn .*quota', regex: 'true' },
        { q: 'no such line anywhere' },
        { q: 'GET /items', limit: '2000' },
      ];
      const run = async () => {
        const out = [];
        for (const q of queries) {
          const r = await search({ ...q, hostId: host });
          out.push({
            texts: matches(r.events).map((m) => m.text),
            read: (end(r.events) as unknown as { readRecords: number }).readRecords,
          });
        }
        return out;
      };
      const unindexed = await run();
      for (const r of unindexed) assert.equal(r.read, 3_000, 'no filters yet: every chunk is read');
      await createLogRetentionRepository(t.db).summariseMissing(host, 100);
      const indexed = await run();
      assert.deepEqual(
        indexed.map((r) => r.texts),
        unindexed.map((r) => r.texts),
      );
      assert.deepEqual(indexed[0]!.texts, ['WARN Disk Quota Exceeded for /srv']);
      assert.deepEqual(
        indexed.map((r) => r.read),
        // `^warn .*quota` requires `quota` (5 bytes) only; `GET /items` is in every chunk.
        [1_000, 1_000, 1_000, 1_000, 0, 3_000],
      );
    },
  );

  test('the match limit ends the search', TIMEOUT, async () => {
    const r = await search({ q: 'tick', limit: '50' });
    assert.equal(matches(r.events).length, 50);
    assert.equal(end(r.events).reason, 'limit');
  });

  test('a scoped user searches only the hosts they may see; another host is 404', TIMEOUT, async () => {
    const r = await search({ q: 'player' }, scoped);
    assert.equal(r.status, 200);
    assert.ok(matches(r.events).length > 0);
    assert.ok(matches(r.events).every((m) => m.hostId === ids.proxy));
    assert.equal(end(r.events).matches, matches(r.events).length);
    assert.equal((await search({ q: 'player', hostId: ids.game! }, scoped)).status, 404);
  });

  test('bad patterns are refused before anything is streamed', TIMEOUT, async () => {
    let r = await search({ q: 'a(b', regex: 'true' });
    assert.equal(r.status, 400);
    assert.equal(
      (r.events[0] as unknown as { error: { code: string } }).error.code,
      'search.invalid_pattern',
    );
    r = await search({ q: 'x'.repeat(513) });
    assert.equal(r.status, 400);
  });

  test(
    'a catastrophically backtracking regex is stopped; the controller keeps answering',
    TIMEOUT,
    async () => {
      const started = Date.now();
      const pending = search({ q: '(a+)+$', regex: 'true', hostId: ids.proxy! });
      // While the worker spins, the controller still answers other requests.
      const other = await t.request('/api/v1/process-templates', { as: owner });
      assert.equal(other.status, 200);
      const r = await pending;
      assert.equal(end(r.events).reason, 'pattern-too-slow');
      assert.ok(Date.now() - started < 30_000, 'bounded');
    },
  );

  test('deflate chunks (stored before LZ4) and LZ4 chunks search alike, side by side', TIMEOUT, async () => {
    const host = await storeHost('mixed-1');
    const lines = (from: number) =>
      Array.from({ length: 500 }, (_, i) => ({
        process: 'mix',
        text: `request ${from + i} ${(from + i) % 100 === 7 ? 'needle' : 'hay'} status=200`,
        ts: T0 + from + i,
      }));
    await append(host, 1, lines(1));
    await append(host, 501, lines(501));
    await append(host, 1001, lines(1001));
    // The middle chunk as a controller before LZ4 wrote it.
    const middle = and(eq(streamChunks.hostId, host), eq(streamChunks.firstSeq, 501));
    const [row] = await t.db.select().from(streamChunks).where(middle);
    assert.equal(row?.codec, chunkCodec.lz4);
    const raw = await decodeChunk(row!.codec, row!.data);
    await t.db
      .update(streamChunks)
      .set({ codec: chunkCodec.deflateRaw, data: deflateRawSync(raw, { level: 1 }) })
      .where(middle);
    const expected = Array.from({ length: 15 }, (_, k) => `request ${k * 100 + 7} needle status=200`);
    for (const query of [
      { q: 'needle', regex: 'false', hostId: host, limit: '100' },
      { q: 'request \\d*7 needle', regex: 'true', hostId: host, limit: '100' },
    ]) {
      const r = await search(query);
      assert.deepEqual(
        matches(r.events).map((m) => m.text),
        expected,
      );
      assert.equal(end(r.events).reason, 'done');
    }
    // The summary pass decodes both; the gram filters then skip neither wrongly.
    await createLogRetentionRepository(t.db).summariseMissing(host, 100);
    const r = await search({ q: 'needle', hostId: host, limit: '100', process: 'mix' });
    assert.deepEqual(
      matches(r.events).map((m) => m.text),
      expected,
    );

    // A chunk whose data does not decode: the search fails with a clear error, the controller stays.
    await t.db
      .update(streamChunks)
      .set({ codec: chunkCodec.lz4, data: Buffer.from([0, 0, 4, 0, 0xff, 1]) })
      .where(middle);
    const actor = { id: owner.userId, role: 'owner' as const, ip: null };
    await assert.rejects(async () => {
      for await (const _ of await t.services.logSearch.start(actor, {
        q: 'hay',
        hostId: host,
        limit: 5000,
      })) {
        // drained
      }
    }, ChunkDecodeError);
    assert.equal((await t.request('/healthz')).status, 200);
    await t.db.delete(streamChunks).where(middle);
  });

  test('a client that goes away ends the scan', TIMEOUT, async () => {
    // Through HTTP: cancelling the body mid-stream is fine for the server.
    const res = await t.request(`/api/v1/logs/search?${new URLSearchParams({ q: 'tick', limit: '2000' })}`, {
      as: owner,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    // The route aborts the search's signal when its body is cancelled: the scan stops at once.
    const abort = new AbortController();
    const actor = { id: owner.userId, role: 'owner' as const, ip: null };
    const events = await t.services.logSearch.start(actor, { q: 'tick', limit: 2000 }, abort.signal);
    const first = await events.next();
    assert.equal(first.value?.type, 'match');
    abort.abort();
    let last: { type: string; reason?: string } | undefined;
    let count = 0;
    for await (const e of events) {
      last = e;
      count++;
    }
    assert.equal(last?.type, 'end');
    assert.equal(last?.reason, 'cancelled');
    assert.ok(count < 2000, `${count} events after the abort`);
  });
});
