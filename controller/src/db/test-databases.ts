// The databases the storage tests run against: PGlite always, PostgreSQL too when
// KEEL_TEST_DATABASE_URL is set (e.g. postgres://postgres@127.0.0.1:5432/test). Each create()
// makes a fresh, migrated empty database (a temp PGlite dir, or a new PostgreSQL database named
// keel_test_<pid>_<random>), so test files can run in parallel; cleanup() removes it. Both start
// from a copy of a migrated template (PGlite: test/helpers/database-template.ts; PostgreSQL:
// `create database … template keel_test_template_<hash of the migrations>`, made once by the
// first test process that needs it and kept in the cluster): migrating a new PostgreSQL database
// cost ~0.6 CPU-s of its backend and ~0.1 of the test process, and 1–2 s, where the copy costs
// ~0.35 and 0.5 s. `create({ empty: true })` gives a database no migration has touched (the tests
// of the migrations themselves).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import postgres from 'postgres';
import { hashMigrations, seedDatabase } from '../../../test/helpers/database-template.ts';
import {
  openDatabase,
  type Db,
  type DriverName,
  type OpenDatabase,
  type OpenDatabaseOptions,
} from './index.ts';
import { hosts } from './schema/hosts.ts';

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
  /** `empty`: a PostgreSQL database without the migrations (PGlite's always starts migrated). */
  create(opts?: { empty?: boolean }): Promise<TestDatabase>;
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

const databaseUrl = (adminUrl: string, name: string): string => {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
};

/** PostgreSQL's error code of a failed statement (postgres.js puts it on the error). */
const codeOf = (err: unknown): unknown => (err as { code?: unknown }).code;

const postgresTemplates = new Map<string, Promise<string>>();

/**
 * The name of the migrated empty template database on `adminUrl`'s cluster, made on first use.
 * Made under a name of its own and renamed when migrated: a concurrent maker loses the rename
 * (and drops its copy), and no session is ever connected to the final name, which
 * `create database … template` requires.
 */
function postgresTemplate(adminUrl: string): Promise<string> {
  let made = postgresTemplates.get(adminUrl);
  if (made) return made;
  made = (async () => {
    const name = `keel_test_template_${hashMigrations(createHash('sha256')).digest('hex').slice(0, 16)}`;
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    try {
      const found = await admin`select 1 from pg_database where datname = ${name}`;
      if (found.length > 0) return name;
      const work = `${name}_${process.pid}_${randomBytes(4).toString('hex')}`;
      await admin.unsafe(`create database "${work}"`);
      try {
        await (await openDatabase({ url: databaseUrl(adminUrl, work), dataDir: tmpdir() })).close();
        // The closed pool's backends may take a moment to leave (55006: still accessed).
        for (let attempt = 0; ; attempt++) {
          try {
            await admin.unsafe(`alter database "${work}" rename to "${name}"`);
            await pruneTemplates(admin, name).catch(() => []);
            return name;
          } catch (err) {
            if (codeOf(err) === '42P04') return name; // another process made it first
            if (codeOf(err) !== '55006' || attempt >= 50) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      } finally {
        await admin.unsafe(`drop database if exists "${work}" with (force)`);
      }
    } finally {
      await admin.end();
    }
  })();
  // A failed attempt is not kept: the next create() tries again.
  made.catch(() => postgresTemplates.delete(adminUrl));
  postgresTemplates.set(adminUrl, made);
  return made;
}

/** How many templates (the newest, by creation) a cluster keeps: checkouts on older migrations beside this one. */
export const keptTemplates = 3;

/**
 * Drops the cluster's older templates once `made` is made (migrations changed): each is a ~10 MB
 * database that nothing else removes. The `keptTemplates` newest stay (by oid, which grows with
 * creation), `made` among them, for runs of other checkouts on older migrations. A template a run
 * is copying at that moment refuses the drop (55006) and stays until the next new template; the
 * copy it was making succeeds. The maker ignores its errors. `prefix`: the names it prunes (a
 * test's own).
 */
export async function pruneTemplates(
  admin: postgres.Sql,
  made: string,
  prefix = 'keel_test_template_',
): Promise<string[]> {
  const exact = new RegExp(`^${prefix}[0-9a-f]{16}$`);
  const older = (
    await admin<{ datname: string }[]>`
      select datname from pg_database
      where starts_with(datname, ${prefix}) and datname <> ${made} order by oid desc`
  )
    .map((r) => r.datname)
    .filter((name) => exact.test(name)) // only a template's exact name
    .slice(keptTemplates - 1);
  const dropped: string[] = [];
  for (const name of older) {
    try {
      // Not `with (force)`: a run copying it keeps it.
      await admin.unsafe(`drop database if exists "${name}"`);
      dropped.push(name);
    } catch {
      // In use (55006) or gone: left for the next prune.
    }
  }
  return dropped;
}

function postgresTarget(adminUrl: string): TestDatabaseTarget {
  return {
    driver: 'postgres',
    async create(opts = {}) {
      const template = opts.empty ? undefined : await postgresTemplate(adminUrl);
      const name = `keel_test_${process.pid}_${randomBytes(4).toString('hex')}`;
      const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`create database "${name}"${template ? ` template "${template}"` : ''}`);
      } catch (err) {
        await admin.end();
        throw err;
      }
      return tracked('postgres', { url: databaseUrl(adminUrl, name), dataDir: tmpdir() }, async () => {
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

/** Inserts a host row with a fresh random key (no enrollment, no agent) and returns its id. */
export async function insertTestHost(db: Db, name = 'h'): Promise<string> {
  const [row] = await db
    .insert(hosts)
    .values({ name, publicKey: randomBytes(32).toString('base64url') })
    .returning({ id: hosts.id });
  if (!row) throw new Error('host not stored');
  return row.id;
}
