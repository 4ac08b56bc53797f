// Linked wallets, sign-in nonces and the wallet sign-in policy: the only file that reads or writes
// them.
import { and, asc, eq, lte, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { accessSettings } from '../db/schema/users.ts';
import { walletNonces, wallets, type WalletRow } from '../db/schema/wallets.ts';

export type { WalletRow };
export type NoncePurpose = 'login' | 'link';

/** Wallet table access. */
export function createWalletsRepository(db: Db) {
  return {
    async policy(): Promise<{ enabled: boolean; chainIds: number[] }> {
      const [row] = await db.select().from(accessSettings).where(eq(accessSettings.id, 1)).limit(1);
      return { enabled: row?.walletSignIn ?? false, chainIds: row?.walletChainIds ?? [1] };
    },

    async setPolicy(enabled: boolean, chainIds: number[], at: Date): Promise<void> {
      await db
        .insert(accessSettings)
        .values({ id: 1, walletSignIn: enabled, walletChainIds: chainIds, updatedAt: at })
        .onConflictDoUpdate({
          target: accessSettings.id,
          set: { walletSignIn: enabled, walletChainIds: chainIds, updatedAt: at },
        });
    },

    /** Drops expired nonces; then how many live ones `ip` holds and how many there are in all. */
    async sweepAndCount(ip: string | null, at: Date): Promise<{ fromIp: number; total: number }> {
      await db.delete(walletNonces).where(lte(walletNonces.expiresAt, at));
      const [row] = await db
        .select({
          total: sql<number>`count(*)::int`,
          fromIp: sql<number>`count(*) filter (where ${walletNonces.ip} = ${ip ?? ''})::int`,
        })
        .from(walletNonces);
      return { fromIp: row?.fromIp ?? 0, total: row?.total ?? 0 };
    },

    async createNonce(input: {
      nonce: string;
      purpose: NoncePurpose;
      userId: string | null;
      ip: string | null;
      expiresAt: Date;
    }): Promise<void> {
      await db.insert(walletNonces).values(input);
    },

    /**
     * Uses a nonce once: deletes it and answers true when it exists, is unexpired and was issued for
     * `purpose` (and `userId`, for linking). Two requests with one nonce: only one gets true.
     */
    async consumeNonce(
      nonce: string,
      purpose: NoncePurpose,
      userId: string | null,
      at: Date,
    ): Promise<boolean> {
      const rows = await db.delete(walletNonces).where(eq(walletNonces.nonce, nonce)).returning();
      const row = rows[0];
      return (
        !!row &&
        row.purpose === purpose &&
        row.expiresAt.getTime() > at.getTime() &&
        (purpose === 'login' || row.userId === userId)
      );
    },

    async find(address: string): Promise<WalletRow | null> {
      const [row] = await db.select().from(wallets).where(eq(wallets.address, address)).limit(1);
      return row ?? null;
    },

    async listForUser(userId: string): Promise<WalletRow[]> {
      return db.select().from(wallets).where(eq(wallets.userId, userId)).orderBy(asc(wallets.createdAt));
    },

    /** Links an address; false when it is linked already (to anyone). */
    async link(input: {
      address: string;
      userId: string;
      chainId: number;
      createdAt: Date;
    }): Promise<boolean> {
      const rows = await db.insert(wallets).values(input).onConflictDoNothing().returning();
      return rows.length > 0;
    },

    async unlink(userId: string, address: string): Promise<boolean> {
      const rows = await db
        .delete(wallets)
        .where(and(eq(wallets.userId, userId), eq(wallets.address, address)))
        .returning();
      return rows.length > 0;
    },

    async touch(address: string, at: Date): Promise<void> {
      await db.update(wallets).set({ lastUsedAt: at }).where(eq(wallets.address, address));
    },
  };
}

export type WalletsRepository = ReturnType<typeof createWalletsRepository>;
