// Run-on-many jobs and their schedules: a run (one command on a selection of hosts, started by a
// user or by a schedule) with one result row per host, and schedules (a cron expression in a
// time zone that starts runs). A scheduled slot is claimed in the database — the schedule's
// `next_run_at` moves forward by compare-and-set and the run row is unique per (schedule, slot) —
// so two controller replicas, or one restarted, never both start the same slot.
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';
import { bytea } from './streams.ts';
import { users } from './users.ts';

/** Which hosts a job targets (any mix; the union, restricted to hosts the actor may run on). */
export interface JobTarget {
  hostIds?: string[];
  groupId?: string;
  tag?: string;
}

/** What a job runs (shared `jobCommandSchema`). */
export interface StoredJobCommand {
  argv: string[];
  cwd?: string;
  env: Record<string, string>;
  user?: string;
}

export const jobSchedules = pgTable(
  'job_schedules',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    command: jsonb('command').$type<StoredJobCommand>().notNull(),
    target: jsonb('target').$type<JobTarget>().notNull(),
    concurrency: integer('concurrency').notNull(),
    timeoutSeconds: integer('timeout_seconds').notNull(),
    /** croner pattern (5 or 6 fields; 6 = with seconds). */
    cron: text('cron').notNull(),
    timezone: text('timezone').notNull(),
    enabled: boolean('enabled').notNull().default(true),
    /** The next slot to fire (null while disabled). Moved by compare-and-set when claimed. */
    nextRunAt: timestamp('next_run_at', { withTimezone: true, precision: 3 }),
    /** Whose rights the schedule runs with (the user who last saved it). */
    ownerId: uuid('owner_id').references(() => users.id, { onDelete: 'set null' }),
    /** Notification channels (docs/alerts.md) told when a run of this schedule fails. */
    notifyChannelIds: jsonb('notify_channel_ids').$type<string[]>().notNull().default([]),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('job_schedules_due').on(t.enabled, t.nextRunAt)],
);

export const jobRuns = pgTable(
  'job_runs',
  {
    id: uuid('id').primaryKey(),
    scheduleId: uuid('schedule_id').references(() => jobSchedules.id, { onDelete: 'cascade' }),
    /** The slot this run is for (scheduled runs); unique with the schedule: a slot runs once. */
    scheduledFor: timestamp('scheduled_for', { withTimezone: true, precision: 3 }),
    /** `manual` | `schedule` | `run-now`. */
    trigger: text('trigger').notNull(),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'set null' }),
    command: jsonb('command').$type<StoredJobCommand>().notNull(),
    target: jsonb('target').$type<JobTarget>().notNull(),
    concurrency: integer('concurrency').notNull(),
    timeoutSeconds: integer('timeout_seconds').notNull(),
    maxOutputBytes: integer('max_output_bytes').notNull(),
    /** `running` | `succeeded` | `failed` | `cancelled` | `skipped` | `interrupted`. */
    status: text('status').notNull(),
    /** Why it is what it is (skipped: still running; interrupted: controller died). */
    note: text('note'),
    hostCount: integer('host_count').notNull().default(0),
    failedCount: integer('failed_count').notNull().default(0),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    /** Touched by the controller running it; a running row not touched for a minute was orphaned. */
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }).notNull(),
  },
  (t) => [
    uniqueIndex('job_runs_schedule_slot').on(t.scheduleId, t.scheduledFor),
    index('job_runs_started').on(t.startedAt),
    index('job_runs_schedule_started').on(t.scheduleId, t.startedAt),
    index('job_runs_status').on(t.status),
  ],
);

export const jobRunHosts = pgTable(
  'job_run_hosts',
  {
    runId: uuid('run_id')
      .notNull()
      .references(() => jobRuns.id, { onDelete: 'cascade' }),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    hostName: text('host_name').notNull(),
    /** `pending` | `running` | `succeeded` | `failed` | `timeout` | `cancelled` | `offline` | `error`. */
    status: text('status').notNull(),
    exitCode: integer('exit_code'),
    error: text('error'),
    startedAt: timestamp('started_at', { withTimezone: true }),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    durationMs: integer('duration_ms'),
    stdout: bytea('stdout'),
    stderr: bytea('stderr'),
    stdoutBytes: bigint('stdout_bytes', { mode: 'number' }).notNull().default(0),
    stderrBytes: bigint('stderr_bytes', { mode: 'number' }).notNull().default(0),
    stdoutTruncated: boolean('stdout_truncated').notNull().default(false),
    stderrTruncated: boolean('stderr_truncated').notNull().default(false),
  },
  (t) => [primaryKey({ columns: [t.runId, t.hostId] })],
);

export type JobScheduleRow = typeof jobSchedules.$inferSelect;
export type JobRunRow = typeof jobRuns.$inferSelect;
export type JobRunHostRow = typeof jobRunHosts.$inferSelect;
