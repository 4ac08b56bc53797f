// Log retention per process: the limits an operator set for a process's stored output (age and
// size; absent: the controller's defaults), and a small summary of each stored chunk of a host's
// `logs` stream (lines and bytes per process, newest line time) so the retention job weighs
// processes without decoding every chunk on each run.
import { bigint, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';

export const processLogRetention = pgTable(
  'process_log_retention',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    process: text('process').notNull(),
    /** Lines older than this many days are removed (null: the default). */
    maxAgeDays: integer('max_age_days'),
    /** Only the newest this many bytes of output are kept (null: the default). */
    maxBytes: bigint('max_bytes', { mode: 'number' }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'process_log_retention_pk', columns: [t.hostId, t.process] })],
);

/** Per process in one chunk: [lines, bytes, newest line time (epoch ms)]. */
export type ChunkSummary = Record<string, [number, number, number]>;

export const logChunkSummaries = pgTable(
  'log_chunk_summaries',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    firstSeq: bigint('first_seq', { mode: 'number' }).notNull(),
    summary: jsonb('summary').$type<ChunkSummary>().notNull(),
  },
  (t) => [primaryKey({ name: 'log_chunk_summaries_pk', columns: [t.hostId, t.firstSeq] })],
);
