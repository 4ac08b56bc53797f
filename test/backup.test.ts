// Proves `keel-controller backup` / `restore` on both drivers: a controller with an enrolled agent,
// a join token, an audit trail and stored host events is backed up (file mode 0600), wiped, and
// restored onto an empty data directory (and an empty PostgreSQL database); the agent reconnects
// to the restored controller by itself (same key, so its pin holds), and hosts, tokens, events
// and the audit chain are back, the chain verifying. Backup of a running embedded controller and
// restore over a running controller, over data that is there, or across drivers are refused.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import postgres from 'postgres';
import { backupCommand } from '../controller/src/cli/backup.ts';
import { restoreCommand } from '../controller/src/cli/restore.ts';
import { loadConfig } from '../controller/src/config/index.ts';
import {
  controllerBin,
  enrollNewAgent,
  freePort,
  kill,
  removeDir,
  runAgent,
  startTestController,
  tempDir,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { need } from './install-helpers.ts';

const adminUrl = process.env.KEEL_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const mode = (p: string) => statSync(p).mode & 0o777;

/** Runs keel-controller with `args` and env; resolves with its exit code and output. */
function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [controllerBin, ...args], {
      env: { ...process.env, KEEL_LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/**
 * Runs `keel-controller backup|restore` in this process, through the commands' own functions as
 * main.ts calls them (loadConfig of the environment, output collected), for the refusals: each
 * returns before anything is written, and a controller process costs ~0.6 s of CPU just to load.
 * The backup and the restore that succeed run as the command (`cli`).
 */
async function inProcess(
  command: 'backup' | 'restore',
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  const config = loadConfig({ KEEL_LOG_LEVEL: 'silent', ...env });
  const run = command === 'backup' ? backupCommand : restoreCommand;
  const code = await run(args, config, { stdout: sink, stderr: sink });
  return { code, out };
}

for (const driver of ['pglite', 'postgres'] as const) {
  describe(`backup and restore (${driver})`, () => {
    const procs: Proc[] = [];
    const dirs: string[] = [];
    let dropDatabase: (() => Promise<void>) | null = null;
    after(async () => {
      for (const p of procs) await kill(p);
      await dropDatabase?.();
      for (const d of dirs) removeDir(d);
    });

    test(
      'backup, wipe, restore: the agent reconnects and hosts, tokens, events and the audit chain are back',
      { timeout: 240_000, skip: driver === 'postgres' ? need('pg_dump') || need('pg_restore') : false },
      async () => {
        const work = tempDir('keel-backup-');
        dirs.push(work);
        const dataDir = join(work, 'data');
        const env: Record<string, string> = {};
        let recreate = async () => rmSync(dataDir, { recursive: true, force: true });
        if (driver === 'postgres') {
          const name = `keel_backup_${process.pid}_${Date.now()}`;
          const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
          await admin.unsafe(`create database "${name}"`);
          const url = new URL(adminUrl);
          url.pathname = `/${name}`;
          env.DATABASE_URL = url.toString();
          recreate = async () => {
            rmSync(dataDir, { recursive: true, force: true });
            await admin.unsafe(`drop database if exists "${name}" with (force)`);
            await admin.unsafe(`create database "${name}"`);
          };
          dropDatabase = async () => {
            await admin.unsafe(`drop database if exists "${name}" with (force)`);
            await admin.end();
          };
        }
        const cliEnv = { ...env, KEEL_DATA_DIR: dataDir };
        const port = await freePort();
        let controller = await startTestController({ dataDir, port, env });

        // A host with stored events, a join token and audited actions.
        const stateDir = await enrollNewAgent(controller, 'backed-up');
        dirs.push(stateDir);
        const agent = runAgent(stateDir, { KEEL_AGENT_TICK_MS: '100' });
        procs.push(agent);
        const [host] = await controller.services.hosts.list();
        await waitFor(() => controller.gateway.isOnline(host!.id), 30_000, 'agent online');
        await waitFor(
          async () => (await controller.services.hostEvents.tail(host!.id, 100)).events.length >= 10,
          30_000,
          'events stored',
        );
        const token = await controller.services.joinTokens.create(
          { ttlSeconds: 3600, uses: 3, note: 'kept across restore' },
          { id: 'system', ip: null },
        );
        const auditBefore = await controller.services.audit.verify();
        assert.equal(auditBefore.ok, true);
        const file = join(work, 'keel.backup');
        const eventsBefore = (await controller.services.hostEvents.tail(host!.id, 100_000)).events.length;

        if (driver === 'pglite') {
          // The embedded database is copied only while the controller is stopped.
          const running = await inProcess('backup', [file], cliEnv);
          assert.equal(running.code, 1, running.out);
          assert.match(running.out, /the controller is running/);
          assert.ok(!existsSync(file));
          await controller.close();
        } else {
          // pg_dump takes one snapshot while the controller runs.
          await controller.services.audit.record('system', 'test.before-backup', null, {});
        }
        const backup = await cli(['backup', file], cliEnv);
        assert.equal(backup.code, 0, backup.out);
        assert.match(backup.out, /Backup written/);
        assert.equal(mode(file), 0o600, 'the backup holds the controller key');
        const rowsBefore =
          driver === 'postgres' ? (await controller.services.audit.verify()).rows : auditBefore.rows;
        if (driver === 'postgres') await controller.close();
        // A second backup to the same name is refused (never overwritten).
        assert.equal((await inProcess('backup', [file], cliEnv)).code, 1);

        // Wiped; a controller started on the empty place blocks a restore while it runs.
        await recreate();
        const squatter = await startTestController({ dataDir, port: await freePort(), env });
        const refused = await inProcess('restore', [file], cliEnv);
        assert.equal(refused.code, 1, refused.out);
        assert.match(refused.out, driver === 'pglite' ? /the controller is running/ : /other session/);
        await squatter.close();
        // What the squatter left is data: refused without --force.
        const notEmpty = await inProcess('restore', [file], cliEnv);
        assert.equal(notEmpty.code, 1, notEmpty.out);
        assert.match(notEmpty.out, /not empty/);
        await recreate();
        // The other driver's backup is refused.
        const crossEnv =
          driver === 'pglite'
            ? { ...cliEnv, DATABASE_URL: adminUrl }
            : { KEEL_DATA_DIR: dataDir, DATABASE_URL: '' };
        const cross = await inProcess('restore', [file], crossEnv);
        assert.equal(cross.code, 1, cross.out);
        assert.match(cross.out, driver === 'pglite' ? /unset DATABASE_URL/ : /set DATABASE_URL/);
        mkdirSync(dataDir, { recursive: true });

        const restored = await cli(['restore', file], cliEnv);
        assert.equal(restored.code, 0, restored.out);
        assert.equal(mode(dataDir), 0o700);
        assert.equal(mode(join(dataDir, 'controller.key')), 0o600);

        // The restored controller, on the address the agent knows: it reconnects by itself.
        controller = await startTestController({ dataDir, port, env });
        try {
          await waitFor(() => controller.gateway.isOnline(host!.id), 90_000, 'agent back online');
          const hosts = await controller.services.hosts.list();
          assert.deepEqual(
            hosts.map((h) => [h.id, h.name]),
            [[host!.id, 'backed-up']],
          );
          const tokens = await controller.services.joinTokens.list();
          assert.ok(tokens.some((t) => t.id === token.token.id && t.note === 'kept across restore'));
          const audit = await controller.services.audit.verify();
          assert.equal(audit.ok, true, JSON.stringify(audit));
          assert.ok(audit.rows >= rowsBefore, `${audit.rows} audit rows, ${rowsBefore} before`);
          const events = (await controller.services.hostEvents.tail(host!.id, 100000)).events;
          assert.ok(events.length >= eventsBefore, `${events.length} events, ${eventsBefore} before`);
          assert.ok(events.some((e) => e.kind === 'tick'));
        } finally {
          await controller.close();
        }
      },
    );
  });
}
