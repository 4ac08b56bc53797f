// Notification channels and the delivery outbox. A channel's secret is in its own column and is
// read only by the sender (`getWithSecret`); every other read leaves it out, so it never reaches
// the API or a log by accident.
import { and, asc, desc, eq, isNotNull, lte, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import {
  notificationChannels,
  notificationDeliveries,
  type ChannelRow,
  type DeliveryRow,
} from '../db/schema/alerts.ts';

export type { DeliveryRow };
/** A channel without its secret (what everything but the sender reads). */
export type ChannelInfo = Omit<ChannelRow, 'secret'> & { hasSecret: boolean };
export type ChannelWithSecret = ChannelRow;

const info = {
  id: notificationChannels.id,
  name: notificationChannels.name,
  kind: notificationChannels.kind,
  config: notificationChannels.config,
  createdAt: notificationChannels.createdAt,
  updatedAt: notificationChannels.updatedAt,
  hasSecret: sql<boolean>`${notificationChannels.secret} is not null`,
};

export function createNotificationsRepository(db: Db) {
  return {
    listChannels: (): Promise<ChannelInfo[]> =>
      db.select(info).from(notificationChannels).orderBy(asc(notificationChannels.name)),
    async getChannel(id: string): Promise<ChannelInfo | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select(info).from(notificationChannels).where(eq(notificationChannels.id, id));
      return row ?? null;
    },
    async getWithSecret(id: string): Promise<ChannelWithSecret | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(notificationChannels).where(eq(notificationChannels.id, id));
      return row ?? null;
    },
    /** `id` is made by the caller, so a secret can be sealed bound to it before the insert. */
    async createChannel(
      input: Pick<ChannelRow, 'id' | 'name' | 'kind' | 'config' | 'secret'>,
    ): Promise<ChannelInfo> {
      const [row] = await db.insert(notificationChannels).values(input).returning(info);
      return row!;
    },
    /** `secret`: undefined keeps the stored one, null clears it. */
    async updateChannel(
      id: string,
      patch: Partial<Pick<ChannelRow, 'name' | 'config' | 'secret'>>,
    ): Promise<ChannelInfo | null> {
      if (!isUuid(id)) return null;
      const [row] = await db
        .update(notificationChannels)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(notificationChannels.id, id))
        .returning(info);
      return row ?? null;
    },
    /** Every stored secret (for the start-up pass that seals legacy plaintext rows). */
    async storedSecrets(): Promise<{ id: string; secret: string }[]> {
      const rows = await db
        .select({ id: notificationChannels.id, secret: notificationChannels.secret })
        .from(notificationChannels)
        .where(isNotNull(notificationChannels.secret));
      return rows.map((r) => ({ id: r.id, secret: r.secret! }));
    },
    /** Replaces a stored secret with its re-sealed form, unless it changed meanwhile. */
    async resealSecret(id: string, from: string, to: string): Promise<boolean> {
      const rows = await db
        .update(notificationChannels)
        .set({ secret: to })
        .where(and(eq(notificationChannels.id, id), eq(notificationChannels.secret, from)))
        .returning({ id: notificationChannels.id });
      return rows.length > 0;
    },
    async deleteChannel(id: string): Promise<ChannelInfo | null> {
      if (!isUuid(id)) return null;
      const [row] = await db
        .delete(notificationChannels)
        .where(eq(notificationChannels.id, id))
        .returning(info);
      return row ?? null;
    },

    async enqueue(rows: (typeof notificationDeliveries.$inferInsert)[]): Promise<void> {
      if (rows.length > 0) await db.insert(notificationDeliveries).values(rows);
    },
    /** Pending deliveries due at `at`, oldest first. */
    due: (at: Date, limit: number): Promise<DeliveryRow[]> =>
      db
        .select()
        .from(notificationDeliveries)
        .where(
          and(eq(notificationDeliveries.status, 'pending'), lte(notificationDeliveries.nextAttemptAt, at)),
        )
        .orderBy(asc(notificationDeliveries.nextAttemptAt))
        .limit(limit),
    async settle(id: string, patch: Partial<typeof notificationDeliveries.$inferInsert>): Promise<void> {
      await db.update(notificationDeliveries).set(patch).where(eq(notificationDeliveries.id, id));
    },
    /** The latest deliveries (the console's delivery log). */
    recent: (limit: number): Promise<DeliveryRow[]> =>
      db.select().from(notificationDeliveries).orderBy(desc(notificationDeliveries.createdAt)).limit(limit),
    async prune(before: Date): Promise<void> {
      await db.delete(notificationDeliveries).where(lte(notificationDeliveries.createdAt, before));
    },
  };
}

export type NotificationsRepository = ReturnType<typeof createNotificationsRepository>;
