// The databases the storage tests run against: PGlite always, PostgreSQL too when
// KEEL_TEST_DATABASE_URL is set (e.g. postgres://postgres@127.0.0.1:5432/test). Each create()
// makes a fresh, empty database (a temp PGlite dir, or a new PostgreSQL database named
// keel_test_<pid>_<random>), so test files can run in parallel; cleanup() removes it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import postgres from 'postgres';
import { seedDatabase } from '../../../test/helpers/database-template.ts';
import { openDatabase, type DriverName, type OpenDatabase, type OpenDatabaseOptions } from './index.ts';

/** One fresh database for a test file. */
export interface TestDatabase {
  driver: DriverName;
  /** What openDatabase() gets; open it again to test what survives a restart. */
  options: OpenDatabaseOptions;
  /** Opens (and migrates) the database; everything opened is closed by cleanup(). */
  open(): Promise<OpenDatabase>;
  /** Closes every handle opened here and deletes the database. */
  cleanup(): Promise<void>;
}

/** A driver the storage suite runs against. */
export interface TestDatabaseTarget {
  driver: DriverName;
  create(): Promise<TestDatabase>;
}

function tracked(
  driver: DriverName,
  options: OpenDatabaseOptions,
  remove: () => Promise<void>,
): TestDatabase {
  const opened: OpenDatabase[] = [];
  return {
    driver,
    options,
    async open() {
      const handle = await openDatabase(options);
      opened.push(handle);
      return handle;
    },
    async cleanup() {
      for (const handle of opened.splice(0)) await handle.close();
      await remove();
    },
  };
}

const pglite: TestDatabaseTarget = {
  driver: 'pglite',
  async create() {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'keel-test-'));
    await seedDatabase(dataDir); // a copy of a migrated empty database: no initdb per test file
    return tracked('pglite', { dataDir }, () => rm(dataDir, { recursive: true, force: true }));
  },
};

function postgresTarget(adminUrl: string): TestDatabaseTarget {
  return {
    driver: 'postgres',
    async create() {
      const name = `keel_test_${process.pid}_${randomBytes(4).toString('hex')}`;
      const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`create database "${name}"`);
      } catch (err) {
        await admin.end();
        throw err;
      }
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return tracked('postgres', { url: url.toString(), dataDir: tmpdir() }, async () => {
        try {
          await admin.unsafe(`drop database if exists "${name}" with (force)`);
        } finally {
          await admin.end();
        }
      });
    },
  };
}

/** The drivers to test: PGlite, plus PostgreSQL when KEEL_TEST_DATABASE_URL is set. */
export function testDatabaseTargets(env: NodeJS.ProcessEnv = process.env): TestDatabaseTarget[] {
  const url = env.KEEL_TEST_DATABASE_URL;
  return url ? [pglite, postgresTarget(url)] : [pglite];
}
