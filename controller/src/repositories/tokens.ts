// API tokens: the only file that reads or writes api_tokens.
import { and, desc, eq, isNull } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { apiTokens, type ApiTokenRow } from '../db/schema/tokens.ts';
import { users } from '../db/schema/users.ts';

export type { ApiTokenRow };

/** API tokens table access. */
export function createTokensRepository(db: Db) {
  return {
    async create(input: {
      userId: string;
      name: string;
      secretHash: string;
      permissions: string[];
      groupIds: string[] | null;
      createdAt: Date;
      expiresAt: Date;
    }): Promise<ApiTokenRow> {
      const [row] = await db.insert(apiTokens).values(input).returning();
      if (!row) throw new Error('token insert returned no row');
      return row;
    },

    async listForUser(userId: string): Promise<ApiTokenRow[]> {
      return db
        .select()
        .from(apiTokens)
        .where(eq(apiTokens.userId, userId))
        .orderBy(desc(apiTokens.createdAt));
    },

    /** Every user's tokens with their owner's username, newest first (at most `limit`). */
    async listAll(limit: number): Promise<(ApiTokenRow & { ownerName: string })[]> {
      const rows = await db
        .select({ token: apiTokens, ownerName: users.username })
        .from(apiTokens)
        .innerJoin(users, eq(users.id, apiTokens.userId))
        .orderBy(desc(apiTokens.createdAt))
        .limit(limit);
      return rows.map((r) => ({ ...r.token, ownerName: r.ownerName }));
    },

    async get(id: string): Promise<ApiTokenRow | null> {
      const [row] = await db.select().from(apiTokens).where(eq(apiTokens.id, id)).limit(1);
      return row ?? null;
    },

    async findBySecretHash(secretHash: string): Promise<ApiTokenRow | null> {
      const [row] = await db.select().from(apiTokens).where(eq(apiTokens.secretHash, secretHash)).limit(1);
      return row ?? null;
    },

    /** Marks a token revoked (keeping the first revocation time); null when there is none. */
    async revoke(id: string, at: Date): Promise<ApiTokenRow | null> {
      const [row] = await db
        .update(apiTokens)
        .set({ revokedAt: at })
        .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
        .returning();
      return row ?? (await this.get(id));
    },

    async touch(id: string, at: Date, ip: string | null): Promise<void> {
      await db.update(apiTokens).set({ lastUsedAt: at, lastUsedIp: ip }).where(eq(apiTokens.id, id));
    },
  };
}

export type TokensRepository = ReturnType<typeof createTokensRepository>;
