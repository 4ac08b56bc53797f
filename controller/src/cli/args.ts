// Argument handling shared by the keel-controller commands: strict flags, --help, one line for a
// usage error (what was wrong and where the help is, exit 2), and a password read from stdin.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Readable, Writable } from 'node:stream';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>['values'];

/** The first line of a parseArgs error, without node's hint about `--`. */
export function argsErrorReason(err: unknown): string {
  return (err as Error).message.split('\n')[0]!.replace(/\. To specify .*$/, '');
}

/** Writes the one-line usage error of `keel-controller <command>`; returns exit code 2. */
export function usageFailure(command: string, message: string, stderr: Writable): number {
  stderr.write(`keel-controller ${command}: ${message} (see keel-controller ${command} --help)\n`);
  return 2;
}

/**
 * Parses the arguments of `keel-controller <command>` (strict, no positionals; `options` should
 * include `help`). Returns the values, or the exit code once --help or a usage error was answered.
 *
 * @example const parsed = parseCommandArgs('join-token', argv, options, usage, { stdout, stderr });
 *          if (typeof parsed === 'number') return parsed;
 */
export function parseCommandArgs<const O extends Options>(
  command: string,
  argv: string[],
  options: O,
  usage: string,
  io: { stdout: Writable; stderr: Writable },
): Values<O> | number {
  let values: Values<O>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    return usageFailure(command, argsErrorReason(err), io.stderr);
  }
  if ((values as { help?: boolean }).help) {
    io.stdout.write(`${usage}\n`);
    return 0;
  }
  return values;
}

/** The first line of `stream` (a password given with --password-stdin). */
export async function readFirstLine(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}
