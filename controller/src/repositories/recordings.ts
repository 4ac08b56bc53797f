// Terminal session recordings: the rows (who, host, when, how it ended). The asciicast files are
// the recordings service's, in the data dir.
import { and, desc, eq, inArray, isNotNull, isNull, lt, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { recordings, type RecordingRow } from '../db/schema/recordings.ts';

export type { RecordingRow };

export function createRecordingsRepository(db: Db) {
  return {
    async start(row: {
      id: string;
      hostId: string;
      userId: string | null;
      kind: string;
      startedAt: Date;
      cols: number;
      rows: number;
      inputRecorded: boolean;
    }): Promise<void> {
      await db.insert(recordings).values(row);
    },

    /** Sets how a session ended (once: a row already ended keeps its end). */
    async finish(
      id: string,
      end: { endedAt: Date; exitCode: number | null; endReason: string; outputBytes: number },
    ): Promise<void> {
      await db
        .update(recordings)
        .set(end)
        .where(and(eq(recordings.id, id), isNull(recordings.endedAt)));
    },

    /** Ends every row still open (the controller stopped mid-session); returns how many. */
    async finishOrphans(at: Date): Promise<number> {
      const rows = await db
        .update(recordings)
        .set({ endedAt: at, endReason: 'the controller stopped during the session' })
        .where(isNull(recordings.endedAt))
        .returning({ id: recordings.id });
      return rows.length;
    },

    get(id: string): Promise<RecordingRow | undefined> {
      return db
        .select()
        .from(recordings)
        .where(eq(recordings.id, id))
        .then((r) => r[0]);
    },

    /** Ids of ended recordings that started before `before` (the retention sweep), oldest first. */
    async endedBefore(before: Date, limit: number): Promise<string[]> {
      const rows = await db
        .select({ id: recordings.id })
        .from(recordings)
        .where(and(lt(recordings.startedAt, before), isNotNull(recordings.endedAt)))
        .orderBy(recordings.startedAt)
        .limit(limit);
      return rows.map((r) => r.id);
    },

    async remove(ids: readonly string[]): Promise<number> {
      if (ids.length === 0) return 0;
      const rows = await db
        .delete(recordings)
        .where(inArray(recordings.id, [...ids]))
        .returning({ id: recordings.id });
      return rows.length;
    },

    /** Newest first; `before` pages back by start time. */
    list(q: { hostId?: string; before?: Date; limit: number }): Promise<RecordingRow[]> {
      const where = [
        q.hostId ? eq(recordings.hostId, q.hostId) : undefined,
        q.before ? lt(recordings.startedAt, q.before) : undefined,
      ].filter((w) => w !== undefined);
      return db
        .select()
        .from(recordings)
        .where(where.length ? and(...where) : sql`true`)
        .orderBy(desc(recordings.startedAt))
        .limit(q.limit);
    },
  };
}

export type RecordingsRepository = ReturnType<typeof createRecordingsRepository>;
