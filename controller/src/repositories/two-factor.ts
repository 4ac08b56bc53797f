// TOTP state, recovery codes and the 2FA policy row: the only file that writes them.
import { and, eq, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { accessSettings, recoveryCodes, users, type UserRole } from '../db/schema/users.ts';

/** Two-factor table access. */
export function createTwoFactorRepository(db: Db) {
  return {
    /** Stores a secret being enrolled (sealed by the caller; not in force until `enable`). */
    async setPendingSecret(userId: string, secret: string): Promise<void> {
      await db
        .update(users)
        .set({ totpSecret: secret, totpEnabledAt: null, totpLastStep: null })
        .where(eq(users.id, userId));
    },

    /** Every stored TOTP secret (sealed or legacy plaintext), for re-sealing at start. */
    async storedSecrets(): Promise<{ id: string; totpSecret: string }[]> {
      const rows = await db
        .select({ id: users.id, totpSecret: users.totpSecret })
        .from(users)
        .where(isNotNull(users.totpSecret));
      return rows.map((r) => ({ id: r.id, totpSecret: r.totpSecret! }));
    },

    /** Replaces a stored secret with its re-sealed form, unless it changed meanwhile. */
    async resealSecret(userId: string, from: string, to: string): Promise<boolean> {
      const rows = await db
        .update(users)
        .set({ totpSecret: to })
        .where(and(eq(users.id, userId), eq(users.totpSecret, from)))
        .returning({ id: users.id });
      return rows.length > 0;
    },

    /** Puts the secret in force and replaces the recovery codes, in one transaction. */
    async enable(userId: string, at: Date, step: number, codeHashes: string[]): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.update(users).set({ totpEnabledAt: at, totpLastStep: step }).where(eq(users.id, userId));
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        await tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash })));
      });
    },

    /**
     * Replaces every recovery code (used or not) with new ones, in one transaction, for a user
     * whose 2FA is on: false (nothing changed) when it is not on.
     */
    async replaceRecoveryCodes(userId: string, codeHashes: string[]): Promise<boolean> {
      return db.transaction(async (tx) => {
        const [on] = await tx
          .select({ id: users.id })
          .from(users)
          .where(and(eq(users.id, userId), isNotNull(users.totpEnabledAt)))
          .for('update');
        if (!on) return false;
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        await tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash })));
        return true;
      });
    },

    async disable(userId: string): Promise<void> {
      await db.transaction(async (tx) => {
        await tx
          .update(users)
          .set({ totpSecret: null, totpEnabledAt: null, totpLastStep: null })
          .where(eq(users.id, userId));
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
      });
    },

    /**
     * Records `step` as the last accepted TOTP step unless it is not newer than the stored one:
     * false means the code was already used (a replay), even by a concurrent request.
     */
    async acceptStep(userId: string, step: number): Promise<boolean> {
      const rows = await db
        .update(users)
        .set({ totpLastStep: step })
        .where(and(eq(users.id, userId), or(isNull(users.totpLastStep), lt(users.totpLastStep, step))))
        .returning({ id: users.id });
      return rows.length > 0;
    },

    /** Uses a recovery code once: false when unknown or already used. */
    async useRecoveryCode(userId: string, codeHash: string, at: Date): Promise<boolean> {
      const rows = await db
        .update(recoveryCodes)
        .set({ usedAt: at })
        .where(
          and(
            eq(recoveryCodes.userId, userId),
            eq(recoveryCodes.codeHash, codeHash),
            isNull(recoveryCodes.usedAt),
          ),
        )
        .returning({ userId: recoveryCodes.userId });
      return rows.length > 0;
    },

    async recoveryCodesLeft(userId: string): Promise<number> {
      const [row] = await db
        .select({ n: sql<number>`count(*)::int` })
        .from(recoveryCodes)
        .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)));
      return row?.n ?? 0;
    },

    /** Roles that must use two-factor sign-in. */
    async requiredRoles(): Promise<UserRole[]> {
      const [row] = await db.select().from(accessSettings).where(eq(accessSettings.id, 1)).limit(1);
      return (row?.twoFactorRoles ?? []) as UserRole[];
    },

    async setRequiredRoles(roles: UserRole[], at: Date): Promise<void> {
      await db
        .insert(accessSettings)
        .values({ id: 1, twoFactorRoles: roles, updatedAt: at })
        .onConflictDoUpdate({ target: accessSettings.id, set: { twoFactorRoles: roles, updatedAt: at } });
    },
  };
}

export type TwoFactorRepository = ReturnType<typeof createTwoFactorRepository>;
