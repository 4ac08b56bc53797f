// Sign-in, sessions and passwords. Passwords are argon2id; a session is a random 32-byte secret
// in an HttpOnly cookie, stored only as its SHA-256, with a per-session CSRF token and a 12-hour
// sliding lifetime that never reaches past 7 days from sign-in (then the user signs in again, so a
// stolen cookie that is kept busy does not live forever). Failed sign-ins lock a username for 15 minutes after 5 tries and are also
// limited per client address.
import { createHash, randomBytes } from 'node:crypto';
import { hash as argon2Hash, verify as argon2Verify, type Algorithm } from '@node-rs/argon2';
import type { Logger } from 'pino';
import { KeelError } from '@keel/shared';
import type { SessionsRepository } from '../repositories/sessions.ts';
import type { UserRole, UserRow, UsersRepository } from '../repositories/users.ts';
import type { AuditService } from './audit.ts';

/** Sign-in and session policy; the defaults are what the handbook promises. */
export const authPolicy = {
  sessionTtlMs: 12 * 60 * 60 * 1000,
  /** Absolute lifetime: however active, a session ends this long after sign-in. */
  sessionMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  /** Write last_seen/expires_at at most this often, not on every request. */
  sessionTouchIntervalMs: 60 * 1000,
  maxFailuresPerUser: 5,
  lockoutMs: 15 * 60 * 1000,
  maxFailuresPerIp: 20,
  ipWindowMs: 15 * 60 * 1000,
  /** Bound on the in-memory throttle tables (oldest entries are forgotten first). */
  throttleEntries: 10_000,
};

// @node-rs/argon2 declares its enum as an ambient const enum, which isolatedModules cannot read.
const ARGON2ID = 2 as Algorithm;

/** Hashes a password with argon2id (OWASP parameters: 19 MiB, 2 passes). */
export function hashPassword(password: string): Promise<string> {
  return argon2Hash(password, { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
}

/** Checks a password against an argon2 hash; false (never a throw) on a malformed hash. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await argon2Verify(passwordHash, password);
  } catch {
    return false;
  }
}

/** Hex SHA-256 of a session secret: the session's id in the database. */
export function sessionIdOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The signed-in user as the API shows it. */
export interface PublicUser {
  id: string;
  username: string;
  role: UserRole;
}

export function publicUser(user: UserRow): PublicUser {
  return { id: user.id, username: user.username, role: user.role };
}

/** A live, authenticated session. */
export interface AuthenticatedSession {
  user: PublicUser;
  sessionId: string;
  csrfToken: string;
  expiresAt: Date;
  /** True when this lookup slid the expiry forward (the cookie should be re-sent). */
  renewed: boolean;
}

/** Counts failures per key in fixed windows, in bounded memory. */
class FailureWindow {
  private readonly entries = new Map<string, { count: number; since: number }>();
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly maxEntries: number,
  ) {}
  blocked(key: string, now: number): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    if (now - e.since >= this.windowMs) {
      this.entries.delete(key);
      return false;
    }
    return e.count >= this.limit;
  }
  fail(key: string, now: number): void {
    const e = this.entries.get(key);
    if (e && now - e.since < this.windowMs) {
      e.count++;
      return;
    }
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { count: 1, since: now });
  }
}

export interface AuthServiceDeps {
  users: UsersRepository;
  sessions: SessionsRepository;
  audit: AuditService;
  log: Logger;
  now?: () => Date;
  policy?: Partial<typeof authPolicy>;
}

/** Normalizes a username the way it is stored: trimmed, lower case. */
export function normalizeUsername(username: string): string {
  return username.trim().toLowerCase();
}

/** Sign-in, session lookup and sign-out. */
export function createAuthService(deps: AuthServiceDeps) {
  const { users, sessions, audit, log } = deps;
  const now = deps.now ?? (() => new Date());
  const policy = { ...authPolicy, ...deps.policy };
  const perIp = new FailureWindow(policy.maxFailuresPerIp, policy.ipWindowMs, policy.throttleEntries);
  // Unknown usernames lock like real ones, so the lockout does not reveal which names exist.
  const unknownUsers = new FailureWindow(policy.maxFailuresPerUser, policy.lockoutMs, policy.throttleEntries);
  // Verified against when the user does not exist, so both paths cost one argon2 verification.
  // Computed up front so the first unknown-user sign-in is not the slow one.
  const dummyHash = hashPassword(randomBytes(16).toString('base64url'));
  dummyHash.catch(() => undefined);
  const dummy = () => dummyHash;

  async function fail(user: UserRow | null, username: string, ip: string | null, t: Date, reason: string) {
    if (ip) perIp.fail(ip, t.getTime());
    if (user) {
      const { lockedUntil } = await users.recordFailure(
        user.id,
        policy.maxFailuresPerUser,
        new Date(t.getTime() + policy.lockoutMs),
      );
      if (lockedUntil && lockedUntil > t) {
        await audit.record(user.id, 'auth.lockout', `user:${user.id}`, { username, until: lockedUntil }, ip);
      }
    } else {
      unknownUsers.fail(username, t.getTime());
    }
    await audit.record(
      'system',
      'auth.login_failed',
      user ? `user:${user.id}` : null,
      { username, reason },
      ip,
    );
  }

  return {
    /**
     * Checks a username and password and opens a session. Throws `auth.locked` (429) while the
     * username or the client address is throttled, `auth.invalid_credentials` (401) otherwise.
     * The returned `secret` goes into the cookie and nowhere else.
     */
    async login(input: {
      username: string;
      password: string;
      ip: string | null;
      userAgent: string | null;
    }): Promise<AuthenticatedSession & { secret: string }> {
      const t = now();
      const username = normalizeUsername(input.username);
      const user = await users.findByUsername(username);

      // A blocked address gets a cheap refusal: no hashing, no audit row, so hammering costs us little.
      if (input.ip !== null && perIp.blocked(input.ip, t.getTime())) {
        log.debug({ ip: input.ip }, 'sign-in refused: address throttled');
        throw new KeelError('auth.locked');
      }
      const userLocked = user
        ? user.lockedUntil !== null && user.lockedUntil > t
        : unknownUsers.blocked(username, t.getTime());
      if (userLocked) {
        // Spend the same time as a real check so a locked name looks like any other, and count
        // the attempt against the address so one client cannot keep a name locked cheaply.
        await verifyPassword(await dummy(), input.password);
        if (input.ip) perIp.fail(input.ip, t.getTime());
        await audit.record(
          'system',
          'auth.login_throttled',
          user ? `user:${user.id}` : null,
          { username },
          input.ip,
        );
        throw new KeelError('auth.locked');
      }

      const ok = await verifyPassword(user?.passwordHash ?? (await dummy()), input.password);
      if (!user || !ok) {
        await fail(user, username, input.ip, t, user ? 'wrong_password' : 'unknown_user');
        throw new KeelError('auth.invalid_credentials');
      }

      await users.recordSuccess(user.id, t);
      // The address's failure count is deliberately not reset: signing in to one account must not
      // buy more guesses at others.
      // Expired sessions are swept here rather than on a timer: sign-ins are rare and it is one
      // indexed delete.
      await sessions.deleteExpired(t);
      const secret = randomBytes(32).toString('base64url');
      const csrfToken = randomBytes(32).toString('base64url');
      const sessionId = sessionIdOf(secret);
      const expiresAt = new Date(t.getTime() + Math.min(policy.sessionTtlMs, policy.sessionMaxAgeMs));
      await sessions.create({
        id: sessionId,
        userId: user.id,
        csrfToken,
        createdAt: t,
        expiresAt,
        ip: input.ip,
        userAgent: input.userAgent?.slice(0, 512) ?? null,
      });
      await audit.record(user.id, 'auth.login', `user:${user.id}`, {}, input.ip);
      log.info({ userId: user.id }, 'user signed in');
      return { user: publicUser(user), sessionId, csrfToken, expiresAt, renewed: true, secret };
    },

    /** The live session for a cookie secret (sliding its expiry forward), or null. */
    async authenticate(secret: string | undefined): Promise<AuthenticatedSession | null> {
      if (!secret || secret.length > 128) return null;
      const t = now();
      const found = await sessions.findLive(sessionIdOf(secret), t);
      if (!found) return null;
      // The absolute lifetime holds whatever the stored expiry says (sessions made under an
      // older, longer policy, or between two touches).
      if (t.getTime() >= found.session.createdAt.getTime() + policy.sessionMaxAgeMs) return null;
      let expiresAt = found.session.expiresAt;
      let renewed = false;
      if (t.getTime() - found.session.lastSeenAt.getTime() >= policy.sessionTouchIntervalMs) {
        expiresAt = new Date(
          Math.min(
            t.getTime() + policy.sessionTtlMs,
            found.session.createdAt.getTime() + policy.sessionMaxAgeMs,
          ),
        );
        await sessions.touch(found.session.id, t, expiresAt);
        renewed = true;
      }
      return {
        user: publicUser(found.user),
        sessionId: found.session.id,
        csrfToken: found.session.csrfToken,
        expiresAt,
        renewed,
      };
    },

    /** True while the session exists and has not expired (no sliding; for long-lived streams). */
    async isLive(sessionId: string): Promise<boolean> {
      return (await sessions.findLive(sessionId, now())) !== null;
    },

    /** Ends a session. */
    async logout(session: AuthenticatedSession, ip: string | null): Promise<void> {
      await sessions.delete(session.sessionId);
      await audit.record(session.user.id, 'auth.logout', `user:${session.user.id}`, {}, ip);
    },

    /** Drops expired sessions (call from a periodic sweep). */
    async sweepExpired(): Promise<number> {
      return sessions.deleteExpired(now());
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
