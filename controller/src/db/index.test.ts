// Proves openDatabase on every test driver: the committed migrations apply (with chunk data kept
// out of PostgreSQL's own compression), reopening re-applies nothing and keeps the data, replicas
// opening at once do not race, and PGlite's single connection serializes concurrent transactions.
// The embedded driver is durable (fsync on, and every commit reaches fsync(2)), refuses a second
// process on its directory, and tightens the modes of a data dir that was open to other users.
import assert from 'node:assert/strict';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { count, eq, sql } from 'drizzle-orm';
import type { Db, OpenDatabase } from './index.ts';
import { migrationsFolder, openDatabase } from './index.ts';
import { DatabaseInUse } from './lock.ts';
import { joinTokens } from './schema/join-tokens.ts';
import { testDatabaseTargets, type TestDatabase } from './test-databases.ts';
import { seedDatabase } from '../../../test/helpers/database-template.ts';

/** Rows of a raw `db.execute()`: postgres.js returns an array, PGlite `{ rows }`. */
async function rows<T>(db: Db, query: ReturnType<typeof sql>): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

const tables = [
  'audit_log',
  'hosts',
  'join_tokens',
  'sessions',
  'stream_chunks',
  'stream_cursors',
  'stream_gaps',
  'users',
];

test('the migrations folder is found beside the source and holds the journal', () => {
  assert.ok(path.isAbsolute(migrationsFolder));
  assert.ok(existsSync(path.join(migrationsFolder, 'meta', '_journal.json')));
});

test('a database made by the first release (0000_init only) is carried forward by the later migrations', async (t) => {
  // Committed migrations are never rewritten (generate-migrations.mjs): a data dir from an earlier
  // release has the older journal entries applied and must start on this build with its rows kept.
  const first = mkdtempSync(path.join(tmpdir(), 'keel-mig-first-'));
  t.after(() => rmSync(first, { recursive: true, force: true }));
  mkdirSync(path.join(first, 'meta'));
  const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string }[];
  };
  assert.ok(journal.entries.length > 1, 'expected migrations after 0000_init');
  const firstTag = journal.entries[0]!.tag;
  writeFileSync(
    path.join(first, 'meta', '_journal.json'),
    JSON.stringify({ ...journal, entries: journal.entries.slice(0, 1) }),
  );
  copyFileSync(path.join(migrationsFolder, `${firstTag}.sql`), path.join(first, `${firstTag}.sql`));

  // A copy of a database made with 0000_init alone (made once and kept, as the test template is).
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keel-mig-data-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  await seedDatabase(dataDir, {}, first);
  const old = await openDatabase({ dataDir, migrationsFolder: first });
  // A row written by the old schema, then this build's migrator on the same database.
  await old.db.execute(
    sql`INSERT INTO join_tokens (secret_hash, expires_at, uses_left) VALUES (${'ab'.repeat(32)}, now() + interval '1 hour', 1)`,
  );
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  await migrate(old.db as never, { migrationsFolder });
  const [kept] = await rows<{ n: number }>(old.db, sql`SELECT count(*)::int AS n FROM join_tokens`);
  assert.equal(kept?.n, 1);
  const [latest] = await rows<{ n: number }>(
    old.db,
    sql`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'stream_gaps' AND column_name = 'reason'`,
  );
  assert.equal(latest?.n, 1, 'the later migrations ran');
  await old.close();
});

for (const target of testDatabaseTargets()) {
  describe(`openDatabase (${target.driver})`, () => {
    let testDb: TestDatabase;
    let handle: OpenDatabase;

    before(async () => {
      // PostgreSQL: an empty database, so that these tests run the migrations themselves (the
      // other storage tests start from a migrated template).
      testDb = await target.create({ empty: true });
      handle = await testDb.open();
    });
    after(() => testDb.cleanup());

    test('applies the migrations: every table, and chunk data stored EXTERNAL', async () => {
      assert.equal(handle.driver, target.driver);
      const found = await rows<{ table_name: string }>(
        handle.db,
        sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
      );
      for (const t of tables)
        assert.ok(
          found.some((r) => r.table_name === t),
          `table ${t} missing`,
        );
      const [storage] = await rows<{ attstorage: string }>(
        handle.db,
        sql`select attstorage from pg_attribute where attrelid = 'stream_chunks'::regclass and attname = 'data'`,
      );
      assert.equal(storage?.attstorage, 'e');
    });

    test('reopening applies nothing twice and keeps the data', async () => {
      const applied = async (db: Db) =>
        Number(
          (
            await rows<{ n: number | string }>(
              db,
              sql`select count(*) as n from drizzle.__drizzle_migrations`,
            )
          )[0]?.n,
        );
      const before = await applied(handle.db);
      assert.ok(before >= 1);
      await handle.db.insert(joinTokens).values({ secretHash: 'reopen', expiresAt: new Date(), usesLeft: 1 });
      // PGlite: one process per data dir, so close first; PostgreSQL: keep both to prove sharing.
      if (target.driver === 'pglite') await handle.close();
      const again = await testDb.open();
      assert.equal(await applied(again.db), before);
      const [row] = await again.db.select().from(joinTokens).where(eq(joinTokens.secretHash, 'reopen'));
      assert.equal(row?.usesLeft, 1);
      handle = again;
    });

    if (target.driver === 'postgres') {
      test('replicas opening a fresh database at the same moment both succeed', async () => {
        const fresh = await target.create({ empty: true });
        try {
          const [a, b, c] = await Promise.all([fresh.open(), fresh.open(), fresh.open()]);
          const [n] = await a!.db.select({ n: count() }).from(joinTokens);
          assert.equal(n?.n, 0);
          assert.ok(b && c);
        } finally {
          await fresh.cleanup();
        }
      });
    }

    if (target.driver === 'pglite') {
      test('durable: fsync on, WAL synced with fsync, and each commit reaches fsync(2)', async () => {
        const [fsync] = await rows<{ fsync: string }>(handle.db, sql`show fsync`);
        assert.equal(fsync?.fsync, 'on');
        const [method] = await rows<{ wal_sync_method: string }>(handle.db, sql`show wal_sync_method`);
        assert.equal(method?.wal_sync_method, 'fsync');
        const before = handle.fsyncs!();
        for (let i = 0; i < 3; i++) {
          await handle.db
            .insert(joinTokens)
            .values({ secretHash: `durable-${i}`, expiresAt: new Date(), usesLeft: 1 });
        }
        assert.ok(
          handle.fsyncs!() - before >= 3,
          `fsync(2) calls for 3 commits: ${handle.fsyncs!() - before}`,
        );
      });

      test('a second open of the same directory is refused while the first holds it', async () => {
        await assert.rejects(testDb.open(), (err: unknown) => {
          assert.ok(err instanceof DatabaseInUse);
          assert.match(err.message, /in use by another keel-controller process \(pid \d+\)/);
          return true;
        });
        // The holder still works.
        await handle.db.select().from(joinTokens).limit(1);
      });

      test('concurrent transactions on the single connection run one at a time', async () => {
        const db = handle.db;
        const [token] = await db
          .insert(joinTokens)
          .values({ secretHash: 'counter', expiresAt: new Date(), usesLeft: 0 })
          .returning();
        // Read-modify-write with a pause in between: interleaved, these would lose updates.
        await Promise.all(
          Array.from({ length: 25 }, () =>
            db.transaction(async (tx) => {
              const [row] = await tx.select().from(joinTokens).where(eq(joinTokens.id, token!.id));
              await tick();
              await tx
                .update(joinTokens)
                .set({ usesLeft: row!.usesLeft + 1 })
                .where(eq(joinTokens.id, token!.id));
            }),
          ),
        );
        const [row] = await db.select().from(joinTokens).where(eq(joinTokens.id, token!.id));
        assert.equal(row?.usesLeft, 25);
      });

      test('a query outside a transaction waits for it and never sees its rolled-back writes', async () => {
        const db = handle.db;
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let inserted!: () => void;
        const didInsert = new Promise<void>((resolve) => (inserted = resolve));
        const tx = db
          .transaction(async (t) => {
            await t
              .insert(joinTokens)
              .values({ secretHash: 'uncommitted', expiresAt: new Date(), usesLeft: 1 });
            inserted();
            await held;
            throw new Error('roll back');
          })
          .catch((err: Error) => err.message);
        await didInsert;
        let outsideDone = false;
        const outside = db
          .select()
          .from(joinTokens)
          .where(eq(joinTokens.secretHash, 'uncommitted'))
          .then((r) => {
            outsideDone = true;
            return r;
          });
        for (let i = 0; i < 20; i++) await tick();
        assert.equal(outsideDone, false, 'outside query ran inside the open transaction');
        release();
        assert.equal(await tx, 'roll back');
        assert.deepEqual(await outside, []);
      });
    }
  });
}

test('an existing data dir open to other users is tightened at open (PGlite)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keel-modes-'));
  try {
    // A data dir made by hand (0755) holding world-writable database and agent files: every file
    // of an existing database (a copy of the test template) made 0666, every directory 0777.
    chmodSync(dir, 0o755);
    await seedDatabase(dir);
    const loosen = (p: string) => {
      const isDir = statSync(p).isDirectory();
      chmodSync(p, isDir ? 0o777 : 0o666);
      if (isDir) for (const name of readdirSync(p)) loosen(path.join(p, name));
    };
    loosen(path.join(dir, 'db'));
    for (const sub of ['agent', 'agent/spool']) {
      mkdirSync(path.join(dir, sub));
      chmodSync(path.join(dir, sub), 0o777);
    }
    for (const file of ['agent/agent.key', 'agent/spool/00000001.seg', 'notes.txt']) {
      writeFileSync(path.join(dir, file), 'x');
      chmodSync(path.join(dir, file), 0o666);
    }
    const handle = await openDatabase({ dataDir: dir });
    try {
      const open: string[] = [];
      const walk = (p: string) => {
        const st = statSync(p);
        if (st.mode & 0o077) open.push(`${path.relative(dir, p)} ${(st.mode & 0o777).toString(8)}`);
        if (st.isDirectory()) for (const name of readdirSync(p)) walk(path.join(p, name));
      };
      walk(dir);
      // Everything of Keel's is owner-only now, PGlite's own files included; a file that is not
      // Keel's is left as it was, and the 0700 data dir keeps it from other users anyway.
      assert.deepEqual(open, ['notes.txt 666']);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
    } finally {
      await handle.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
