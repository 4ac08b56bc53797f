// Users: lookups, creation and the sign-in failure counters that drive the lockout.
import { count, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { users, type UserRole, type UserRow } from '../db/schema/users.ts';

export type { UserRow, UserRole };

/** Users table access. */
export function createUsersRepository(db: Db) {
  return {
    /** How many users exist (0 means the controller still needs its first admin). */
    async count(): Promise<number> {
      const [row] = await db.select({ n: count() }).from(users);
      return row?.n ?? 0;
    },

    async findByUsername(username: string): Promise<UserRow | null> {
      const [row] = await db.select().from(users).where(eq(users.username, username)).limit(1);
      return row ?? null;
    },

    async findById(id: string): Promise<UserRow | null> {
      const [row] = await db.select().from(users).where(eq(users.id, id)).limit(1);
      return row ?? null;
    },

    async list(): Promise<UserRow[]> {
      return db.select().from(users).orderBy(users.createdAt);
    },

    /** Inserts a user; returns null when the username is already taken. */
    async create(input: {
      username: string;
      passwordHash: string;
      role: UserRole;
      scoped?: boolean;
    }): Promise<UserRow | null> {
      const rows = await db
        .insert(users)
        .values(input)
        .onConflictDoNothing({ target: users.username })
        .returning();
      return rows[0] ?? null;
    },

    /**
     * Counts one failed sign-in in a single statement (so concurrent failures all count). When the
     * count reaches `maxFailures` the user is locked until `lockUntil` and the counter restarts.
     */
    async recordFailure(
      id: string,
      maxFailures: number,
      lockUntil: Date,
    ): Promise<{ lockedUntil: Date | null }> {
      const [row] = await db
        .update(users)
        .set({
          failedLogins: sql`case when ${users.failedLogins} + 1 >= ${maxFailures} then 0 else ${users.failedLogins} + 1 end`,
          lockedUntil: sql`case when ${users.failedLogins} + 1 >= ${maxFailures} then ${lockUntil.toISOString()}::timestamptz else ${users.lockedUntil} end`,
        })
        .where(eq(users.id, id))
        .returning({ lockedUntil: users.lockedUntil });
      return { lockedUntil: row?.lockedUntil ?? null };
    },

    /** Clears the failure counter and stamps the sign-in time. */
    async recordSuccess(id: string, at: Date): Promise<void> {
      await db
        .update(users)
        .set({ failedLogins: 0, lockedUntil: null, lastLoginAt: at })
        .where(eq(users.id, id));
    },

    async setPasswordHash(id: string, passwordHash: string, at: Date = new Date()): Promise<void> {
      await db.update(users).set({ passwordHash, passwordChangedAt: at }).where(eq(users.id, id));
    },

    /** Changes role and/or scope; returns the updated row or null. */
    async update(id: string, input: { role?: UserRole; scoped?: boolean }): Promise<UserRow | null> {
      const [row] = await db.update(users).set(input).where(eq(users.id, id)).returning();
      return row ?? null;
    },

    async delete(id: string): Promise<boolean> {
      const rows = await db.delete(users).where(eq(users.id, id)).returning({ id: users.id });
      return rows.length > 0;
    },

    /** How many owners exist (the last one cannot be removed or demoted). */
    async countOwners(): Promise<number> {
      const [row] = await db.select({ n: count() }).from(users).where(eq(users.role, 'owner'));
      return row?.n ?? 0;
    },
  };
}

export type UsersRepository = ReturnType<typeof createUsersRepository>;
