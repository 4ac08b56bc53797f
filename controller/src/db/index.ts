// Opens the controller's database: embedded PGlite (default, data in `<dataDir>/db`) or PostgreSQL
// (`DATABASE_URL`, through postgres.js), behind one drizzle `PgDatabase` type, and applies the
// committed migrations before handing it out.
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { sql } from 'drizzle-orm';
import { secureDataDir } from '../config/data-dir.ts';
import { lockDatabaseDir } from './lock.ts';
import { DurableNodeFS, durableStartParams } from './pglite-durable.ts';
import * as schema from './schema/index.ts';

export { schema };
export type Schema = typeof schema;

/** The drizzle database handle every repository takes; the same type for both drivers. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/** A drizzle transaction handle (what `db.transaction(async (tx) => ...)` passes). */
export type Transaction = Parameters<Parameters<Db['transaction']>[0]>[0];

export type DriverName = 'pglite' | 'postgres';

/** An open database: the drizzle handle, which driver backs it, and how to close it. */
export interface OpenDatabase {
  db: Db;
  driver: DriverName;
  /** fsync(2) calls the embedded database has made so far (PGlite on disk only; tests read it). */
  fsyncs?: () => number;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /**
   * PostgreSQL URL; when unset the embedded PGlite database in `<dataDir>/db` is used (durable:
   * fsync on; one process at a time, else DatabaseInUse from ./lock.ts).
   */
  url?: string | undefined;
  /** The controller's data directory (absolute or relative to the working directory). */
  dataDir: string;
  /** Run PGlite in memory instead of `<dataDir>/db` (tests only). */
  inMemory?: boolean;
  /** postgres.js pool size (default 10). */
  maxConnections?: number;
  /** Where the migrations live; defaults to {@link migrationsFolder}. */
  migrationsFolder?: string;
}

/**
 * The committed drizzle-kit migrations. Found next to this file's bundle (`<dist>/drizzle`, where a
 * bundler step copies `controller/drizzle`) or, when running from source, at `controller/drizzle`.
 */
export const migrationsFolder: string = (() => {
  const candidates = [new URL('./drizzle/', import.meta.url), new URL('../../drizzle/', import.meta.url)];
  const found = candidates.find((u) => existsSync(new URL('meta/_journal.json', u)));
  return fileURLToPath(found ?? candidates[candidates.length - 1]!);
})();

/** Any two replicas starting at once must not both run migrations; this key serializes them. */
const MIGRATION_LOCK_KEY = 0x6b65656c; // "keel"

/**
 * Opens the database described by `options` and migrates it to the current schema.
 *
 * @example const { db, driver, close } = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir })
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<OpenDatabase> {
  const folder = options.migrationsFolder ?? migrationsFolder;
  if (options.url) return openPostgres(options.url, folder, options.maxConnections ?? 10);
  if (options.inMemory) return openPglite(undefined, folder);
  return openPglite(path.resolve(options.dataDir), folder);
}

async function openPglite(dataDir: string | undefined, folder: string): Promise<OpenDatabase> {
  const dir = dataDir === undefined ? undefined : path.join(dataDir, 'db');
  if (dataDir !== undefined) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (dir !== undefined) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // One process per directory (see lock.ts): a second one would lose or corrupt writes.
  const unlock = dir === undefined ? async () => {} : await lockDatabaseDir(dir);
  let client: PGlite;
  let fs: DurableNodeFS | undefined;
  try {
    // Durable: fsync on, and an fsync that reaches the disk (see pglite-durable.ts). PGlite is a
    // single connection. It serializes on its own: `transaction()` holds an exclusive lock until
    // COMMIT/ROLLBACK and every query outside waits for it (see db/index.test.ts).
    fs = dir === undefined ? undefined : new DurableNodeFS(dir);
    client = await PGlite.create(fs ? { fs, startParams: durableStartParams } : {});
    // PGlite makes its files with the process umask; nothing in the data dir is for other users.
    if (dataDir !== undefined) secureDataDir(dataDir);
  } catch (err) {
    await unlock();
    throw err;
  }
  const db = drizzlePglite({ client, schema });
  try {
    await migratePglite(db, { migrationsFolder: folder });
  } catch (err) {
    await client.close();
    await unlock();
    throw err;
  }
  return {
    db: db as unknown as Db,
    driver: 'pglite',
    fsyncs: () => fs?.fsyncs ?? 0,
    close: async () => {
      if (!client.closed) await client.close();
      await unlock();
    },
  };
}

async function openPostgres(url: string, folder: string, max: number): Promise<OpenDatabase> {
  const quiet = { onnotice: () => {} };
  // Migrate over a dedicated single connection so the session advisory lock and the migrator's
  // transaction run on the same backend.
  const migrationClient = postgres(url, { ...quiet, max: 1 });
  try {
    await migrationClient`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migratePostgres(drizzlePostgres({ client: migrationClient }), { migrationsFolder: folder });
    } finally {
      await migrationClient`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await migrationClient.end();
  }
  const client = postgres(url, { ...quiet, max });
  const db = drizzlePostgres({ client, schema });
  return {
    db: db as unknown as Db,
    driver: 'postgres',
    close: () => client.end({ timeout: 5 }),
  };
}

/** True when the database answers a trivial query (backs /readyz). */
export async function databaseReachable(db: Db): Promise<boolean> {
  try {
    await db.execute(sql`select 1`);
    return true;
  } catch {
    return false;
  }
}
