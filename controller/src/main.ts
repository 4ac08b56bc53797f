// keel-controller: `serve` (default) runs the controller; `create-admin` adds an admin account;
// `fingerprint` prints the key fingerprint agents pin. Graceful shutdown on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { loadConfig, ConfigError } from './config/index.ts';
import { createLogger } from './log.ts';
import { startController } from './server.ts';
import { startLocalAgent } from './local-agent.ts';
import { loadControllerIdentity } from './identity.ts';
import { openDatabase } from './db/index.ts';
import { createServices } from './services/index.ts';
import { createLocalBus } from './bus/index.ts';

const USAGE = `Usage:
  keel-controller [serve] [--local-agent]   run the controller (config: env vars, KEEL_CONFIG file)
  keel-controller create-admin --username NAME [--password-stdin] [--role owner|admin]
  keel-controller fingerprint               print the controller key fingerprint agents pin
See docs/operations.md for every setting.`;

/** Runs the CLI; resolves with the exit code (serve resolves when the server has stopped). */
export async function main(argv: string[]): Promise<number> {
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : 'serve';
  const rest = command === argv[0] ? argv.slice(1) : argv;
  let config;
  try {
    config = loadConfig(process.env, process.env.KEEL_CONFIG);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      return 1;
    }
    throw err;
  }
  const log = createLogger({ logLevel: config.logLevel });
  switch (command) {
    case 'serve':
      return serve(rest, config, log);
    case 'fingerprint':
      console.log(loadControllerIdentity(config.dataDir).fingerprint);
      return 0;
    case 'create-admin': {
      const identity = loadControllerIdentity(config.dataDir);
      const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
      try {
        const services = createServices({
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
        });
        const { createAdminCommand } = await import('./cli/create-admin.ts');
        return await createAdminCommand(rest, { users: services.users });
      } finally {
        await database.close();
      }
    }
    case 'help':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 1;
  }
}

async function serve(
  argv: string[],
  config: ReturnType<typeof loadConfig>,
  log: ReturnType<typeof createLogger>,
) {
  const { values } = parseArgs({ args: argv, options: { 'local-agent': { type: 'boolean' } }, strict: true });
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
