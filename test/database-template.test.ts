// The embedded test databases' template (test/helpers/database-template.ts): a copy opens with the
// template's settings (16 MB of shared buffers instead of PostgreSQL's 128 MB), migrated and empty;
// the PostgreSQL templates (controller/src/db/test-databases.ts) of older migrations are pruned.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { openDatabase } from '../controller/src/db/index.ts';
import { keptTemplates, pruneTemplates } from '../controller/src/db/test-databases.ts';
import { seedDatabase } from './helpers/database-template.ts';

test('a copy of the template opens with its settings, migrated and empty', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-template-'));
  try {
    await seedDatabase(dir);
    const { db, close } = await openDatabase({ dataDir: dir });
    try {
      const setting = (await db.execute(sql`show shared_buffers`)) as unknown as {
        rows: { shared_buffers: string }[];
      };
      assert.equal(setting.rows[0]?.shared_buffers, '16MB');
      const hosts = (await db.execute(sql`select count(*)::int as n from hosts`)) as unknown as {
        rows: { n: number }[];
      };
      assert.equal(hosts.rows[0]?.n, 0);
    } finally {
      await close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  "PostgreSQL: an older migrations' templates are dropped when a new one is made, the newest kept",
  { skip: !process.env.KEEL_TEST_DATABASE_URL && 'KEEL_TEST_DATABASE_URL is not set', timeout: 60_000 },
  async () => {
    const admin = postgres(process.env.KEEL_TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
    // A prefix of this test's own: the real templates are in use by the run's other files.
    const prefix = `keel_test_prune_${process.pid}_`;
    const names = [0, 1, 2, 3, 4].map((i) => `${prefix}${String(i).repeat(16)}`);
    const left = async () =>
      (
        await admin<{ datname: string }[]>`
          select datname from pg_database where starts_with(datname, ${prefix}) order by oid`
      ).map((r) => r.datname);
    try {
      for (const name of names) await admin.unsafe(`create database "${name}"`);
      await admin.unsafe(`create database "${prefix}other"`); // not a template's name: never dropped
      // One is in use (a run copying it): it refuses the drop and stays.
      const user = postgres(new URL(`/${names[0]}`, process.env.KEEL_TEST_DATABASE_URL!).toString(), {
        max: 1,
      });
      try {
        await user`select 1`;
        const made = names[4]!;
        const dropped = await pruneTemplates(admin, made, prefix);
        assert.equal(keptTemplates, 3);
        assert.deepEqual(dropped, [names[1]]);
        assert.deepEqual(await left(), [names[0], names[2], names[3], names[4], `${prefix}other`]);
      } finally {
        await user.end();
      }
      assert.deepEqual(await pruneTemplates(admin, names[4]!, prefix), [names[0]]);
      assert.deepEqual(await left(), [names[2], names[3], names[4], `${prefix}other`]);
    } finally {
      for (const name of [...names, `${prefix}other`])
        await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    }
  },
);
