// A migrated, empty embedded database that tests start from instead of running initdb each
// time: creating one costs ~4 s of CPU, copying it ~0.3 s, and nearly every controller test
// (unit and end-to-end) opens at least one. Made once, kept under a name that changes with the
// migrations and the PGlite version, in KEEL_TEST_CACHE_DIR (`npm test` puts it in memory,
// /dev/shm/keel-test-cache, see scripts/test.mjs) or else the temp dir. A test of the migrations themselves can
// start from a template of its own folder (e.g. only the first release's migration applied).
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

const templates = new Map<string, Promise<string>>();

/**
 * Settings the template's postgresql.conf gets (every copy inherits them). PostgreSQL's default
 * 128 MB of shared buffers are set up (touched) at every open: ~52,000 page faults and ~0.4 CPU-s
 * to open a copy here, against ~22,000 and ~0.29 at 16 MB (1 Dec, docs/testing.md), and a test
 * database holds a few MB. Caching only: what the database stores and answers is the same.
 */
export const templateSettings = 'shared_buffers = 16MB\n';

/** Adds a migrations folder's files (names and contents) to `hash`: a template's name changes with them. */
export function hashMigrations(
  hash: ReturnType<typeof createHash>,
  migrations = join(repoRoot, 'controller/drizzle'),
): ReturnType<typeof createHash> {
  for (const name of readdirSync(migrations, { recursive: true, encoding: 'utf8' }).sort()) {
    const file = join(migrations, name);
    if (name.endsWith('.sql') || name.endsWith('.json')) hash.update(name).update(readFileSync(file));
  }
  return hash;
}

/**
 * The template's directory, made on first use (a concurrent maker loses the rename race).
 * scripts/test.mjs makes the controller's before the test processes start (beside the console
 * build), so that they do not each make it at once on a cold cache; the database code is imported
 * only to make one.
 */
export function databaseTemplate(migrations = join(repoRoot, 'controller/drizzle')): Promise<string> {
  let template = templates.get(migrations);
  if (template) return template;
  template = (async () => {
    const hash = createHash('sha256');
    // PGlite's version (its package.json is not exported, so it is read where npm put it).
    const pglite = ['node_modules', 'controller/node_modules']
      .map((d) => join(repoRoot, d, '@electric-sql/pglite/package.json'))
      .find((f) => existsSync(f));
    hash.update(pglite ? readFileSync(pglite) : 'unknown');
    hash.update(templateSettings);
    hashMigrations(hash, migrations);
    const cache = process.env.KEEL_TEST_CACHE_DIR ?? tmpdir();
    mkdirSync(cache, { recursive: true });
    const dir = join(cache, `keel-test-db-${hash.digest('hex').slice(0, 16)}`);
    if (existsSync(join(dir, 'PG_VERSION'))) {
      // Touched on use: scripts/test.mjs prunes old templates, but none used within the hour (a run
      // beside that one, on other migrations, may be copying it).
      try {
        utimesSync(dir, new Date(), new Date());
      } catch {
        // Pruned meanwhile: the copy below says so.
      }
      return dir;
    }
    const work = mkdtempSync(join(cache, 'keel-test-db-make-'));
    try {
      const { openDatabase } = await import('../../controller/src/db/index.ts');
      await (await openDatabase({ dataDir: work, migrationsFolder: migrations })).close();
      // The last setting of a name wins, so these override initdb's lines above them.
      appendFileSync(
        join(work, 'db/postgresql.conf'),
        `\n# test/helpers/database-template.ts: test databases only\n${templateSettings}`,
      );
      try {
        renameSync(join(work, 'db'), dir);
      } catch (err) {
        if (!existsSync(join(dir, 'PG_VERSION'))) throw err;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    return dir;
  })();
  templates.set(migrations, template);
  return template;
}

/**
 * Puts a copy of the migrated empty database into a new data dir (`<dataDir>/db`, where
 * openDatabase looks), so opening it takes a fraction of initdb's time. Does nothing when the
 * data dir already has a database (a restart) or `env` names a PostgreSQL DATABASE_URL.
 * `migrationsFolder`: migrated with these migrations instead of the controller's.
 *
 * @example await seedDatabase(dir); const { db } = await openDatabase({ dataDir: dir });
 */
export async function seedDatabase(
  dataDir: string,
  env: Record<string, string | undefined> = {},
  migrationsFolder?: string,
): Promise<void> {
  if (env.DATABASE_URL || existsSync(join(dataDir, 'db'))) return;
  cpSync(await databaseTemplate(migrationsFolder), join(dataDir, 'db'), { recursive: true });
}
