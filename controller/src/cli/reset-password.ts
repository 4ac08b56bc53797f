// `keel-controller reset-password`: sets a new password for a user from the command line (an admin
// locked out, or the only owner who forgot theirs). The password is generated and printed once, or
// read from stdin with --password-stdin; every session of the user ends; audited as `system`.
import { parseArgs } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import { KeelError } from '@keel/shared';
import type { UsersService } from '../services/users.ts';

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

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs the command with `argv` (the arguments after `reset-password`); resolves to the exit code. */
export async function resetPasswordCommand(argv: string[], deps: ResetPasswordDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  let values: { username?: string; 'password-stdin'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        username: { type: 'string', short: 'u' },
        'password-stdin': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!.replace(/\. To specify .*$/, '');
    stderr.write(`keel-controller reset-password: ${reason} (see keel-controller reset-password --help)\n`);
    return 2;
  }
  if (values.help) {
    stdout.write(`${resetPasswordUsage}\n`);
    return 0;
  }
  if (!values.username) {
    stderr.write(
      'keel-controller reset-password: --username is required (see keel-controller reset-password --help)\n',
    );
    return 2;
  }
  let password: string | undefined;
  if (values['password-stdin'])
    password = (await readAll(deps.stdin ?? process.stdin)).split(/\r?\n/)[0] ?? '';
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
