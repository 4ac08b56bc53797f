// Process entry of keel-agent: reads the command line (usage text, flags, where the join token
// comes from), runs the command and exits with its code. A usage mistake (unknown command or
// flag, missing value) prints one line and exits 2, like other Unix tools; `--help`, `help` and
// `<command> --help` print the usage text and exit 0.
// The commands' modules load only when a command runs, so help and usage mistakes answer at once.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AGENT_VERSION } from './version.ts';

/** Exit codes of the command line itself (main.ts has the commands' own). */
const exitCodes = { ok: 0 } as const;
/** Exit code of a usage mistake. */
const USAGE_ERROR = 2;

const USAGE = `Usage:
  keel-agent enroll --controller URL --pin sha256:FINGERPRINT [--name NAME] [--state-dir DIR]
                    [--token-file FILE | --token-file - | --token TOKEN]
      redeem a join token (from KEEL_JOIN_TOKEN, a file, stdin with "-", or --token) and pin
      the controller's key; the token is read from the environment or a file so that it never
      shows in the process list (--token puts it there, readable by every local user)
  keel-agent run [--state-dir DIR]          keep this host connected to its controller
  keel-agent identity [--state-dir DIR]     print this agent's public key and fingerprint
  keel-agent version                        print the agent's version
  keel-agent help [COMMAND]                 print this text (also: --help, COMMAND --help)

Needs Node.js >= 20.19.
Environment: KEEL_JOIN_TOKEN (enroll), KEEL_AGENT_STATE_DIR (default /var/lib/keel-agent),
KEEL_AGENT_LOG_LEVEL (info), KEEL_AGENT_SPOOL_BYTES (67108864), KEEL_AGENT_HEARTBEAT_MS (5000),
KEEL_AGENT_TICK_MS (off).`;

const stateDirOption = { 'state-dir': { type: 'string' } } as const;
const helpOption = { help: { type: 'boolean', short: 'h' } } as const;

/** The flags each command takes. */
const commandOptions = {
  enroll: {
    controller: { type: 'string' },
    pin: { type: 'string' },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    name: { type: 'string' },
    ...stateDirOption,
  },
  run: stateDirOption,
  identity: stateDirOption,
  version: {},
  help: {},
} as const satisfies Record<string, ParseArgsConfig['options']>;

type Command = keyof typeof commandOptions;

/** A mistake on the command line: reported in one line, exit 2. */
class UsageError extends Error {}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** Quotes one word for a POSIX shell when it holds anything beyond a safe set. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The one-line message for a parseArgs failure (its own messages run to several sentences). */
function describeParseError(err: Error & { code?: string }, command: string): string {
  const flag = /'([^']+)'/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${flag ?? ''} for "${command}"`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `option ${flag?.split(' ')[0] ?? ''} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${flag ? `"${flag}"` : ''} for "${command}"`;
    default:
      return err.message.split('\n')[0]!;
  }
}

/**
 * The join token, from exactly one place: --token-file (a path, or "-" for stdin), --token, or
 * the environment variable KEEL_JOIN_TOKEN.
 */
function readJoinToken(values: { token?: string; 'token-file'?: string }): string {
  if (values.token !== undefined && values['token-file'] !== undefined)
    throw new UsageError('give the join token once: --token-file or --token, not both');
  let token: string | undefined;
  let from: string;
  if (values['token-file'] !== undefined) {
    const file = values['token-file'];
    from = file === '-' ? 'stdin' : file;
    try {
      token = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the join token from ${from}: ${(err as Error).message}`);
    }
  } else if (values.token !== undefined) {
    from = '--token';
    token = values.token;
    console.error(
      'warning: --token shows the join token to every local user (process list); ' +
        'prefer KEEL_JOIN_TOKEN or --token-file',
    );
  } else {
    from = 'KEEL_JOIN_TOKEN';
    token = env('KEEL_JOIN_TOKEN');
    if (token === undefined)
      throw new UsageError('enroll needs a join token: set KEEL_JOIN_TOKEN or give --token-file FILE');
  }
  token = token.trim();
  if (token === '') throw new UsageError(`the join token from ${from} is empty`);
  return token;
}

/** Runs keel-agent with these arguments (without node and the script) and returns the exit code. */
async function cli(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h') {
    (first === undefined ? console.error : console.log)(USAGE);
    return first === undefined ? USAGE_ERROR : exitCodes.ok;
  }
  if (!Object.hasOwn(commandOptions, first)) {
    console.error(
      first.startsWith('-')
        ? `keel-agent: unknown option ${first} (see keel-agent --help)`
        : `keel-agent: unknown command "${first}" (see keel-agent --help)`,
    );
    return USAGE_ERROR;
  }
  const command = first as Command;
  try {
    return await runCommand(command, rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`keel-agent: ${err.message} (see keel-agent --help)`);
      return USAGE_ERROR;
    }
    throw err;
  }
}

async function runCommand(command: Command, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...commandOptions[command], ...helpOption },
      strict: true,
      allowPositionals: command === 'help',
    });
  } catch (err) {
    throw new UsageError(describeParseError(err as Error & { code?: string }, command));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const str = (name: string): string | undefined => values[name] as string | undefined;
  if (values.help) command = 'help';
  const stateDir = str('state-dir') ?? env('KEEL_AGENT_STATE_DIR') ?? '/var/lib/keel-agent';
  switch (command) {
    case 'help': {
      const topic = parsed.positionals[0];
      if (topic !== undefined && !Object.hasOwn(commandOptions, topic))
        throw new UsageError(`unknown command "${topic}"`);
      console.log(USAGE);
      return exitCodes.ok;
    }
    case 'version':
      console.log(AGENT_VERSION);
      return exitCodes.ok;
    case 'identity': {
      const { keyFingerprint, loadOrCreateIdentity } = await import('./identity/index.ts');
      const id = await loadOrCreateIdentity(stateDir);
      console.log(`public key: ${id.publicKeyB64}\nfingerprint: ${keyFingerprint(id.publicKey)}`);
      return exitCodes.ok;
    }
    case 'enroll': {
      const controller = str('controller');
      const pin = str('pin');
      if (!controller || !pin) throw new UsageError('enroll needs --controller URL and --pin FINGERPRINT');
      const token = readJoinToken({ token: str('token'), 'token-file': str('token-file') });
      // The hint names the state dir when one was given, or `run` would look in the default one.
      const given = str('state-dir');
      const { enroll } = await import('./main.ts');
      return enroll({
        controllerUrl: controller,
        token,
        pin,
        name: str('name'),
        stateDir,
        runCommand: `keel-agent run${given ? ` --state-dir ${shellWord(given)}` : ''}`,
      });
    }
    case 'run': {
      const { run } = await import('./main.ts');
      return run(stateDir);
    }
  }
}

cli(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
