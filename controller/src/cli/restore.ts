// `keel-controller restore FILE`: puts a `keel-controller backup` back — the data directory (the
// controller key first of all: agents pin it, and refuse any other) and the database: the
// embedded one inside the data directory, PostgreSQL through pg_restore into DATABASE_URL.
//
// It refuses to run over a live controller (the embedded database's lock is held, or another
// session uses the PostgreSQL database), to restore a backup of one driver into the other, and to
// replace a data directory or a database that is not empty unless --force (then the old data
// directory is kept beside it as <dir>.before-restore-<time>).
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { DatabaseInUse, lockDatabaseDir } from '../db/lock.ts';
import {
  BACKUP_FORMAT,
  BACKUP_VERSION,
  libpqEnv,
  parseFileArgs,
  runTool,
  type BackupConfig,
  type BackupManifest,
  type CommandIo,
} from './backup.ts';

export const restoreUsage = `Usage: keel-controller restore [--force] FILE

Restores a keel-controller backup into KEEL_DATA_DIR (and into DATABASE_URL when the backup is of
a PostgreSQL controller; pg_restore from the postgresql-client package). Every controller on this
data must be stopped. Without --force the data directory and the database must be empty; with
--force the data directory is moved aside to <dir>.before-restore-<time> and the database's objects
are replaced.`;

const isEmptyDir = (dir: string) => !existsSync(dir) || readdirSync(dir).length === 0;

/** Runs `restore` with `argv` (after the command name); resolves to the exit code. */
export async function restoreCommand(
  argv: string[],
  config: BackupConfig,
  io: CommandIo = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseFileArgs('restore', argv, { force: { type: 'boolean' } }, restoreUsage, {
    stdout,
    stderr,
  });
  if (typeof parsed === 'number') return parsed;
  const force = parsed.flags.force === true;
  const fail = (message: string) => {
    stderr.write(`keel-controller restore: ${message}\n`);
    return 1;
  };
  const file = path.resolve(parsed.file);
  if (!existsSync(file)) return fail(`${file} does not exist`);
  const dataDir = path.resolve(config.dataDir);
  const driver = config.databaseUrl ? 'postgres' : 'pglite';
  mkdirSync(path.dirname(dataDir), { recursive: true });
  const work = mkdtempSync(path.join(path.dirname(dataDir), '.keel-restore-'));
  let unlock: (() => Promise<void>) | null = null;
  let sql: postgres.Sql | null = null;
  try {
    // Unpacked beside the data directory (same filesystem: the switch is a rename).
    try {
      await runTool(['tar', '-xzf', file, '-C', work, '--no-same-owner']);
    } catch (err) {
      return fail(`${file} is not a keel-controller backup (${(err as Error).message.split('\n')[0]})`);
    }
    let manifest: BackupManifest;
    try {
      manifest = JSON.parse(readFileSync(path.join(work, 'keel-backup.json'), 'utf8')) as BackupManifest;
    } catch {
      return fail(`${file} is not a keel-controller backup (no keel-backup.json)`);
    }
    if (manifest.format !== BACKUP_FORMAT || manifest.version !== BACKUP_VERSION) {
      return fail(
        `${file} is a backup of format ${String(manifest.format)} ${String(manifest.version)}, not ${BACKUP_FORMAT} ${BACKUP_VERSION}`,
      );
    }
    if (!existsSync(path.join(work, 'data/controller.key'))) return fail(`${file} holds no controller key`);
    if (manifest.driver !== driver) {
      return fail(
        manifest.driver === 'postgres'
          ? 'this is a backup of a PostgreSQL controller: set DATABASE_URL to the (empty) database to restore it into'
          : 'this is a backup of the embedded database: unset DATABASE_URL to restore it',
      );
    }
    // Nothing may run on what is replaced.
    if (driver === 'pglite') {
      try {
        unlock = await lockDatabaseDir(path.join(dataDir, 'db'));
      } catch (err) {
        if (!(err instanceof DatabaseInUse)) throw err;
        return fail(
          `the controller is running on ${dataDir}${err.pid ? ` (pid ${err.pid})` : ''}; stop it first`,
        );
      }
    } else {
      sql = postgres(config.databaseUrl!, { max: 1, onnotice: () => {} });
      const [others] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()`;
      if (others!.n > 0) {
        return fail(`${others!.n} other session(s) use the database: stop every controller on it first`);
      }
      const [tables] = await sql<{ n: number }[]>`
        select count(*)::int as n from information_schema.tables
        where table_schema not in ('pg_catalog', 'information_schema')`;
      if (tables!.n > 0 && !force) {
        return fail(
          'the database is not empty; restore into an empty database, or give --force to replace what is in it',
        );
      }
    }
    if (!isEmptyDir(dataDir) && !force) {
      return fail(
        `${dataDir} is not empty; restore into an empty data directory, or give --force (it is then kept as ${path.basename(dataDir)}.before-restore-<time>)`,
      );
    }
    if (driver === 'postgres') {
      const url = new URL(config.databaseUrl!);
      await runTool(
        [
          'pg_restore',
          '--no-owner',
          '--no-privileges',
          '--exit-on-error',
          '--single-transaction',
          ...(force ? ['--clean', '--if-exists'] : []),
          '--dbname',
          decodeURIComponent(url.pathname.replace(/^\//, '')) || 'postgres',
          path.join(work, 'postgres.dump'),
        ],
        libpqEnv(config.databaseUrl!),
      );
    }
    let keptAs: string | null = null;
    if (existsSync(dataDir)) {
      if (isEmptyDir(dataDir)) rmSync(dataDir, { recursive: true });
      else {
        keptAs = `${dataDir}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        renameSync(dataDir, keptAs);
      }
    }
    renameSync(path.join(work, 'data'), dataDir);
    chmodSync(dataDir, 0o700);
    chmodSync(path.join(dataDir, 'controller.key'), 0o600);
    stdout.write(
      `Restored the backup of ${manifest.createdAt} into ${dataDir}${driver === 'postgres' ? ' and the PostgreSQL database' : ''} (key ${manifest.fingerprint}).\n` +
        (keptAs ? `The data directory that was there is kept as ${keptAs}.\n` : '') +
        'Start the controller: agents reconnect to it with the key they pinned.\n',
    );
    return 0;
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  } finally {
    await sql?.end();
    if (unlock) await unlock();
    rmSync(work, { recursive: true, force: true });
  }
}
