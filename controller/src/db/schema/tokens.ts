// API tokens for automation (CLI, Prometheus, Ansible): a bearer secret stored only as its SHA-256,
// scoped to permissions and optionally to host groups, expiring and revocable.
import { index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { users } from './users.ts';

export const apiTokens = pgTable(
  'api_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** Hex SHA-256 of the whole secret (`kat_...`). */
    secretHash: text('secret_hash').notNull().unique(),
    /** The permissions the token may use (never more than its user holds at the time of use). */
    permissions: text('permissions').array().notNull(),
    /** Host groups it is limited to; null = whatever hosts its user reaches. */
    groupIds: uuid('group_ids').array(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    lastUsedIp: text('last_used_ip'),
  },
  (t) => [index('api_tokens_user_idx').on(t.userId)],
);

export type ApiTokenRow = typeof apiTokens.$inferSelect;
