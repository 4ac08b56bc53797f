// Service checks: their definitions (what to probe, from which hosts, how often) and their
// results. A result is one row (check, host, time): checks run every 5 s at the fastest and
// usually every 30-60 s, so even 1,000 checks from 3 places each at 30 s is 100 rows/s, far below
// what a block format is needed for; a row keeps uptime and history plain SQL aggregates.
import {
  boolean,
  index,
  integer,
  jsonb,
  pgSequence,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import type { CheckKind, CheckSpec } from '@keel/shared';
import { hosts } from './hosts.ts';

/** Bumped on every change to the check set; pushed with it so agents keep only the newest. */
export const checkGeneration = pgSequence('check_generation', { startWith: 1 });

export const checks = pgTable('checks', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  kind: text('kind').$type<CheckKind>().notNull(),
  target: jsonb('target').$type<CheckSpec['target']>().notNull(),
  /** The hosts that run it (each makes its own results: "from several places"). */
  hostIds: uuid('host_ids').array().notNull(),
  intervalSeconds: integer('interval_seconds').notNull(),
  timeoutMs: integer('timeout_ms').notNull(),
  enabled: boolean('enabled').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const checkResults = pgTable(
  'check_results',
  {
    checkId: uuid('check_id')
      .notNull()
      .references(() => checks.id, { onDelete: 'cascade' }),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    /** When the run started (the agent's clock). */
    ts: timestamp('ts', { withTimezone: true, precision: 3 }).notNull(),
    ok: boolean('ok').notNull(),
    latencyMs: real('latency_ms'),
    status: integer('status'),
    certExpiresAt: timestamp('cert_expires_at', { withTimezone: true }),
    error: text('error'),
  },
  (t) => [
    // A resent result hits the key and is skipped; history and uptime read one check over a range.
    primaryKey({ name: 'check_results_pk', columns: [t.checkId, t.hostId, t.ts] }),
    index('check_results_ts_idx').on(t.ts),
  ],
);

export type CheckRow = typeof checks.$inferSelect;
export type CheckResultRow = typeof checkResults.$inferSelect;
