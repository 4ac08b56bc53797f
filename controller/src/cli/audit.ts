// `keel-controller audit verify`: checks the audit trail's hash chain and its anchor from the
// command line (a cron job, or after restoring a backup). Exit 0 when intact, 1 when broken.
import type { Writable } from 'node:stream';
import type { AuditService } from '../services/audit.ts';

type Verifier = Pick<AuditService, 'verify'>;

export interface AuditCommandDeps {
  /** The audit service, or a function that opens it (only once the arguments are valid). */
  audit: Verifier | (() => Promise<Verifier>);
  stdout?: Writable;
  stderr?: Writable;
}

export const auditUsage = `Usage: keel-controller audit verify [--json]

Walks the audit trail's hash chain and checks its head against the anchor in the data dir.
Prints the verdict (as JSON with --json); exits 0 when intact, 1 when broken.`;

/** Runs `audit <argv>`; resolves to the exit code (2 for a usage error). */
export async function auditCommand(argv: string[], deps: AuditCommandDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    stdout.write(`${auditUsage}\n`);
    return 0;
  }
  const json = rest.includes('--json');
  if (sub !== 'verify' || rest.some((a) => a !== '--json')) {
    stderr.write('keel-controller audit: expected `verify [--json]` (see keel-controller audit --help)\n');
    return 2;
  }
  const audit = typeof deps.audit === 'function' ? await deps.audit() : deps.audit;
  const result = await audit.verify();
  if (json) stdout.write(`${JSON.stringify(result)}\n`);
  else if (result.ok) {
    stdout.write(
      `Audit trail intact: ${result.rows} rows, ${result.anchored ? 'head matches the anchor' : 'no anchor to check (anchored: false)'}.\n`,
    );
  } else {
    stdout.write(
      `Audit trail BROKEN at row ${result.brokenAt ?? '?'}: ${result.reason ?? 'unknown'} (${result.rows} rows checked).\n`,
    );
  }
  return result.ok ? 0 : 1;
}
