// Alerts and notifications: rules, alert instances (the state machine pending -> firing ->
// resolved, kept as history once resolved), silences, maintenance windows, notification channels
// (secrets in their own column, never returned by the API) and the delivery outbox (each
// notification to each channel, retried with exponential backoff until it is sent or given up).
import {
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  real,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';

/** Where a rule (or a maintenance window) applies. */
export type AlertScope = { type: 'all' } | { type: 'host'; id: string } | { type: 'group'; id: string };

export const alertRules = pgTable('alert_rules', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  kind: text('kind').notNull(),
  /** The kind's parameters (validated by the service's schema for the kind). */
  params: jsonb('params').$type<Record<string, unknown>>().notNull(),
  scope: jsonb('scope').$type<AlertScope>().notNull(),
  severity: text('severity').notNull().default('warning'),
  /** The condition must hold this long before the alert fires. */
  forSeconds: integer('for_seconds').notNull().default(0),
  /** A firing alert resolves only after the condition has been clear this long. */
  resolveForSeconds: integer('resolve_for_seconds').notNull().default(0),
  channelIds: uuid('channel_ids')
    .array()
    .notNull()
    .default(sql`'{}'::uuid[]`),
  enabled: boolean('enabled').notNull().default(true),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const alerts = pgTable(
  'alerts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    ruleId: uuid('rule_id')
      .notNull()
      .references(() => alertRules.id, { onDelete: 'cascade' }),
    /** What the alert is about, unique per rule while active: `host:<id>`, `check:<id>:<host>`. */
    subject: text('subject').notNull(),
    hostId: uuid('host_id'),
    checkId: uuid('check_id'),
    state: text('state').$type<'pending' | 'firing' | 'resolved'>().notNull(),
    value: real('value'),
    summary: text('summary').notNull(),
    /** When the condition first held (pending since). */
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    firedAt: timestamp('fired_at', { withTimezone: true }),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
    /** While firing: when the condition was first seen clear (resolve duration runs from here). */
    clearSince: timestamp('clear_since', { withTimezone: true }),
    /** True when it fired inside a silence or maintenance window (no notification was sent). */
    silenced: boolean('silenced').notNull().default(false),
    /** When someone said they are on it (the console shows who; notifications are unchanged). */
    acknowledgedAt: timestamp('acknowledged_at', { withTimezone: true }),
    /** The user who acknowledged it. */
    acknowledgedBy: uuid('acknowledged_by'),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('alerts_active_subject')
      .on(t.ruleId, t.subject)
      .where(sql`${t.state} <> 'resolved'`),
    index('alerts_started_idx').on(t.startedAt),
  ],
);

/** Matchers: every one that is set must match (rule, host, kind); none set matches every alert. */
export interface SilenceMatchers {
  ruleId?: string;
  hostId?: string;
  kind?: string;
}

export const alertSilences = pgTable('alert_silences', {
  id: uuid('id').primaryKey().defaultRandom(),
  matchers: jsonb('matchers').$type<SilenceMatchers>().notNull(),
  startsAt: timestamp('starts_at', { withTimezone: true }).notNull(),
  endsAt: timestamp('ends_at', { withTimezone: true }).notNull(),
  comment: text('comment').notNull().default(''),
  createdBy: uuid('created_by'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const maintenanceWindows = pgTable('maintenance_windows', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  scope: jsonb('scope').$type<AlertScope>().notNull(),
  startsAt: timestamp('starts_at', { withTimezone: true }).notNull(),
  durationMinutes: integer('duration_minutes').notNull(),
  /** Repeats every day or week from `startsAt`; null: once. */
  recurrence: text('recurrence').$type<'daily' | 'weekly' | null>(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const notificationChannels = pgTable('notification_channels', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  kind: text('kind').$type<'webhook' | 'telegram' | 'ntfy' | 'email'>().notNull(),
  /** Settings that are not secret (URLs, chat id, topic, addresses). */
  config: jsonb('config').$type<Record<string, unknown>>().notNull(),
  /** The secret (webhook HMAC key, bot token, ntfy access token, SMTP password); write-only. */
  secret: text('secret'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const notificationDeliveries = pgTable(
  'notification_deliveries',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    channelId: uuid('channel_id')
      .notNull()
      .references(() => notificationChannels.id, { onDelete: 'cascade' }),
    alertId: uuid('alert_id').references(() => alerts.id, { onDelete: 'cascade' }),
    /** `firing`, `resolved` or `test`. */
    event: text('event').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    status: text('status').$type<'pending' | 'sent' | 'failed'>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull(),
    lastError: text('last_error'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    sentAt: timestamp('sent_at', { withTimezone: true }),
  },
  (t) => [index('notification_deliveries_due_idx').on(t.status, t.nextAttemptAt)],
);

export type AlertRuleRow = typeof alertRules.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;
export type SilenceRow = typeof alertSilences.$inferSelect;
export type MaintenanceRow = typeof maintenanceWindows.$inferSelect;
export type ChannelRow = typeof notificationChannels.$inferSelect;
export type DeliveryRow = typeof notificationDeliveries.$inferSelect;
