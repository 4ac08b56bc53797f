// `keel-controller create-admin`: adds an admin account from the command line, e.g. on a fresh
// install or after losing the first password. The password is generated and printed once, or read
// from stdin with --password-stdin (so it never appears in argv or shell history).
import type { Readable, Writable } from 'node:stream';
import { KeelError } from '@keel/shared';
import type { UsersService } from '../services/users.ts';
import { parseCommandArgs, readFirstLine, usageFailure } from './args.ts';

type AdminCreator = Pick<UsersService, 'createAdmin'>;

export interface CreateAdminDeps {
  /**
   * The users service (`createServices(...).users`), or a function that opens it: called only once
   * the arguments are valid, so a usage error never opens the database.
   */
  users: AdminCreator | (() => Promise<AdminCreator>);
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
}

export const createAdminUsage = `Usage: keel-controller create-admin --username <name> [--role admin|owner] [--password-stdin]

Creates a user who can manage the fleet. Without --password-stdin a password is generated and
printed once. With it, the password is the first line read from standard input.`;

/**
 * Runs the command with `argv` (the arguments after `create-admin`); resolves to the exit code.
 * @example process.exitCode = await createAdminCommand(process.argv.slice(3), { users: services.users })
 */
export async function createAdminCommand(argv: string[], deps: CreateAdminDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const values = parseCommandArgs(
    'create-admin',
    argv,
    {
      username: { type: 'string', short: 'u' },
      role: { type: 'string', default: 'admin' },
      'password-stdin': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    createAdminUsage,
    { stdout, stderr },
  );
  if (typeof values === 'number') return values;
  if (!values.username) {
    return usageFailure('create-admin', '--username is required', stderr);
  }
  if (values.role !== 'admin' && values.role !== 'owner') {
    stderr.write(`--role must be admin or owner (got ${JSON.stringify(values.role)}).\n`);
    return 2;
  }

  let password: string | undefined;
  if (values['password-stdin']) {
    password = await readFirstLine(deps.stdin ?? process.stdin);
  }

  try {
    const users = typeof deps.users === 'function' ? await deps.users() : deps.users;
    const created = await users.createAdmin({ username: values.username, password, role: values.role });
    stdout.write(`Created user "${created.user.username}" with role ${created.user.role}.\n`);
    if (created.generated) {
      stdout.write(`Password (shown only now, store it safely): ${created.password}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof KeelError) {
      stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
