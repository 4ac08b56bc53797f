// Join tokens: what an admin creates so a new host can enroll. The secret is returned once, inside
// the enroll command to paste on the host; it is stored only hashed and never logged or audited.
import { isUuid } from '../db/errors.ts';
import { KeelError } from '@keel/shared';
import type { JoinToken, JoinTokenRepository } from '../repositories/join-tokens.ts';
import type { AuditService } from './audit.ts';
import type { Actor } from './hosts.ts';

/** A join token as the API shows it. */
export interface JoinTokenView {
  id: string;
  note: string | null;
  createdAt: string;
  expiresAt: string;
  usesLeft: number;
  lastUsedAt: string | null;
  createdBy: string | null;
}

export function toJoinTokenView(token: JoinToken): JoinTokenView {
  return {
    id: token.id,
    note: token.note,
    createdAt: token.createdAt.toISOString(),
    expiresAt: token.expiresAt.toISOString(),
    usesLeft: token.usesLeft,
    lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
    createdBy: token.createdBy,
  };
}

/** Quotes one word for a POSIX shell when it holds anything beyond a safe set. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command an operator pastes on the new host. The token goes in the environment of the
 * enroll process, not on its command line, where every local user could read it in
 * /proc/<pid>/cmdline (`--token-file FILE` and `--token-file -` for stdin work too).
 * @example enrollCommand('https://keel.example.com', 'kjt_...', 'SHA256:...')
 *   // KEEL_JOIN_TOKEN=kjt_... keel-agent enroll --controller https://keel.example.com --pin SHA256:... && keel-agent run
 */
export function enrollCommand(publicUrl: string, secret: string, fingerprint: string): string {
  // Enroll (pins the controller key, redeems the token), then keep the host connected.
  const enroll = [
    `KEEL_JOIN_TOKEN=${shellWord(secret)}`,
    ...['keel-agent', 'enroll', '--controller', publicUrl, '--pin', fingerprint].map(shellWord),
  ].join(' ');
  return `${enroll} && keel-agent run`;
}

/**
 * The one line an operator pastes on a new host: it fetches install.sh from this controller, which
 * downloads the agent bundle from the controller too, checks its SHA-256, checks that `--pin` is
 * the key of the controller that served it, enrolls, starts keel-agent.service and waits until
 * the host is online. The token rides in the environment of `sh` only, never on a command line.
 * @example installCommand('https://keel.example.com', 'kjt_...', 'sha256:...')
 *   // curl -fsSL https://keel.example.com/install.sh | KEEL_JOIN_TOKEN=kjt_... sh -s -- agent --controller https://keel.example.com --pin sha256:...
 */
export function installCommand(publicUrl: string, secret: string, fingerprint: string): string {
  const base = publicUrl.replace(/\/+$/, '');
  return [
    ...['curl', '-fsSL', `${base}/install.sh`].map(shellWord),
    '|',
    `KEEL_JOIN_TOKEN=${shellWord(secret)}`,
    ...['sh', '-s', '--', 'agent', '--controller', base, '--pin', fingerprint].map(shellWord),
  ].join(' ');
}

/** What the new host needs before the install command works, shown beside it. */
export const AGENT_REQUIREMENTS =
  'Run it as root on a Linux host with systemd, curl and Node.js 20.19 or newer (the installer checks ' +
  'and says what is missing). It downloads the agent from this controller, verifies its SHA-256, ' +
  'enrolls the host, starts keel-agent.service and waits until the host is online. A host that ' +
  'already has the keel-agent program can enroll with `enrollCommand` from the API instead.';

export interface JoinTokensServiceDeps {
  joinTokens: JoinTokenRepository;
  audit: AuditService;
  publicUrl: string;
  /** The controller key's fingerprint, which the agent pins. */
  controllerFingerprint: string;
  /** Lifetime when the request names none. */
  defaultTtlSeconds: number;
}

/** Creating, listing and deleting join tokens. */
export function createJoinTokensService(deps: JoinTokensServiceDeps) {
  const { joinTokens, audit } = deps;
  return {
    /**
     * Creates a token; the result's `secret` and commands are shown once and never stored:
     * `command` installs the agent from this controller (install.sh), `enrollCommand` enrolls a
     * host that already has keel-agent; `requirements` says what the host needs.
     */
    async create(
      input: { ttlSeconds?: number; uses?: number; note?: string | null },
      actor: Actor,
    ): Promise<{
      token: JoinTokenView;
      secret: string;
      command: string;
      enrollCommand: string;
      requirements: string;
    }> {
      const ttlSeconds = input.ttlSeconds ?? deps.defaultTtlSeconds;
      const uses = input.uses ?? 1;
      const { token, secret } = await joinTokens.create({
        ttlSeconds,
        uses,
        note: input.note ?? null,
        // System actors (the local agent bootstrap, the CLI) are not users.
        createdBy: isUuid(actor.id) ? actor.id : null,
      });
      await audit.record(
        actor.id,
        'join_token.create',
        `join_token:${token.id}`,
        { note: token.note, uses, ttlSeconds, expiresAt: token.expiresAt },
        actor.ip,
      );
      return {
        token: toJoinTokenView(token),
        secret,
        command: installCommand(deps.publicUrl, secret, deps.controllerFingerprint),
        enrollCommand: enrollCommand(deps.publicUrl, secret, deps.controllerFingerprint),
        requirements: AGENT_REQUIREMENTS,
      };
    },

    async list(): Promise<JoinTokenView[]> {
      return (await joinTokens.list()).map(toJoinTokenView);
    },

    async delete(id: string, actor: Actor): Promise<void> {
      const token = await joinTokens.get(id);
      if (!token || !(await joinTokens.delete(id))) throw new KeelError('join_token.not_found');
      await audit.record(actor.id, 'join_token.delete', `join_token:${id}`, { note: token.note }, actor.ip);
    },
  };
}

export type JoinTokensService = ReturnType<typeof createJoinTokensService>;
