// `keel-controller join-token`: makes a join token from the command line and prints only its secret
// on stdout, once. install.sh uses it for `controller --with-agent` (the controller host enrolls
// its own agent before anyone has signed in); scripts can use it too. The secret is never logged;
// the creation is audited as the system actor `cli`.
import type { Writable } from 'node:stream';
import type { JoinTokensService } from '../services/join-tokens.ts';
import { parseCommandArgs, usageFailure } from './args.ts';

type TokenMaker = Pick<JoinTokensService, 'create'>;

export interface JoinTokenDeps {
  /** The join tokens service, or a function that opens it (only once the arguments are valid). */
  joinTokens: TokenMaker | (() => Promise<TokenMaker>);
  stdout?: Writable;
  stderr?: Writable;
}

export const joinTokenUsage = `Usage: keel-controller join-token [--uses N] [--ttl SECONDS] [--note TEXT]

Makes a join token (default: 1 use, 3600 s) and prints its secret alone on standard output. With
the embedded database the controller must be stopped first; with PostgreSQL it may be running.`;

const MAX_TTL_SECONDS = 30 * 24 * 60 * 60;

/** A whole number within [min, max], or undefined when `raw` is not one. */
function intWithin(raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= min && n <= max ? n : undefined;
}

/**
 * Runs the command with `argv` (the arguments after `join-token`); resolves to the exit code.
 * @example const secret = execFileSync('keel-controller', ['join-token', '--uses', '1'], { encoding: 'utf8' }).trim()
 */
export async function joinTokenCommand(argv: string[], deps: JoinTokenDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const fail = (message: string) => usageFailure('join-token', message, stderr);
  const values = parseCommandArgs(
    'join-token',
    argv,
    {
      uses: { type: 'string' },
      ttl: { type: 'string' },
      note: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    joinTokenUsage,
    { stdout, stderr },
  );
  if (typeof values === 'number') return values;
  const uses = values.uses === undefined ? 1 : intWithin(values.uses, 1, 10_000);
  if (uses === undefined) return fail('--uses must be a whole number from 1 to 10000');
  const ttlSeconds = values.ttl === undefined ? undefined : intWithin(values.ttl, 60, MAX_TTL_SECONDS);
  if (values.ttl !== undefined && ttlSeconds === undefined) {
    return fail(`--ttl must be a whole number of seconds from 60 to ${MAX_TTL_SECONDS}`);
  }
  const note = values.note?.trim().slice(0, 200) || 'keel-controller join-token';
  const joinTokens = typeof deps.joinTokens === 'function' ? await deps.joinTokens() : deps.joinTokens;
  const created = await joinTokens.create({ uses, ttlSeconds, note }, { id: 'cli', ip: null });
  stdout.write(`${created.secret}\n`);
  return 0;
}
