// Sign-in, sessions and passwords. Passwords are argon2id; a session is a random 32-byte secret
// in an HttpOnly cookie, stored only as its SHA-256, with a per-session CSRF token and a 12-hour
// sliding lifetime that never reaches past 7 days from sign-in (then the user signs in again, so a
// stolen cookie that is kept busy does not live forever).
//
// Sign-in throttling (LoginThrottle below): every attempt is counted before its password check, so
// parallel tries cannot get past the limits; a username (existing or not: same windows, same
// answers) locks for 15 minutes after 5 failures, an address after 20; at most 8 password checks run
// at once (4 per address, 1 per username), and anything over a limit is a cheap 429 with
// Retry-After. An address the user signed in from before has its own budget for that user, so
// strangers failing on a name cannot keep its owner out for ever.
import { createHash, randomBytes } from 'node:crypto';
import { hash as argon2Hash, verify as argon2Verify, type Algorithm } from '@node-rs/argon2';
import type { Logger } from 'pino';
import { KeelError } from '@keel/shared';
import type { SessionsRepository } from '../repositories/sessions.ts';
import type { UserRole, UserRow, UsersRepository } from '../repositories/users.ts';
import { actorOf, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';
import type { TonProofInput } from './ton-proof.ts';

/** Sign-in and session policy; the defaults are what the handbook promises. */
export const authPolicy = {
  sessionTtlMs: 12 * 60 * 60 * 1000,
  /** Absolute lifetime: however active, a session ends this long after sign-in. */
  sessionMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  /** Write last_seen/expires_at at most this often, not on every request. */
  sessionTouchIntervalMs: 60 * 1000,
  /** Failures (counted from the first in the window) that lock a username, existing or not. */
  maxFailuresPerUser: 5,
  /** How long a username is locked once it reached its failures; also its counting window. */
  lockoutMs: 15 * 60 * 1000,
  maxFailuresPerIp: 20,
  ipWindowMs: 15 * 60 * 1000,
  /** Password checks (argon2, ~40 ms and 19 MiB each) running at once, in all. */
  maxChecksInFlight: 8,
  /** ...from one client address. */
  maxChecksInFlightPerAddress: 4, // people behind one NAT address sign in at the same moment
  /** ...for one username. */
  maxChecksInFlightPerUser: 1,
  /** Bound on the in-memory throttle tables (oldest idle entries are forgotten first). */
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
  /** What the user may do (role, scope and grants), for `permit` and `requireHostAccess`. */
  actor: Actor;
  sessionId: string;
  csrfToken: string;
  expiresAt: Date;
  /** True when this lookup slid the expiry forward (the cookie should be re-sent). */
  renewed: boolean;
  /** How the request authenticated: the session cookie, or an API token (`Authorization: Bearer`). */
  via?: 'cookie' | 'token';
  /** The API token, when `via` is `token`. */
  token?: { id: string; name: string };
  /**
   * `ok`; `second-factor`: the password was right and a TOTP or recovery code is still owed;
   * `enroll`: the user's role must use 2FA and they have not set it up (they may only enroll).
   */
  stage?: SessionStage;
}

/** How far a session got through sign-in. */
export type SessionStage = 'ok' | 'second-factor' | 'enroll';

/** How long a session may wait for its second factor. */
export const SECOND_FACTOR_WINDOW_MS = 5 * 60 * 1000;

/** Thrown for a refused sign-in attempt: 429 `auth.locked`, with when to try again. */
export class SignInThrottled extends KeelError {
  constructor(readonly retryAfterSeconds: number) {
    super('auth.locked', `Too many sign-in attempts; try again in ${retryAfterSeconds} s.`);
  }
}

interface ThrottleEntry {
  failures: number;
  /** Attempts whose password check is running: they count against the limit until they end. */
  inFlight: number;
  /** Start of the counting window (the first failure in it). */
  since: number;
  /** Set when the failures reached the limit: refused until then. */
  lockedUntil: number;
}

/**
 * Failure windows per key (a username, an address), in bounded memory. An attempt is counted
 * when it starts (`begin`), before its password check, and settled when the check ends (`end`),
 * so a burst of parallel attempts sees the ones still running.
 */
class LoginThrottle {
  private readonly entries = new Map<string, ThrottleEntry>();
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly maxInFlight: number,
    private readonly maxEntries: number,
  ) {}

  private live(key: string, now: number): ThrottleEntry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.lockedUntil <= now && now - e.since >= this.windowMs) {
      // The window is over: start afresh (attempts still running count into the new one).
      if (e.inFlight === 0) {
        this.entries.delete(key);
        return undefined;
      }
      e.failures = 0;
      e.since = now;
      e.lockedUntil = 0;
    }
    return e;
  }

  /** Milliseconds until `key` may try again; 0 when it may now. */
  wait(key: string, now: number): number {
    const e = this.live(key, now);
    if (!e) return 0;
    if (e.lockedUntil > now) return e.lockedUntil - now;
    // The running checks would use up what is left of the budget, or too many run already: they
    // end within a second or so.
    if (e.failures + e.inFlight >= this.limit || e.inFlight >= this.maxInFlight) return 1000;
    return 0;
  }

  begin(key: string, now: number): void {
    let e = this.live(key, now);
    if (!e) {
      if (this.entries.size >= this.maxEntries) this.evictOne(now);
      e = { failures: 0, inFlight: 0, since: now, lockedUntil: 0 };
      this.entries.set(key, e);
    }
    e.inFlight++;
  }

  /** Settles an attempt; returns true when this failure locked the key. */
  end(key: string, failed: boolean, now: number): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    e.inFlight = Math.max(0, e.inFlight - 1);
    if (!failed) return false;
    if (e.failures === 0) e.since = now;
    e.failures++;
    if (e.failures >= this.limit && e.lockedUntil <= now) {
      e.lockedUntil = now + this.windowMs;
      return true;
    }
    return false;
  }

  /**
   * Forgets the oldest idle entry, a locked one only when every idle entry is locked: spraying
   * many names must not push a locked name out of the table and so unlock it.
   */
  private evictOne(now: number): void {
    let lockedCandidate: string | null = null;
    for (const [key, e] of this.entries) {
      if (e.inFlight > 0) continue;
      if (e.lockedUntil <= now) {
        this.entries.delete(key);
        return;
      }
      lockedCandidate ??= key;
    }
    if (lockedCandidate !== null) this.entries.delete(lockedCandidate);
  }
}

/** A bounded set of recent `username|address` pairs that signed in successfully. */
class KnownAddresses {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
  ) {}
  has(key: string, now: number): boolean {
    const at = this.seen.get(key);
    return at !== undefined && now - at < this.ttlMs;
  }
  add(key: string, now: number): void {
    this.seen.delete(key);
    if (this.seen.size >= this.maxEntries) {
      const oldest = this.seen.keys().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
    this.seen.set(key, now);
  }
}

export interface AuthServiceDeps {
  users: UsersRepository;
  sessions: SessionsRepository;
  audit: AuditService;
  log: Logger;
  now?: () => Date;
  policy?: Partial<typeof authPolicy>;
  /** The password check (tests count calls); argon2id verification by default. */
  checkPassword?: (passwordHash: string, password: string) => Promise<boolean>;
  /**
   * Makes the hash unknown usernames are checked against and the hash of a changed password
   * (hashPassword by default): a test of the throttle's counting may check hundreds of unknown
   * names against a low-cost argon2id hash.
   */
  hashPassword?: (password: string) => Promise<string>;
  /** Turns a user into the actor checks run against (grants); the role alone by default. */
  resolveActor?: (user: UserRow) => Promise<Actor>;
  /** API tokens (bearer authentication); without it bearer tokens are refused. */
  tokens?: {
    authenticate(
      secret: string,
      ip: string | null,
      meta?: { userAgent?: string | null },
    ): Promise<{ token: { id: string; name: string; expiresAt: Date }; user: UserRow; actor: Actor } | null>;
    isLive(id: string): Promise<boolean>;
    currentActor(id: string): Promise<Actor | null>;
    recordRequest(
      token: { id: string; name: string; userId: string },
      request: { method: string; path: string; status: number },
      ip: string | null,
    ): Promise<void>;
  };
  /** Wallet sign-in (EIP-4361); without it wallet sign-in is refused. */
  wallets?: {
    claimedAddress(message: string): string | null;
    signIn(message: string, signature: string): Promise<{ user: UserRow; address: string }>;
    claimedTonAddress(input: TonProofInput): string | null;
    signInTon(input: TonProofInput): Promise<{ user: UserRow; address: string }>;
  };
  /** Two-factor checks and policy; without it no second factor is asked. */
  twoFactor?: {
    requiredRoles(): Promise<UserRole[]>;
    check(
      user: UserRow,
      input: { code?: string; recoveryCode?: string },
    ): Promise<'totp' | 'recovery' | null>;
  };
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
  const checkPassword = deps.checkPassword ?? verifyPassword;
  const resolveActor = deps.resolveActor ?? ((user: UserRow) => Promise.resolve(actorOf(user)));

  /** Where a session stands: owes its second factor, must enroll one, or is done. */
  async function stageOf(user: UserRow, verified: boolean): Promise<SessionStage> {
    if (!verified) return 'second-factor';
    if (
      deps.twoFactor &&
      user.totpEnabledAt === null &&
      (await deps.twoFactor.requiredRoles()).includes(user.role)
    ) {
      return 'enroll';
    }
    return 'ok';
  }
  const perIp = new LoginThrottle(
    policy.maxFailuresPerIp,
    policy.ipWindowMs,
    policy.maxChecksInFlightPerAddress,
    policy.throttleEntries,
  );
  // Keyed by the username as typed (normalized), whether it exists or not: the same windows and
  // the same answers for both, so the lockout does not tell which names exist.
  const perUser = new LoginThrottle(
    policy.maxFailuresPerUser,
    policy.lockoutMs,
    policy.maxChecksInFlightPerUser,
    policy.throttleEntries,
  );
  // A user's own addresses (a sign-in succeeded from there in the last 30 days) get their own
  // budget for that user: failures by others on the name do not lock its owner out.
  const known = new KnownAddresses(policy.throttleEntries, 30 * 24 * 60 * 60 * 1000);
  let checksInFlight = 0;
  // Verified against when the user does not exist, so both paths cost one argon2 verification.
  // Computed up front so the first unknown-user sign-in is not the slow one.
  const dummyHash = (deps.hashPassword ?? hashPassword)(randomBytes(16).toString('base64url'));
  dummyHash.catch(() => undefined);
  const dummy = () => dummyHash;

  async function fail(user: UserRow | null, username: string, ip: string | null, reason: string) {
    await audit.record(
      'system',
      'auth.login_failed',
      user ? `user:${user.id}` : null,
      { username, reason },
      ip,
    );
  }

  /**
   * Opens a session for a user who proved who they are (password or wallet): owing the second
   * factor when their 2FA is on. The returned `secret` goes into the cookie and nowhere else.
   */
  async function openSession(
    user: UserRow,
    t: Date,
    ip: string | null,
    userAgent: string | null,
    details: Record<string, unknown>,
  ): Promise<AuthenticatedSession & { secret: string }> {
    const input = { ip, userAgent };
    await users.recordSuccess(user.id, t);
    // The address's failure count is deliberately not reset: signing in to one account must not
    // buy more guesses at others.
    // Expired sessions are swept here rather than on a timer: sign-ins are rare and it is one
    // indexed delete.
    await sessions.deleteExpired(t);
    const secret = randomBytes(32).toString('base64url');
    const csrfToken = randomBytes(32).toString('base64url');
    const sessionId = sessionIdOf(secret);
    // With 2FA on, the session can only finish sign-in, and only for a few minutes.
    const pending = deps.twoFactor !== undefined && user.totpEnabledAt !== null;
    const expiresAt = new Date(
      t.getTime() +
        (pending ? SECOND_FACTOR_WINDOW_MS : Math.min(policy.sessionTtlMs, policy.sessionMaxAgeMs)),
    );
    await sessions.create({
      verified: !pending,
      id: sessionId,
      userId: user.id,
      csrfToken,
      createdAt: t,
      expiresAt,
      ip: input.ip,
      userAgent: input.userAgent?.slice(0, 512) ?? null,
    });
    await audit.record(
      user.id,
      'auth.login',
      `user:${user.id}`,
      { ...details, ...(pending ? { secondFactor: 'owed' } : {}) },
      input.ip,
    );
    log.info({ userId: user.id }, pending ? 'password accepted, second factor owed' : 'user signed in');
    return {
      user: publicUser(user),
      actor: await resolveActor(user),
      sessionId,
      csrfToken,
      expiresAt,
      renewed: true,
      secret,
      stage: pending ? 'second-factor' : await stageOf(user, true),
    };
  }

  return {
    /**
     * Checks a username and password and opens a session. Throws SignInThrottled (429
     * `auth.locked`, with Retry-After) while the username or the client address is throttled or
     * too many checks run, `auth.invalid_credentials` (401) for a wrong name or password.
     * The returned `secret` goes into the cookie and nowhere else.
     */
    async login(input: {
      username: string;
      password: string;
      ip: string | null;
      userAgent: string | null;
    }): Promise<AuthenticatedSession & { secret: string }> {
      const t = now();
      const at = t.getTime();
      const username = normalizeUsername(input.username);
      const userKey =
        input.ip !== null && known.has(`${username}|${input.ip}`, at) ? `${username}|${input.ip}` : username;

      // Refusals cost nothing: no database, no hashing, no audit row (a lockout is audited once,
      // when it starts). Existing and unknown names go through exactly the same checks.
      const wait = Math.max(
        input.ip === null ? 0 : perIp.wait(input.ip, at),
        perUser.wait(userKey, at),
        checksInFlight >= policy.maxChecksInFlight ? 1000 : 0,
      );
      if (wait > 0) {
        log.debug({ ip: input.ip }, 'sign-in refused: throttled');
        throw new SignInThrottled(Math.ceil(wait / 1000));
      }

      // Counted before the check, settled after it.
      if (input.ip !== null) perIp.begin(input.ip, at);
      perUser.begin(userKey, at);
      checksInFlight++;
      let ok = false;
      let user: UserRow | null = null;
      try {
        user = await users.findByUsername(username);
        ok = await checkPassword(user?.passwordHash ?? (await dummy()), input.password);
        ok = ok && user !== null;
      } finally {
        checksInFlight--;
        const done = now().getTime();
        if (input.ip !== null) perIp.end(input.ip, !ok, done);
        const locked = perUser.end(userKey, !ok, done);
        if (locked) {
          await audit
            .record(
              user ? user.id : 'system',
              'auth.lockout',
              user ? `user:${user.id}` : null,
              {
                username,
                until: new Date(done + policy.lockoutMs),
                ...(userKey !== username ? { address: input.ip } : {}),
              },
              input.ip,
            )
            .catch(() => undefined);
        }
      }
      if (!user || !ok) {
        await fail(user, username, input.ip, user ? 'wrong_password' : 'unknown_user');
        throw new KeelError('auth.invalid_credentials');
      }
      if (input.ip !== null) known.add(`${username}|${input.ip}`, at);

      return openSession(user, t, input.ip, input.userAgent, {});
    },

    /**
     * Signs in with a wallet: an EIP-4361 message and its personal_sign signature, or a TON
     * ton_proof (wallets.ts checks them). Throttled like passwords: per client address, and per
     * claimed address as the "username" (5 failures lock it for 15 minutes). Every refusal is
     * audited as a failed sign-in.
     */
    async walletLogin(
      input: ({ message: string; signature: string } | { tonProof: TonProofInput }) & {
        ip: string | null;
        userAgent: string | null;
      },
    ): Promise<AuthenticatedSession & { secret: string }> {
      const wallets = deps.wallets;
      if (!wallets) throw new KeelError('wallet.disabled');
      const t = now();
      const at = t.getTime();
      const claimed =
        'tonProof' in input
          ? wallets.claimedTonAddress(input.tonProof)
          : wallets.claimedAddress(input.message);
      const key = `wallet:${claimed ?? 'malformed'}`;
      const wait = Math.max(input.ip === null ? 0 : perIp.wait(input.ip, at), perUser.wait(key, at));
      if (wait > 0) throw new SignInThrottled(Math.ceil(wait / 1000));
      if (input.ip !== null) perIp.begin(input.ip, at);
      perUser.begin(key, at);
      let found: { user: UserRow; address: string } | null = null;
      let refusal: unknown = null;
      try {
        found =
          'tonProof' in input
            ? await wallets.signInTon(input.tonProof)
            : await wallets.signIn(input.message, input.signature);
      } catch (err) {
        refusal = err;
      } finally {
        const done = now().getTime();
        if (input.ip !== null) perIp.end(input.ip, found === null, done);
        if (perUser.end(key, found === null, done)) {
          await audit
            .record(
              'system',
              'auth.lockout',
              null,
              { wallet: claimed, until: new Date(done + policy.lockoutMs) },
              input.ip,
            )
            .catch(() => undefined);
        }
      }
      if (!found) {
        const code = refusal instanceof KeelError ? refusal.code : 'internal';
        await audit.record('system', 'auth.login_failed', null, { wallet: claimed, reason: code }, input.ip);
        throw refusal;
      }
      return openSession(found.user, t, input.ip, input.userAgent, {
        method: 'wallet',
        address: found.address,
      });
    },

    /**
     * Checks the signed-in user's password again before a sensitive change (linking a wallet),
     * through the sign-in throttle. Throws `auth.invalid_credentials` or SignInThrottled.
     */
    async confirmPassword(session: AuthenticatedSession, password: string): Promise<void> {
      const at = now().getTime();
      const username = session.user.username;
      const wait = perUser.wait(username, at);
      if (wait > 0) throw new SignInThrottled(Math.ceil(wait / 1000));
      perUser.begin(username, at);
      let ok = false;
      try {
        const user = await users.findById(session.user.id);
        ok = !!user && (await checkPassword(user.passwordHash, password));
      } finally {
        perUser.end(username, !ok, now().getTime());
      }
      if (!ok) throw new KeelError('auth.invalid_credentials', 'The password is wrong.');
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
        actor: await resolveActor(found.user),
        sessionId: found.session.id,
        csrfToken: found.session.csrfToken,
        expiresAt,
        renewed,
        via: 'cookie',
        stage: await stageOf(found.user, found.session.verified),
      };
    },

    /**
     * Finishes a sign-in that owes its second factor: a TOTP code or a recovery code. Counted in
     * the same throttle as passwords (per username and per address), so codes cannot be guessed
     * faster than passwords. Throws SignInThrottled, or `auth.invalid_code` (401).
     */
    async completeSecondFactor(
      session: AuthenticatedSession,
      input: { code?: string; recoveryCode?: string },
      ip: string | null,
    ): Promise<void> {
      if (session.stage !== 'second-factor' || !deps.twoFactor) {
        throw new KeelError('request.invalid', 'This session owes no second factor.');
      }
      const t = now();
      const at = t.getTime();
      const username = session.user.username;
      const wait = Math.max(ip === null ? 0 : perIp.wait(ip, at), perUser.wait(username, at));
      if (wait > 0) throw new SignInThrottled(Math.ceil(wait / 1000));
      if (ip !== null) perIp.begin(ip, at);
      perUser.begin(username, at);
      let kind: 'totp' | 'recovery' | null = null;
      try {
        const user = await users.findById(session.user.id);
        kind = user ? await deps.twoFactor.check(user, input) : null;
      } finally {
        const done = now().getTime();
        if (ip !== null) perIp.end(ip, kind === null, done);
        if (perUser.end(username, kind === null, done)) {
          await audit
            .record(
              session.user.id,
              'auth.lockout',
              `user:${session.user.id}`,
              { username, step: 'second-factor' },
              ip,
            )
            .catch(() => undefined);
        }
      }
      if (kind === null) {
        await audit.record(session.user.id, 'auth.two_factor_failed', `user:${session.user.id}`, {}, ip);
        throw new KeelError('auth.invalid_code');
      }
      await sessions.markVerified(
        session.sessionId,
        new Date(at + Math.min(policy.sessionTtlMs, policy.sessionMaxAgeMs)),
      );
      await audit.record(session.user.id, 'auth.two_factor', `user:${session.user.id}`, { kind }, ip);
    },

    /**
     * Changes the signed-in user's password (the current one is checked, through the sign-in
     * throttle); every other session of the user ends.
     */
    async changePassword(
      session: AuthenticatedSession,
      input: { currentPassword: string; newPassword: string },
      ip: string | null,
      checkPolicy: (password: string, username: string) => void,
    ): Promise<void> {
      const at = now().getTime();
      const username = session.user.username;
      const wait = perUser.wait(username, at);
      if (wait > 0) throw new SignInThrottled(Math.ceil(wait / 1000));
      perUser.begin(username, at);
      let ok = false;
      try {
        const user = await users.findById(session.user.id);
        ok = !!user && (await checkPassword(user.passwordHash, input.currentPassword));
      } finally {
        perUser.end(username, !ok, now().getTime());
      }
      if (!ok) throw new KeelError('auth.invalid_credentials', 'The current password is wrong.');
      checkPolicy(input.newPassword, username);
      await users.setPasswordHash(
        session.user.id,
        await (deps.hashPassword ?? hashPassword)(input.newPassword),
        now(),
      );
      await sessions.deleteForUser(session.user.id, session.sessionId);
      await audit.record(session.user.id, 'user.password_change', `user:${session.user.id}`, {}, ip);
    },

    /** A user's live sessions (`current` marks the caller's). */
    async listSessions(userId: string, currentId?: string) {
      return (await sessions.listForUser(userId, now())).map((s) => ({
        id: s.id,
        createdAt: s.createdAt.toISOString(),
        lastSeenAt: s.lastSeenAt.toISOString(),
        expiresAt: s.expiresAt.toISOString(),
        ip: s.ip,
        userAgent: s.userAgent,
        current: s.id === currentId,
      }));
    },

    /** Ends one session of a user (by the user or an admin); audited. */
    async revokeSession(
      by: { id: string; ip: string | null },
      userId: string,
      sessionId: string,
    ): Promise<void> {
      if (!(await sessions.deleteOfUser(userId, sessionId))) throw new KeelError('session.not_found');
      await audit.record(
        by.id,
        'session.revoke',
        `user:${userId}`,
        { session: sessionId.slice(0, 12) },
        by.ip,
      );
    },

    /**
     * The request's identity for an API token (`Authorization: Bearer kat_…`), or null. Its
     * `sessionId` is `token:<id>` and it carries no CSRF token (a browser never adds this header
     * on its own, so a bearer request cannot be forged cross-site).
     */
    async authenticateBearer(
      secret: string,
      ip: string | null,
      meta: { userAgent?: string | null } = {},
    ): Promise<AuthenticatedSession | null> {
      const found = await deps.tokens?.authenticate(secret, ip, meta);
      if (!found) return null;
      return {
        token: { id: found.token.id, name: found.token.name },
        user: publicUser(found.user),
        actor: found.actor,
        sessionId: `token:${found.token.id}`,
        csrfToken: '',
        expiresAt: found.token.expiresAt,
        renewed: false,
        via: 'token',
        stage: 'ok',
      };
    },

    /** Audits a mutating request made with an API token (`api_token.request`). */
    async recordTokenRequest(
      session: AuthenticatedSession,
      request: { method: string; path: string; status: number },
      ip: string | null,
    ): Promise<void> {
      if (!session.token || !deps.tokens) return;
      await deps.tokens.recordRequest({ ...session.token, userId: session.user.id }, request, ip);
    },

    /** True while the session (or API token) is live (no sliding; for long-lived streams). */
    async isLive(sessionId: string): Promise<boolean> {
      if (sessionId.startsWith('token:')) return (await deps.tokens?.isLive(sessionId.slice(6))) ?? false;
      return (await sessions.findLive(sessionId, now())) !== null;
    },

    /**
     * What a session (or `token:<id>`) may do now, re-read from the database — role, scope, grants,
     * group members — or null when it ended, expired, its user is gone or it no longer is a full
     * sign-in (a 2FA the policy now requires). Never slides the expiry: for long-lived streams.
     */
    async currentActor(sessionId: string): Promise<Actor | null> {
      if (sessionId.startsWith('token:'))
        return (await deps.tokens?.currentActor(sessionId.slice(6))) ?? null;
      const t = now();
      const found = await sessions.findLive(sessionId, t);
      if (!found) return null;
      if (t.getTime() >= found.session.createdAt.getTime() + policy.sessionMaxAgeMs) return null;
      if ((await stageOf(found.user, found.session.verified)) !== 'ok') return null;
      return resolveActor(found.user);
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
