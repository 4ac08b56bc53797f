// The embedded test databases' template (test/helpers/database-template.ts): a copy opens with the
// template's settings (16 MB of shared buffers instead of PostgreSQL's 128 MB), migrated and empty.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../controller/src/db/index.ts';
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
