// Proves the controller logger writes JSON lines at the configured level (in the format the agent
// shares), censors secrets, and never logs the parameters of a failed database query.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { logFormat } from '@keel/shared';
import { seedDatabase } from '../../test/helpers/database-template.ts';
import { openDatabase } from './db/index.ts';
import { users } from './db/schema/users.ts';
import { createLogger } from './log.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

test('JSON lines at the configured level', () => {
  const { lines, stream } = capture();
  const log = createLogger({ logLevel: 'warn' }, stream);
  log.info('hidden');
  log.warn({ host: 'h1' }, 'shown');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.msg, 'shown');
  assert.equal(lines[0]?.level, 'warn');
  assert.equal(lines[0]?.host, 'h1');
  assert.equal(lines[0]?.name, 'keel-controller');
  assert.equal(typeof lines[0]?.time, 'string');
});

test('the same level and time format as the agent (shared/src/log-format.ts)', () => {
  const controller = capture();
  createLogger({ logLevel: 'info' }, controller.stream).info('x');
  const agent = capture();
  // What agent/src/main.ts builds its logger from.
  pino({ name: 'keel-agent', level: 'info', ...logFormat }, agent.stream).info('x');
  for (const line of [controller.lines[0], agent.lines[0]]) {
    assert.equal(line?.level, 'info');
    assert.match(String(line?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
});

test('secrets are censored at any of the first three levels', () => {
  const { lines, stream } = capture();
  const log = createLogger({ logLevel: 'info' }, stream);
  log.info(
    {
      password: 'p1',
      token: 't1',
      user: { name: 'ann', password: 'p2', secret: 's2' },
      req: {
        headers: { cookie: 'keel_session=abc', authorization: 'Bearer x', 'set-cookie': 'y', host: 'ok' },
      },
      enroll: { tokenSecret: 'kjt_secret' },
    },
    'request',
  );
  const text = JSON.stringify(lines[0]);
  for (const secret of ['p1', 't1', 'p2', 's2', 'abc', 'Bearer x', '"y"', 'kjt_secret']) {
    assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
  }
  assert.ok(text.includes('"host":"ok"'));
  assert.ok(text.includes('"name":"ann"'));
});

test('a failing insert is logged without its query parameters (a secret it carried stays out)', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ logLevel: 'info' }, stream);
  const dir = mkdtempSync(path.join(tmpdir(), 'keel-log-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await seedDatabase(dir); // a copy of a migrated empty database: no initdb
  const database = await openDatabase({ dataDir: dir });
  try {
    const secret = 'argon2-hash-that-must-not-leak-7f3a';
    await database.db.insert(users).values({ username: 'ann', passwordHash: 'first', role: 'viewer' });
    // A unique violation (the username) with a secret among the parameters...
    const dup = await database.db
      .insert(users)
      .values({ username: 'ann', passwordHash: secret, role: 'viewer' })
      .catch((err: unknown) => err);
    // ...and a value PostgreSQL quotes in its own message.
    const bad = await database.db
      .execute(sql`select ${`not-a-uuid-${secret}`}::uuid`)
      .catch((err: unknown) => err);
    assert.ok(dup instanceof Error && bad instanceof Error);
    log.error({ err: dup }, 'insert failed');
    log.error({ err: bad }, 'select failed');
    log.error({ error: dup }, 'under another key');
    log.error(dup as Error, 'the error itself as the object');
    const text = JSON.stringify(lines);
    assert.ok(!text.includes(secret), 'the secret reached the log');
    assert.equal(lines.length, 4);
    // What helps an operator stays: the SQL text and PostgreSQL's reason.
    assert.match(text, /insert into \\"users\\"/);
    assert.match(text, /duplicate key value violates unique constraint/);
  } finally {
    await database.close();
  }
});
