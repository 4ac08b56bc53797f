// Stored process templates (imported eggs, operators' own); the built-in ones are not stored.
import { asc, eq, sql } from 'drizzle-orm';
import type { ProcessTemplate } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { processTemplates, type ProcessTemplateRow } from '../db/schema/process-templates.ts';

/** Stored templates by id. */
export function createProcessTemplateRepository(db: Db) {
  return {
    list(): Promise<ProcessTemplateRow[]> {
      return db.select().from(processTemplates).orderBy(asc(processTemplates.name));
    },

    async get(id: string): Promise<ProcessTemplateRow | null> {
      const [row] = await db.select().from(processTemplates).where(eq(processTemplates.id, id));
      return row ?? null;
    },

    /** Inserts, or replaces when `replace`; null when the id exists and `replace` is false. */
    async save(
      document: ProcessTemplate,
      createdBy: string | null,
      replace: boolean,
    ): Promise<ProcessTemplateRow | null> {
      const insert = db
        .insert(processTemplates)
        .values({ id: document.id, name: document.name, document, createdBy });
      const rows = replace
        ? await insert
            .onConflictDoUpdate({
              target: processTemplates.id,
              set: { name: document.name, document, updatedAt: sql`now()` },
            })
            .returning()
        : await insert.onConflictDoNothing().returning();
      return rows[0] ?? null;
    },

    async remove(id: string): Promise<boolean> {
      const rows = await db
        .delete(processTemplates)
        .where(eq(processTemplates.id, id))
        .returning({ id: processTemplates.id });
      return rows.length > 0;
    },
  };
}

export type ProcessTemplateRepository = ReturnType<typeof createProcessTemplateRepository>;
