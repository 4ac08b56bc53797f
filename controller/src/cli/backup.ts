// `keel-controller backup FILE`: the controller's whole state in one file — a gzip'd tar holding
// `keel-backup.json` (format, driver, time, key fingerprint), `data/` (the data directory: the
// controller key, the audit anchor, terminal recordings, and with the embedded driver the database
// itself) and, with PostgreSQL, `postgres.dump` (pg_dump's custom format). The file is 0600: it
// holds the controller's private key, without which enrolled agents refuse the controller.
//
// Consistency: the embedded database is one process's files, so the backup takes the database
// lock (the controller must be stopped; it says so otherwise) and copies a closed directory.
// PostgreSQL is dumped by pg_dump, one snapshot, while the controller keeps running.
// `keel-controller restore FILE` (restore.ts) puts it back.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { lockDatabaseDir, DatabaseInUse } from '../db/lock.ts';
import { loadControllerIdentity } from '../identity.ts';
import { parseArgs } from 'node:util';
import { argsErrorReason, usageFailure } from './args.ts';

export const BACKUP_FORMAT = 'keel-backup';
export const BACKUP_VERSION = 1;

/** What `keel-backup.json` says. */
export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  driver: 'pglite' | 'postgres';
  createdAt: string;
  /** The controller key's fingerprint (what agents pin). */
  fingerprint: string;
}

export const backupUsage = `Usage: keel-controller backup FILE

Writes the controller's state to FILE (mode 0600; it holds the controller key): the data directory
(key, audit anchor, recordings; the embedded database too) and, with PostgreSQL, a pg_dump of the
database. The embedded database needs the controller stopped; PostgreSQL is dumped while it runs
(pg_dump from the postgresql-client package). Restore with keel-controller restore FILE.`;

/** What the command reads from the configuration. */
export interface BackupConfig {
  dataDir: string;
  databaseUrl?: string | undefined;
}

export interface CommandIo {
  stdout?: Writable;
  stderr?: Writable;
}

/** Runs argv (no shell) with extra environment; rejects with its stderr when it fails. */
export function runTool(argv: string[], env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 8000) err += d.toString();
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'ENOENT' ? `${argv[0]} is not installed` : e.message)),
    );
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${argv[0]} exited ${code}: ${err.trim().slice(0, 2000)}`)),
    );
  });
}

/**
 * libpq environment for a PostgreSQL URL, so pg_dump / pg_restore get the password in their
 * environment rather than on a command line every local user can read.
 */
export function libpqEnv(url: string): Record<string, string> {
  const u = new URL(url);
  const env: Record<string, string> = {
    PGHOST: decodeURIComponent(u.hostname) || 'localhost',
    PGPORT: u.port || '5432',
    PGDATABASE: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
  };
  if (u.username) env.PGUSER = decodeURIComponent(u.username);
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const sslmode = u.searchParams.get('sslmode') ?? u.searchParams.get('ssl');
  if (sslmode) env.PGSSLMODE = sslmode === 'true' ? 'require' : sslmode;
  return env;
}

/**
 * Parses `<command> [options] FILE` strictly (one FILE, the given boolean flags, --help); returns
 * the flags and the file, or the exit code once --help or a usage error was answered.
 */
export function parseFileArgs(
  command: string,
  argv: string[],
  flags: Record<string, { type: 'boolean' }>,
  usage: string,
  io: { stdout: Writable; stderr: Writable },
): { file: string; flags: Record<string, boolean | undefined> } | number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...flags, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    return usageFailure(command, argsErrorReason(err), io.stderr);
  }
  if (parsed.values.help) {
    io.stdout.write(`${usage}\n`);
    return 0;
  }
  if (parsed.positionals.length !== 1) return usageFailure(command, 'give exactly one FILE', io.stderr);
  return { file: parsed.positionals[0]!, flags: parsed.values as Record<string, boolean | undefined> };
}

/** Runs `backup` with `argv` (after the command name); resolves to the exit code. */
export async function backupCommand(
  argv: string[],
  config: BackupConfig,
  io: CommandIo = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseFileArgs('backup', argv, {}, backupUsage, { stdout, stderr });
  if (typeof parsed === 'number') return parsed;
  const file = path.resolve(parsed.file);
  if (existsSync(file)) {
    stderr.write(`keel-controller backup: ${file} exists; give a new file name\n`);
    return 1;
  }
  const dataDir = path.resolve(config.dataDir);
  if (!existsSync(path.join(dataDir, 'controller.key'))) {
    stderr.write(
      `keel-controller backup: no controller in ${dataDir} (no controller.key); check KEEL_DATA_DIR\n`,
    );
    return 1;
  }
  const driver = config.databaseUrl ? 'postgres' : 'pglite';
  const work = mkdtempSync(path.join(path.dirname(file), '.keel-backup-'));
  const partial = path.join(work, 'backup.tar.gz');
  let unlock: (() => Promise<void>) | null = null;
  try {
    if (driver === 'pglite') {
      try {
        unlock = await lockDatabaseDir(path.join(dataDir, 'db'));
      } catch (err) {
        if (!(err instanceof DatabaseInUse)) throw err;
        stderr.write(
          `keel-controller backup: the controller is running on ${dataDir}${err.pid ? ` (pid ${err.pid})` : ''}; ` +
            'the embedded database is copied only while it is stopped: stop it first, or use PostgreSQL for backups of a running controller\n',
        );
        return 1;
      }
    }
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      driver,
      createdAt: new Date().toISOString(),
      fingerprint: loadControllerIdentity(dataDir).fingerprint,
    };
    writeFileSync(path.join(work, 'keel-backup.json'), `${JSON.stringify(manifest, null, 2)}\n`, {
      mode: 0o600,
    });
    const members = ['keel-backup.json'];
    if (driver === 'postgres') {
      await runTool(
        [
          'pg_dump',
          '--format=custom',
          '--no-owner',
          '--no-privileges',
          '--file',
          path.join(work, 'postgres.dump'),
        ],
        libpqEnv(config.databaseUrl!),
      );
      members.push('postgres.dump');
    }
    // data/ is the data directory as it is; with PGlite its db/ is closed and locked by us.
    await runTool([
      'tar',
      '-czf',
      partial,
      '-C',
      work,
      ...members,
      '-C',
      dataDir,
      '--transform',
      's,^\\.,data,',
      '.',
    ]);
    chmodSync(partial, 0o600);
    renameSync(partial, file);
    stdout.write(
      `Backup written to ${file} (${statSync(file).size} bytes, ${driver === 'pglite' ? 'embedded database' : 'PostgreSQL via pg_dump'}, key ${manifest.fingerprint}).\n` +
        'It holds the controller key: keep it as secret as the key itself.\n',
    );
    return 0;
  } catch (err) {
    stderr.write(`keel-controller backup: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    if (unlock) await unlock();
    rmSync(work, { recursive: true, force: true });
  }
}
