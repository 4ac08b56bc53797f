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
 * What the new host needs before the enroll command works, shown beside it. There is no
 * installer yet, so this names the runtime and how to put the agent on the PATH.
 */
export const AGENT_REQUIREMENTS =
  'The host needs Node.js 20.19 or newer and the keel-agent program (Keel has no installer yet). ' +
  'To get the agent there: copy or clone the Keel repository to the host, run `npm ci` in it, then ' +
  '`ln -s "$PWD/agent/bin/keel-agent.mjs" /usr/local/bin/keel-agent`. Then run the command as root ' +
  '(the agent keeps its key in /var/lib/keel-agent; add --state-dir DIR to both commands to use ' +
  'another directory).';

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
     * Creates a token; the result's `secret` and `command` are shown once and never stored, with
     * `requirements`: what the host needs for the command to work.
     */
    async create(
      input: { ttlSeconds?: number; uses?: number; note?: string | null },
      actor: Actor,
    ): Promise<{ token: JoinTokenView; secret: string; command: string; requirements: string }> {
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
        command: enrollCommand(deps.publicUrl, secret, deps.controllerFingerprint),
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
