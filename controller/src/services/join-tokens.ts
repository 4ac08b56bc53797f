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
 * The command an operator pastes on the new host.
 * @example enrollCommand('https://keel.example.com', 'kjt_...', 'SHA256:...')
 *   // keel-agent enroll --controller https://keel.example.com --token kjt_... --pin SHA256:...
 */
export function enrollCommand(publicUrl: string, secret: string, fingerprint: string): string {
  // Enroll (pins the controller key, redeems the token), then keep the host connected.
  const enroll = ['keel-agent', 'enroll', '--controller', publicUrl, '--token', secret, '--pin', fingerprint]
    .map(shellWord)
    .join(' ');
  return `${enroll} && keel-agent run`;
}

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
    /** Creates a token; the result's `secret` and `command` are shown once and never stored. */
    async create(
      input: { ttlSeconds?: number; uses?: number; note?: string | null },
      actor: Actor,
    ): Promise<{ token: JoinTokenView; secret: string; command: string }> {
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
