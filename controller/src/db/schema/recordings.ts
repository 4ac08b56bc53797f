// Terminal session recordings: one row per session (who, which host, when, how it ended); the
// asciicast v2 file itself lives in the controller's data dir (`recordings/<id>.cast`), written
// as the controller relays the session.
import { bigint, boolean, index, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';
import { users } from './users.ts';

export const recordings = pgTable(
  'recordings',
  {
    id: uuid('id').primaryKey(),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'set null' }),
    /** The channel kind recorded (`terminal`). */
    kind: text('kind').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    /** Null while the session runs (or when the controller died before it ended: see finalize). */
    endedAt: timestamp('ended_at', { withTimezone: true }),
    exitCode: integer('exit_code'),
    endReason: text('end_reason'),
    cols: integer('cols').notNull(),
    rows: integer('rows').notNull(),
    /** Bytes of terminal output recorded. */
    outputBytes: bigint('output_bytes', { mode: 'number' }).notNull().default(0),
    inputRecorded: boolean('input_recorded').notNull().default(false),
  },
  (t) => [
    index('recordings_host_started').on(t.hostId, t.startedAt),
    index('recordings_started').on(t.startedAt),
  ],
);

export type RecordingRow = typeof recordings.$inferSelect;
