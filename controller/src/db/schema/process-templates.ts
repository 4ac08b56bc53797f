// Process templates imported or written by the fleet's operators (Keel's eggs): the document in the
// `keel-template/1` format, one row per template id. The built-in catalogue lives in code
// (services/process-template-catalogue.ts) and is never stored, so an upgrade updates it.
import { jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import type { ProcessTemplate } from '@keel/shared';
import { users } from './users.ts';

export const processTemplates = pgTable('process_templates', {
  /** The template's slug (unique across stored and built-in templates). */
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  document: jsonb('document').$type<ProcessTemplate>().notNull(),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export type ProcessTemplateRow = typeof processTemplates.$inferSelect;
