// The audit log: append-only and hash-chained. Each row's hash covers the previous row's hash and
// the row's own content, so editing or deleting a row in the middle breaks every later link.
import { bigserial, index, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true }).notNull(),
    /** A user id, `system`, or `agent:<hostId>`. */
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target'),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    ip: text('ip'),
    /** The previous row's hash (64 zeros for the first row); unique, so the chain cannot fork. */
    prevHash: text('prev_hash').notNull().unique(),
    /** Hex SHA-256 of prev_hash followed by the canonical JSON of this row. */
    hash: text('hash').notNull().unique(),
  },
  (t) => [index('audit_log_at_idx').on(t.at), index('audit_log_actor_idx').on(t.actor)],
);

export type AuditRow = typeof auditLog.$inferSelect;
