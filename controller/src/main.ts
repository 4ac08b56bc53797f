// keel-controller: `serve` (default) runs the controller; `create-admin` adds an admin account;
// `join-token` prints a new join token's secret (install.sh --with-agent); `fingerprint` prints
// the key fingerprint agents pin; `--help` prints the usage. A usage error (unknown command or
// option) is one line on stderr and exit 2. Graceful shutdown on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { loadConfig, ConfigError } from './config/index.ts';
import { createLogger } from './log.ts';
import { argsErrorReason } from './cli/args.ts';
import { startController } from './server.ts';
import { startLocalAgent } from './local-agent.ts';
import { loadControllerIdentity } from './identity.ts';
import { loadSecretBox } from './secrets.ts';
import { openDatabase, type OpenDatabase } from './db/index.ts';
import { DatabaseInUse } from './db/lock.ts';
import { createServices } from './services/index.ts';
import { createLocalBus } from './bus/index.ts';

export const USAGE = `Usage:
  keel-controller [serve] [--local-agent]   run the controller (config: env vars, KEEL_CONFIG file)
  keel-controller create-admin --username NAME [--password-stdin] [--role owner|admin]
  keel-controller reset-password --username NAME [--password-stdin]
  keel-controller audit verify [--json]     check the audit trail's hash chain and anchor
  keel-controller join-token [--uses N] [--ttl SECONDS] [--note TEXT]   print a new join token's secret
  keel-controller fingerprint               print the controller key fingerprint agents pin
  keel-controller backup FILE               write the key, data dir and database to FILE (0600)
  keel-controller restore [--force] FILE    put a backup back (every controller stopped)
  keel-controller help | --help             this text

Common settings (environment): KEEL_PORT (8080), KEEL_DATA_DIR (./data), KEEL_PUBLIC_URL (the URL
agents and browsers use; set it when other hosts connect), DATABASE_URL (PostgreSQL; embedded
PGlite when unset), KEEL_LOG_LEVEL (info). See docs/operations.md for every setting.`;

/** Exit codes: 0 done, 1 failed, 2 usage error (unknown command or option). */
export const exitCodes = { ok: 0, error: 1, usage: 2 } as const;

const commands = new Set([
  'serve',
  'create-admin',
  'reset-password',
  'audit',
  'join-token',
  'fingerprint',
  'backup',
  'restore',
  'help',
]);
const serveOptions = {
  'local-agent': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** One line for a usage error, pointing at the help. */
function usageError(message: string): number {
  console.error(`keel-controller: ${message} (see keel-controller --help)`);
  return exitCodes.usage;
}

/** Runs the CLI; resolves with the exit code (serve resolves when the server has stopped). */
export async function main(argv: string[]): Promise<number> {
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : 'serve';
  const rest = command === argv[0] ? argv.slice(1) : argv;
  if (!commands.has(command)) return usageError(`unknown command "${command}"`);
  // Usage is checked before anything is read or opened, so --help works whatever the config says.
  let serveArgs: { 'local-agent'?: boolean; help?: boolean } = {};
  if (command === 'serve' || command === 'fingerprint' || command === 'help') {
    try {
      serveArgs = parseArgs({
        args: rest,
        options: command === 'serve' ? serveOptions : { help: serveOptions.help },
        strict: true,
        allowPositionals: false,
      }).values as typeof serveArgs;
    } catch (err) {
      return usageError(argsErrorReason(err));
    }
    if (command === 'help' || serveArgs.help) {
      console.log(USAGE);
      return exitCodes.ok;
    }
  }
  const { createAdminCommand, createAdminUsage } = await import('./cli/create-admin.ts');
  if (command === 'create-admin' && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(createAdminUsage);
    return exitCodes.ok;
  }
  const { resetPasswordCommand, resetPasswordUsage } = await import('./cli/reset-password.ts');
  if (command === 'reset-password' && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(resetPasswordUsage);
    return exitCodes.ok;
  }
  const { auditCommand, auditUsage } = await import('./cli/audit.ts');
  if (command === 'audit' && (rest.length === 0 || rest.includes('--help') || rest.includes('-h'))) {
    console.log(auditUsage);
    return rest.length === 0 ? exitCodes.usage : exitCodes.ok;
  }
  const { joinTokenCommand, joinTokenUsage } = await import('./cli/join-token.ts');
  if (command === 'join-token' && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(joinTokenUsage);
    return exitCodes.ok;
  }

  const { backupCommand, backupUsage } = await import('./cli/backup.ts');
  const { restoreCommand, restoreUsage } = await import('./cli/restore.ts');
  if ((command === 'backup' || command === 'restore') && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(command === 'backup' ? backupUsage : restoreUsage);
    return exitCodes.ok;
  }

  let config;
  try {
    config = loadConfig(process.env, process.env.KEEL_CONFIG);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      return exitCodes.error;
    }
    throw err;
  }
  // Whatever the controller creates (database files, keys, the local agent's state) is its own.
  process.umask(0o077);
  const log = createLogger({ logLevel: config.logLevel });
  switch (command) {
    case 'serve':
      return serve(serveArgs, config, log);
    case 'fingerprint':
      console.log(loadControllerIdentity(config.dataDir).fingerprint);
      return exitCodes.ok;
    case 'backup':
      return backupCommand(rest, config);
    case 'restore':
      return restoreCommand(rest, config);
    default: {
      // create-admin, join-token
      const identity = loadControllerIdentity(config.dataDir);
      let database: OpenDatabase | null = null;
      try {
        const services = async () => {
          database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
          return createServices({
            db: database.db,
            bus: createLocalBus(),
            gateway: {
              request: () => Promise.reject(new Error('no gateway in the CLI')),
              disconnect: () => false,
              isOnline: () => false,
            },
            log,
            config,
            controllerFingerprint: identity.fingerprint,
            secrets: loadSecretBox({ dataDir: config.dataDir }),
          });
        };
        if (command === 'join-token') {
          return await joinTokenCommand(rest, { joinTokens: async () => (await services()).joinTokens });
        }
        if (command === 'audit') {
          return await auditCommand(rest, { audit: async () => (await services()).audit });
        }
        if (command === 'reset-password') {
          return await resetPasswordCommand(rest, { users: async () => (await services()).users });
        }
        return await createAdminCommand(rest, { users: async () => (await services()).users });
      } catch (err) {
        if (err instanceof DatabaseInUse) {
          // PGlite is one process: writing beside the running controller would be lost.
          console.error(
            `keel-controller ${command}: the controller is running on ${config.dataDir}` +
              `${err.pid ? ` (pid ${err.pid})` : ''}, and its embedded database allows one process at a time. ` +
              `Stop it (systemctl stop keel-controller, or Ctrl-C on npm start), run ${command}, then start it again; ` +
              'or do it from the console while it runs.',
          );
          return exitCodes.error;
        }
        throw err;
      } finally {
        await (database as OpenDatabase | null)?.close();
      }
    }
  }
}

async function serve(
  values: { 'local-agent'?: boolean },
  config: ReturnType<typeof loadConfig>,
  log: ReturnType<typeof createLogger>,
) {
  const controller = await startController(config, log);
  if (controller.firstAdmin) {
    // Printed once, on the install that created it; never logged as a field.
    process.stdout.write(
      `\n  Keel is ready at ${controller.url}\n  First admin: ${controller.firstAdmin.username}\n  Password:    ${controller.firstAdmin.password}\n  (shown only now; create more admins with: keel-controller create-admin --username NAME)\n\n`,
    );
  } else {
    process.stdout.write(`\n  Keel is ready at ${controller.url}\n\n`);
  }
  let stopAgent: (() => Promise<void>) | null = null;
  if (values['local-agent']) {
    try {
      stopAgent = await startLocalAgent({
        dataDir: config.dataDir,
        controllerUrl: `http://127.0.0.1:${controller.port}`,
        fingerprint: controller.fingerprint,
        services: controller.services,
        log,
      });
    } catch (err) {
      log.error({ err }, 'local agent not started');
    }
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await stopAgent?.();
  await controller.close();
  return 0;
}
