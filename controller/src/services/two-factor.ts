// TOTP two-factor sign-in (RFC 6238 through otplib): enrollment with a QR code and a confirming
// code, ten single-use recovery codes (stored as SHA-256), codes accepted within ±30 s of clock
// skew and never twice (the last accepted time step is stored and only a newer one passes, in one
// UPDATE, so two concurrent requests cannot both use a code), and the policy of which roles must
// use it. The secret is stored sealed under the master key (secrets.ts), bound to its user;
// `sealStoredSecrets` seals legacy plaintext rows (and rows of a retired key) at start.
import { createHash, randomBytes } from 'node:crypto';
import { generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';
import { KeelError } from '@keel/shared';
import type { SessionsRepository } from '../repositories/sessions.ts';
import type { TwoFactorRepository } from '../repositories/two-factor.ts';
import type { UserRole, UserRow, UsersRepository } from '../repositories/users.ts';
import type { AuditService } from './audit.ts';
import { resealStored, type SecretBox } from '../secrets.ts';

/** Clock skew accepted either way, in seconds (one 30 s step before and after). */
export const TOTP_TOLERANCE_SECONDS = 30;
export const RECOVERY_CODE_COUNT = 10;

/** Hex SHA-256 of a recovery code in its canonical form (lower case, no separators). */
export function recoveryCodeHash(code: string): string {
  return createHash('sha256')
    .update(code.toLowerCase().replace(/[^a-z0-9]/g, ''))
    .digest('hex');
}

/** A recovery code: 10 base32 characters (50 bits) shown as `xxxxx-xxxxx`. */
function newRecoveryCode(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(10);
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

export interface TwoFactorServiceDeps {
  users: UsersRepository;
  twoFactor: TwoFactorRepository;
  sessions: SessionsRepository;
  audit: AuditService;
  checkPassword: (passwordHash: string, password: string) => Promise<boolean>;
  /** Seals the TOTP secrets at rest. */
  secrets: SecretBox;
  now?: () => Date;
  /** Shown in authenticator apps. */
  issuer?: string;
}

/** Two-factor enrollment, verification and policy. */
export function createTwoFactorService(deps: TwoFactorServiceDeps) {
  const { users, twoFactor, sessions, audit } = deps;
  const now = deps.now ?? (() => new Date());
  const issuer = deps.issuer ?? 'Keel';
  let policyCache: { roles: UserRole[]; at: number } | null = null;
  const secretContext = (userId: string) => `users.totp_secret:${userId}`;
  /** The user's TOTP secret in clear (null when none is stored). */
  const secretOf = (user: UserRow): string | null =>
    user.totpSecret ? deps.secrets.open(user.totpSecret, secretContext(user.id)) : null;

  async function found(id: string): Promise<UserRow> {
    const row = await users.findById(id);
    if (!row) throw new KeelError('user.not_found');
    return row;
  }

  async function requirePassword(user: UserRow, password: string): Promise<void> {
    if (!(await deps.checkPassword(user.passwordHash, password)))
      throw new KeelError('auth.invalid_credentials');
  }

  /** The time step a TOTP code matches within the tolerance, or null. */
  async function matchStep(secret: string, code: string): Promise<number | null> {
    if (!/^\d{6}$/.test(code)) return null;
    const result = await verify({
      secret,
      token: code,
      epoch: Math.floor(now().getTime() / 1000),
      epochTolerance: TOTP_TOLERANCE_SECONDS,
    });
    return result.valid ? (result as { timeStep: number }).timeStep : null;
  }

  return {
    /**
     * Seals every TOTP secret still stored in plaintext (written before secrets were sealed) or
     * under a retired master key; returns how many rows were rewritten. Run at start.
     */
    sealStoredSecrets: async (): Promise<number> =>
      resealStored(
        deps.secrets,
        await twoFactor.storedSecrets(),
        (row) => row.totpSecret,
        (row) => secretContext(row.id),
        (row, sealed) => twoFactor.resealSecret(row.id, row.totpSecret, sealed),
      ),

    /** Roles that must use two-factor sign-in (read at most every 5 s). */
    async requiredRoles(): Promise<UserRole[]> {
      const t = Date.now();
      if (!policyCache || t - policyCache.at > 5000)
        policyCache = { roles: await twoFactor.requiredRoles(), at: t };
      return policyCache.roles;
    },

    async setRequiredRoles(by: { id: string; ip: string | null }, roles: UserRole[]): Promise<UserRole[]> {
      const unique = [...new Set(roles)];
      await twoFactor.setRequiredRoles(unique, now());
      policyCache = { roles: unique, at: Date.now() };
      await audit.record(by.id, 'two_factor.policy', null, { roles: unique }, by.ip);
      return unique;
    },

    /** Starts enrollment: a new secret (not in force yet), its otpauth URI and QR code (SVG data URL). */
    async setup(
      userId: string,
      password: string,
      ip: string | null,
    ): Promise<{ secret: string; uri: string; qr: string }> {
      const user = await found(userId);
      await requirePassword(user, password);
      if (user.totpEnabledAt) {
        throw new KeelError('request.invalid', 'Two-factor sign-in is already on; turn it off first.');
      }
      const secret = generateSecret();
      await twoFactor.setPendingSecret(userId, deps.secrets.seal(secret, secretContext(userId)));
      const uri = generateURI({ issuer, label: user.username, secret });
      const svg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
      await audit.record(userId, 'two_factor.setup', `user:${userId}`, {}, ip);
      return { secret, uri, qr: `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}` };
    },

    /** Confirms enrollment with a code from the app; returns the recovery codes (shown once). */
    async confirm(userId: string, code: string, ip: string | null): Promise<{ recoveryCodes: string[] }> {
      const user = await found(userId);
      const secret = secretOf(user);
      if (!secret || user.totpEnabledAt) throw new KeelError('two_factor.not_enrolled');
      const step = await matchStep(secret, code);
      if (step === null) throw new KeelError('auth.invalid_code');
      const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
      await twoFactor.enable(userId, now(), step, codes.map(recoveryCodeHash));
      await audit.record(userId, 'two_factor.enable', `user:${userId}`, {}, ip);
      return { recoveryCodes: codes };
    },

    /**
     * Checks a sign-in code (6 digits) or a recovery code for a user with 2FA on; each is accepted
     * once. Returns which kind matched, or null.
     */
    async check(
      user: UserRow,
      input: { code?: string; recoveryCode?: string },
    ): Promise<'totp' | 'recovery' | null> {
      const secret = secretOf(user);
      if (!secret || !user.totpEnabledAt) return null;
      if (input.code !== undefined) {
        const step = await matchStep(secret, input.code);
        return step !== null && (await twoFactor.acceptStep(user.id, step)) ? 'totp' : null;
      }
      if (input.recoveryCode !== undefined) {
        return (await twoFactor.useRecoveryCode(user.id, recoveryCodeHash(input.recoveryCode), now()))
          ? 'recovery'
          : null;
      }
      return null;
    },

    /** Turns 2FA off for oneself (password and a current code needed). */
    async disable(
      userId: string,
      input: { password: string; code: string },
      ip: string | null,
    ): Promise<void> {
      const user = await found(userId);
      await requirePassword(user, input.password);
      if (!user.totpEnabledAt) throw new KeelError('two_factor.not_enrolled');
      if ((await this.check(user, { code: input.code })) === null) throw new KeelError('auth.invalid_code');
      await twoFactor.disable(userId);
      await audit.record(userId, 'two_factor.disable', `user:${userId}`, {}, ip);
    },

    /**
     * Issues a fresh set of recovery codes (shown once); the old ones stop working at once. Needs
     * the current password or a current TOTP code (a code is used up like at sign-in). The audit
     * entry never holds the codes.
     */
    async regenerateRecoveryCodes(
      userId: string,
      input: { password?: string; code?: string },
      ip: string | null,
    ): Promise<{ recoveryCodes: string[] }> {
      const user = await found(userId);
      if (!user.totpEnabledAt) throw new KeelError('two_factor.not_enrolled');
      if (input.password !== undefined) await requirePassword(user, input.password);
      else if (input.code !== undefined) {
        if ((await this.check(user, { code: input.code })) === null) throw new KeelError('auth.invalid_code');
      } else throw new KeelError('request.invalid', 'Give your password or a code from your app.');
      const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
      if (!(await twoFactor.replaceRecoveryCodes(userId, codes.map(recoveryCodeHash))))
        throw new KeelError('two_factor.not_enrolled');
      await audit.record(
        userId,
        'two_factor.recovery_codes',
        `user:${userId}`,
        { count: codes.length, proof: input.password !== undefined ? 'password' : 'totp' },
        ip,
      );
      return { recoveryCodes: codes };
    },

    /** An admin turns a user's 2FA off (lost phone and codes); the user's sessions end. */
    async reset(by: { id: string; ip: string | null }, userId: string): Promise<void> {
      await found(userId);
      await twoFactor.disable(userId);
      await sessions.deleteForUser(userId);
      await audit.record(by.id, 'two_factor.reset', `user:${userId}`, {}, by.ip);
    },

    async status(userId: string) {
      const user = await found(userId);
      const roles = await this.requiredRoles();
      return {
        enabled: user.totpEnabledAt !== null,
        required: roles.includes(user.role),
        recoveryCodesLeft: user.totpEnabledAt ? await twoFactor.recoveryCodesLeft(userId) : 0,
      };
    },
  };
}

export type TwoFactorService = ReturnType<typeof createTwoFactorService>;
