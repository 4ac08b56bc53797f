// `keel-controller reset-password`: sets a new password for a user from the command line (an admin
// locked out, or the only owner who forgot theirs). The password is generated and printed once, or
// read from stdin with --password-stdin; every session of the user ends; audited as `system`.
import type { Readable, Writable } from 'node:stream';
import { KeelError } from '@keel/shared';
import type { UsersService } from '../services/users.ts';
import { parseCommandArgs, readFirstLine, usageFailure } from './args.ts';

type PasswordResetter = Pick<UsersService, 'resetPasswordByName'>;

export interface ResetPasswordDeps {
  /** The users service, or a function that opens it (only once the arguments are valid). */
  users: PasswordResetter | (() => Promise<PasswordResetter>);
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
}

export const resetPasswordUsage = `Usage: keel-controller reset-password --username <name> [--password-stdin]

Sets a new password for the user and ends their sessions. Without --password-stdin a password is
generated and printed once. With it, the password is the first line read from standard input.`;

/** Runs the command with `argv` (the arguments after `reset-password`); resolves to the exit code. */
export async function resetPasswordCommand(argv: string[], deps: ResetPasswordDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const values = parseCommandArgs(
    'reset-password',
    argv,
    {
      username: { type: 'string', short: 'u' },
      'password-stdin': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    resetPasswordUsage,
    { stdout, stderr },
  );
  if (typeof values === 'number') return values;
  if (!values.username) {
    return usageFailure('reset-password', '--username is required', stderr);
  }
  let password: string | undefined;
  if (values['password-stdin']) password = await readFirstLine(deps.stdin ?? process.stdin);
  try {
    const users = typeof deps.users === 'function' ? await deps.users() : deps.users;
    const result = await users.resetPasswordByName(values.username, password);
    stdout.write(`Password of "${values.username}" reset; their sessions ended.\n`);
    if (result.generated) stdout.write(`Password (shown only now, store it safely): ${result.password}\n`);
    return 0;
  } catch (err) {
    if (err instanceof KeelError) {
      stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
