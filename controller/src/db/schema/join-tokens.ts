// Join tokens: what an admin hands to a new host so its agent may enroll. Only the SHA-256 of the
// secret is stored, so a database dump cannot enroll anything.
import { sql } from 'drizzle-orm';
import { check, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { users } from './users.ts';

export const joinTokens = pgTable(
  'join_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** Hex SHA-256 of the whole secret string (`kjt_...`). */
    secretHash: text('secret_hash').notNull().unique(),
    note: text('note'),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usesLeft: integer('uses_left').notNull(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [check('join_tokens_uses_left_nonnegative', sql`${t.usesLeft} >= 0`)],
);

export type JoinTokenRow = typeof joinTokens.$inferSelect;
