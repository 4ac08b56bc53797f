// Supervised process definitions, per host: what the console created and edits. The agent keeps
// its own copy (and the live state); this one is what the controller re-applies and shows while
// the host is offline. Their output is the `logs` stream, stored as chunks in stream_chunks.
import { jsonb, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import type { ProcessSpec } from '@keel/shared';
import { hosts } from './hosts.ts';

export const processDefinitions = pgTable(
  'process_definitions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    spec: jsonb('spec').$type<ProcessSpec>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [unique('process_definitions_host_name').on(t.hostId, t.name)],
);

export type ProcessDefinitionRow = typeof processDefinitions.$inferSelect;
