// API tokens for automation (the CLI, Prometheus, Ansible): `Authorization: Bearer kat_…` on the
// API. A token acts for its user, narrowed to the permissions and host groups it was made with, and
// never more than the user holds at the time of use (a demoted user's tokens shrink with them). The
// secret is shown once and stored only as its SHA-256; tokens expire and can be revoked.
import { createHash, randomBytes } from 'node:crypto';
import { KeelError } from '@keel/shared';
import type { GroupsRepository } from '../repositories/groups.ts';
import type { ApiTokenRow, TokensRepository } from '../repositories/tokens.ts';
import type { UserRow, UsersRepository } from '../repositories/users.ts';
import { hasPermission, narrowActor, permissions, type Actor, type Permission } from './access.ts';
import type { AuditService } from './audit.ts';

export const TOKEN_PREFIX = 'kat_';
/** Longest lifetime a token may have. */
export const MAX_TOKEN_DAYS = 365;
/** last_used is written at most this often per token. */
const TOUCH_INTERVAL_MS = 60_000;
/**
 * A token used after this long unused counts as signing in again (`api_token.use`), as does its
 * first use and a use from a new address.
 */
export const TOKEN_IDLE_SIGN_IN_MS = 60 * 60 * 1000;
/** A revoked or expired token presented again is audited at most this often (`api_token.refused`). */
const REFUSED_AUDIT_INTERVAL_MS = 60_000;
/** Longest User-Agent kept in an audit entry. */
const MAX_USER_AGENT = 200;

/** Hex SHA-256 of a token secret. */
export function tokenHashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A token as the API shows it: never the secret. */
export interface TokenView {
  id: string;
  userId: string;
  name: string;
  permissions: Permission[];
  groupIds: string[] | null;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
}

export function tokenView(row: ApiTokenRow): TokenView {
  return {
    id: row.id,
    userId: row.userId,
    name: row.name,
    permissions: row.permissions as Permission[],
    groupIds: row.groupIds,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    lastUsedIp: row.lastUsedIp,
  };
}

export interface TokensServiceDeps {
  tokens: TokensRepository;
  users: UsersRepository;
  groups: GroupsRepository;
  audit: AuditService;
  /** Turns a user into their actor (role, scope, grants). */
  resolveActor: (user: UserRow) => Promise<Actor>;
  now?: () => Date;
}

/** Who is acting on tokens. */
export interface TokenActor {
  actor: Actor;
  ip: string | null;
}

/** API token creation, listing, revocation and bearer authentication. */
export function createTokensService(deps: TokensServiceDeps) {
  const { tokens, users, groups, audit, resolveActor } = deps;
  const now = deps.now ?? (() => new Date());
  const lastTouched = new Map<string, number>();
  /** Per token: the last use this process saw (the stored last use can lag by a minute). */
  const lastUse = new Map<string, { at: number; ip: string | null }>();
  const lastRefusal = new Map<string, number>();
  /** Keeps a per-token table bounded (oldest entries forgotten first). */
  const remember = <V>(map: Map<string, V>, key: string, value: V) => {
    map.delete(key);
    map.set(key, value);
    if (map.size > 10_000) map.delete(map.keys().next().value!);
  };

  return {
    /**
     * Creates a token for the acting user. `permissions` must be ones the user holds; `groupIds`
     * limit it to those groups' hosts. Returns the secret once.
     */
    async create(
      by: TokenActor,
      input: { name: string; permissions: Permission[]; groupIds?: string[]; ttlDays?: number },
    ): Promise<{ token: TokenView; secret: string }> {
      const wanted = [...new Set(input.permissions)];
      for (const p of wanted) {
        if (!(permissions as readonly string[]).includes(p))
          throw new KeelError('request.invalid', `No permission ${p}.`);
        if (!hasPermission(by.actor, p)) {
          throw new KeelError('auth.forbidden', `You do not hold ${p}, so a token of yours cannot either.`);
        }
      }
      const groupIds = input.groupIds ? [...new Set(input.groupIds)] : null;
      for (const g of groupIds ?? []) if (!(await groups.get(g))) throw new KeelError('group.not_found');
      const ttlDays = input.ttlDays ?? 90;
      const at = now();
      const secret = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const row = await tokens.create({
        userId: by.actor.id,
        name: input.name,
        secretHash: tokenHashOf(secret),
        permissions: wanted,
        groupIds,
        createdAt: at,
        expiresAt: new Date(at.getTime() + ttlDays * 24 * 60 * 60 * 1000),
      });
      await audit.record(
        by.actor.id,
        'api_token.create',
        `api_token:${row.id}`,
        { name: row.name, permissions: wanted, groupIds, expiresAt: row.expiresAt },
        by.ip,
      );
      return { token: tokenView(row), secret };
    },

    /** A user's tokens (their own, or anyone's for a holder of `users.manage`). */
    async list(by: TokenActor, userId: string = by.actor.id): Promise<TokenView[]> {
      if (userId !== by.actor.id && !hasPermission(by.actor, 'users.manage')) {
        throw new KeelError('auth.forbidden', "Only user managers see other users' tokens.");
      }
      return (await tokens.listForUser(userId)).map(tokenView);
    },

    /**
     * Every user's tokens with their owner (never a secret: only its hash is stored), for a holder
     * of `users.manage`; newest first, at most 1000.
     */
    async listAll(by: TokenActor): Promise<(TokenView & { ownerName: string })[]> {
      if (!hasPermission(by.actor, 'users.manage')) {
        throw new KeelError('auth.forbidden', "Only user managers see every user's tokens.");
      }
      return (await tokens.listAll(1000)).map((row) => ({ ...tokenView(row), ownerName: row.ownerName }));
    },

    /** Revokes a token: its own user's, or anyone's for a holder of `users.manage`. */
    async revoke(by: TokenActor, id: string): Promise<TokenView> {
      const row = await tokens.get(id);
      // Another user's token is "not found" to someone who may not manage users.
      if (!row || (row.userId !== by.actor.id && !hasPermission(by.actor, 'users.manage'))) {
        throw new KeelError('api_token.not_found');
      }
      const revoked = await tokens.revoke(id, now());
      if (!revoked) throw new KeelError('api_token.not_found');
      await audit.record(
        by.actor.id,
        'api_token.revoke',
        `api_token:${id}`,
        { name: row.name, owner: row.userId, alreadyRevoked: row.revokedAt !== null },
        by.ip,
      );
      return tokenView(revoked);
    },

    /**
     * The user and narrowed actor for a bearer secret, or null (unknown, expired, revoked, or its
     * user gone). Stamps last use (time and address) at most once a minute. A token's first use, a
     * use from another address than its last, and a use after an hour unused are audited as
     * `api_token.use` (the token "signs in"); a revoked or expired token presented again is audited
     * as `api_token.refused` (at most once a minute per token). Unknown secrets are not audited:
     * anyone could fill the trail with them.
     */
    async authenticate(
      secret: string,
      ip: string | null,
      meta: { userAgent?: string | null } = {},
    ): Promise<{ token: ApiTokenRow; user: UserRow; actor: Actor } | null> {
      if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 128) return null;
      const row = await tokens.findBySecretHash(tokenHashOf(secret));
      const t = now();
      if (!row) return null;
      const userAgent = meta.userAgent ? meta.userAgent.slice(0, MAX_USER_AGENT) : null;
      if (row.revokedAt || row.expiresAt.getTime() <= t.getTime()) {
        const last = lastRefusal.get(row.id) ?? 0;
        if (t.getTime() - last >= REFUSED_AUDIT_INTERVAL_MS) {
          remember(lastRefusal, row.id, t.getTime());
          await audit.record(
            row.userId,
            'api_token.refused',
            `api_token:${row.id}`,
            { name: row.name, reason: row.revokedAt ? 'revoked' : 'expired', userAgent },
            ip,
          );
        }
        return null;
      }
      const user = await users.findById(row.userId);
      if (!user) return null;
      const full = await resolveActor(user);
      const hostIds = row.groupIds ? new Set(await groups.hostsOf(row.groupIds)) : null;
      const actor = narrowActor(full, new Set(row.permissions), hostIds);
      // Decided synchronously (no await between reading and writing the tables), so parallel
      // first requests of one token give one `api_token.use`, not one each.
      const previous = lastUse.get(row.id) ?? {
        at: row.lastUsedAt?.getTime() ?? null,
        ip: row.lastUsedIp,
      };
      remember(lastUse, row.id, { at: t.getTime(), ip });
      const signIn =
        previous.at === null
          ? 'first_use'
          : previous.ip !== ip
            ? 'new_address'
            : t.getTime() - previous.at >= TOKEN_IDLE_SIGN_IN_MS
              ? 'idle'
              : null;
      const touched = lastTouched.get(row.id) ?? row.lastUsedAt?.getTime() ?? 0;
      const touch = t.getTime() - touched >= TOUCH_INTERVAL_MS || previous.ip !== ip;
      if (touch) remember(lastTouched, row.id, t.getTime());
      if (signIn) {
        await audit.record(
          row.userId,
          'api_token.use',
          `api_token:${row.id}`,
          {
            name: row.name,
            reason: signIn,
            previousIp: signIn === 'new_address' ? previous.ip : undefined,
            userAgent,
          },
          ip,
        );
      }
      if (touch) await tokens.touch(row.id, t, ip);
      return { token: row, user, actor };
    },

    /**
     * Audits one mutating request made with a token (`api_token.request`): who (the token's user
     * and the token), from where, what (method and path, never the body or query) and how it
     * ended (status). Recorded whether the request was allowed or refused.
     */
    async recordRequest(
      token: { id: string; name: string; userId: string },
      request: { method: string; path: string; status: number },
      ip: string | null,
    ): Promise<void> {
      await audit.record(
        token.userId,
        'api_token.request',
        `api_token:${token.id}`,
        { name: token.name, method: request.method, path: request.path, status: request.status },
        ip,
      );
    },

    /**
     * What a live token may do now (its user's current access, narrowed as at sign-in), or null
     * when it is revoked, expired or its user is gone. No last-use stamp: for long-lived streams.
     */
    async currentActor(id: string): Promise<Actor | null> {
      const row = await tokens.get(id);
      if (!row || row.revokedAt || row.expiresAt.getTime() <= now().getTime()) return null;
      const user = await users.findById(row.userId);
      if (!user) return null;
      const hostIds = row.groupIds ? new Set(await groups.hostsOf(row.groupIds)) : null;
      return narrowActor(await resolveActor(user), new Set(row.permissions), hostIds);
    },

    /** True while the token is neither revoked nor expired (long-lived streams re-check this). */
    async isLive(id: string): Promise<boolean> {
      const row = await tokens.get(id);
      return !!row && !row.revokedAt && row.expiresAt.getTime() > now().getTime();
    },
  };
}

export type TokensService = ReturnType<typeof createTokensService>;
