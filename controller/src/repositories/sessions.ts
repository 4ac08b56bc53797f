// Console sessions, keyed by the SHA-256 of the cookie secret.
import { and, desc, eq, gt, lte, ne } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { sessions, users, type SessionRow, type UserRow } from '../db/schema/users.ts';

export type { SessionRow };

/** Sessions table access. */
export function createSessionsRepository(db: Db) {
  return {
    async create(input: {
      id: string;
      userId: string;
      csrfToken: string;
      createdAt: Date;
      expiresAt: Date;
      ip: string | null;
      userAgent: string | null;
      /** False while the second factor is still owed. */
      verified?: boolean;
    }): Promise<SessionRow> {
      const [row] = await db
        .insert(sessions)
        .values({ ...input, lastSeenAt: input.createdAt })
        .returning();
      if (!row) throw new Error('session insert returned no row');
      return row;
    },

    /** The unexpired session with this id and its user, or null. */
    async findLive(id: string, now: Date): Promise<{ session: SessionRow; user: UserRow } | null> {
      const [row] = await db
        .select({ session: sessions, user: users })
        .from(sessions)
        .innerJoin(users, eq(users.id, sessions.userId))
        .where(and(eq(sessions.id, id), gt(sessions.expiresAt, now)))
        .limit(1);
      return row ?? null;
    },

    /** Slides a session's expiry forward. */
    async touch(id: string, lastSeenAt: Date, expiresAt: Date): Promise<void> {
      await db.update(sessions).set({ lastSeenAt, expiresAt }).where(eq(sessions.id, id));
    },

    async delete(id: string): Promise<void> {
      await db.delete(sessions).where(eq(sessions.id, id));
    },

    async deleteForUser(userId: string, except?: string): Promise<void> {
      await db
        .delete(sessions)
        .where(and(eq(sessions.userId, userId), except ? ne(sessions.id, except) : undefined));
    },

    /** One user's unexpired sessions, newest first. */
    async listForUser(userId: string, now: Date): Promise<SessionRow[]> {
      return db
        .select()
        .from(sessions)
        .where(and(eq(sessions.userId, userId), gt(sessions.expiresAt, now)))
        .orderBy(desc(sessions.lastSeenAt));
    },

    /** Deletes one session of one user; false when there is none. */
    async deleteOfUser(userId: string, id: string): Promise<boolean> {
      const rows = await db
        .delete(sessions)
        .where(and(eq(sessions.userId, userId), eq(sessions.id, id)))
        .returning({ id: sessions.id });
      return rows.length > 0;
    },

    /** Marks the second factor done and gives the session its normal expiry. */
    async markVerified(id: string, expiresAt: Date): Promise<void> {
      await db.update(sessions).set({ verified: true, expiresAt }).where(eq(sessions.id, id));
    },

    /** Removes sessions that expired at or before `now`; returns how many. */
    async deleteExpired(now: Date): Promise<number> {
      const rows = await db
        .delete(sessions)
        .where(lte(sessions.expiresAt, now))
        .returning({ id: sessions.id });
      return rows.length;
    },
  };
}

export type SessionsRepository = ReturnType<typeof createSessionsRepository>;
