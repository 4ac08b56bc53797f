// Run-on-many jobs and schedules: runs with their per-host results, schedules, and the claims that
// keep a scheduled slot from running twice (compare-and-set of next_run_at, unique run per slot).
import { and, desc, eq, gt, inArray, isNotNull, lt, lte, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import {
  jobRunHosts,
  jobRuns,
  jobSchedules,
  type JobRunHostRow,
  type JobRunRow,
  type JobScheduleRow,
} from '../db/schema/jobs.ts';
import { hostTags } from '../db/schema/groups.ts';

export type { JobRunHostRow, JobRunRow, JobScheduleRow };
export type NewJobRun = typeof jobRuns.$inferInsert;
export type NewJobSchedule = typeof jobSchedules.$inferInsert;

export function createJobsRepository(db: Db) {
  return {
    /** Hosts carrying `tag`. */
    async hostsTagged(tag: string): Promise<string[]> {
      const rows = await db.select({ hostId: hostTags.hostId }).from(hostTags).where(eq(hostTags.tag, tag));
      return rows.map((r) => r.hostId);
    },

    /** Inserts a run and its host rows; false when the run's schedule slot was already taken. */
    async createRun(
      run: NewJobRun,
      hosts: { hostId: string; hostName: string; status: string; error?: string | null }[],
    ): Promise<boolean> {
      return db.transaction(async (tx) => {
        const inserted = await tx
          .insert(jobRuns)
          .values(run)
          .onConflictDoNothing()
          .returning({ id: jobRuns.id });
        if (inserted.length === 0) return false;
        if (hosts.length > 0)
          await tx.insert(jobRunHosts).values(
            hosts.map((h) => ({
              runId: run.id!,
              hostId: h.hostId,
              hostName: h.hostName,
              status: h.status,
              error: h.error ?? null,
            })),
          );
        return true;
      });
    },

    async hostStarted(runId: string, hostId: string, at: Date): Promise<void> {
      await db
        .update(jobRunHosts)
        .set({ status: 'running', startedAt: at })
        .where(and(eq(jobRunHosts.runId, runId), eq(jobRunHosts.hostId, hostId)));
    },

    async hostFinished(
      runId: string,
      hostId: string,
      result: Pick<
        JobRunHostRow,
        | 'status'
        | 'exitCode'
        | 'error'
        | 'endedAt'
        | 'durationMs'
        | 'stdout'
        | 'stderr'
        | 'stdoutBytes'
        | 'stderrBytes'
        | 'stdoutTruncated'
        | 'stderrTruncated'
      >,
    ): Promise<void> {
      await db
        .update(jobRunHosts)
        .set(result)
        .where(and(eq(jobRunHosts.runId, runId), eq(jobRunHosts.hostId, hostId)));
    },

    async finishRun(
      id: string,
      end: { status: string; endedAt: Date; failedCount: number; note?: string | null },
    ): Promise<void> {
      await db
        .update(jobRuns)
        .set(end)
        .where(and(eq(jobRuns.id, id), eq(jobRuns.status, 'running')));
    },

    async heartbeat(ids: readonly string[], at: Date): Promise<void> {
      if (ids.length === 0) return;
      await db
        .update(jobRuns)
        .set({ heartbeatAt: at })
        .where(inArray(jobRuns.id, [...ids]));
    },

    /** Marks runs whose controller stopped touching them as interrupted; returns them. */
    async interruptOrphans(staleBefore: Date, at: Date): Promise<JobRunRow[]> {
      const rows = await db
        .update(jobRuns)
        .set({ status: 'interrupted', endedAt: at, note: 'the controller running it stopped' })
        .where(and(eq(jobRuns.status, 'running'), lt(jobRuns.heartbeatAt, staleBefore)))
        .returning();
      if (rows.length > 0) {
        await db
          .update(jobRunHosts)
          .set({ status: 'error', error: 'the controller running it stopped', endedAt: at })
          .where(
            and(
              inArray(
                jobRunHosts.runId,
                rows.map((r) => r.id),
              ),
              inArray(jobRunHosts.status, ['pending', 'running']),
            ),
          );
      }
      return rows;
    },

    getRun(id: string): Promise<JobRunRow | undefined> {
      return db
        .select()
        .from(jobRuns)
        .where(eq(jobRuns.id, id))
        .then((r) => r[0]);
    },

    /** Per-host rows of a run; output columns only when `withOutput`. */
    async runHosts(runId: string, withOutput: boolean): Promise<JobRunHostRow[]> {
      const rows = await db
        .select()
        .from(jobRunHosts)
        .where(eq(jobRunHosts.runId, runId))
        .orderBy(jobRunHosts.hostName);
      return withOutput ? rows : rows.map((r) => ({ ...r, stdout: null, stderr: null }));
    },

    /** Newest first. */
    listRuns(q: { scheduleId?: string; before?: Date; limit: number }): Promise<JobRunRow[]> {
      const where = [
        q.scheduleId ? eq(jobRuns.scheduleId, q.scheduleId) : undefined,
        q.before ? lt(jobRuns.startedAt, q.before) : undefined,
      ].filter((w) => w !== undefined);
      return db
        .select()
        .from(jobRuns)
        .where(where.length ? and(...where) : undefined)
        .orderBy(desc(jobRuns.startedAt))
        .limit(q.limit);
    },

    /** Whether a schedule has a run still running. */
    async scheduleRunning(scheduleId: string): Promise<boolean> {
      const rows = await db
        .select({ id: jobRuns.id })
        .from(jobRuns)
        .where(and(eq(jobRuns.scheduleId, scheduleId), eq(jobRuns.status, 'running')))
        .limit(1);
      return rows.length > 0;
    },

    // ---- schedules ----

    async createSchedule(row: NewJobSchedule): Promise<JobScheduleRow> {
      const [created] = await db.insert(jobSchedules).values(row).returning();
      return created!;
    },

    async updateSchedule(id: string, set: Partial<NewJobSchedule>): Promise<JobScheduleRow | undefined> {
      const [row] = await db.update(jobSchedules).set(set).where(eq(jobSchedules.id, id)).returning();
      return row;
    },

    async deleteSchedule(id: string): Promise<boolean> {
      const rows = await db
        .delete(jobSchedules)
        .where(eq(jobSchedules.id, id))
        .returning({ id: jobSchedules.id });
      return rows.length > 0;
    },

    getSchedule(id: string): Promise<JobScheduleRow | undefined> {
      return db
        .select()
        .from(jobSchedules)
        .where(eq(jobSchedules.id, id))
        .then((r) => r[0]);
    },

    listSchedules(): Promise<JobScheduleRow[]> {
      return db.select().from(jobSchedules).orderBy(jobSchedules.name);
    },

    /** Enabled schedules whose next slot is at or before `at`. */
    dueSchedules(at: Date): Promise<JobScheduleRow[]> {
      return db
        .select()
        .from(jobSchedules)
        .where(
          and(
            eq(jobSchedules.enabled, true),
            isNotNull(jobSchedules.nextRunAt),
            lte(jobSchedules.nextRunAt, at),
          ),
        );
    },

    /**
     * Claims slot `slot` of a schedule by moving its next_run_at to `next` — only when it still is
     * `slot`, so of two controllers that both saw the slot due, one wins.
     */
    async claimSlot(id: string, slot: Date, next: Date | null): Promise<boolean> {
      const rows = await db
        .update(jobSchedules)
        .set({ nextRunAt: next })
        .where(and(eq(jobSchedules.id, id), eq(jobSchedules.nextRunAt, slot), eq(jobSchedules.enabled, true)))
        .returning({ id: jobSchedules.id });
      return rows.length > 0;
    },

    /**
     * Each host's latest finished result in each schedule's runs (a host left out of the last run —
     * a skipped slot has no hosts — keeps the result it had), newest run first per host.
     */
    async lastHostResults(scheduleIds: readonly string[]) {
      if (scheduleIds.length === 0) return [];
      return db
        .selectDistinctOn([jobRuns.scheduleId, jobRunHosts.hostId], {
          scheduleId: jobRuns.scheduleId,
          runId: jobRunHosts.runId,
          hostId: jobRunHosts.hostId,
          hostName: jobRunHosts.hostName,
          status: jobRunHosts.status,
          exitCode: jobRunHosts.exitCode,
          error: jobRunHosts.error,
          endedAt: jobRunHosts.endedAt,
        })
        .from(jobRunHosts)
        .innerJoin(jobRuns, eq(jobRuns.id, jobRunHosts.runId))
        .where(
          and(
            inArray(jobRuns.scheduleId, [...scheduleIds]),
            sql`${jobRunHosts.status} not in ('pending', 'running')`,
          ),
        )
        .orderBy(jobRuns.scheduleId, jobRunHosts.hostId, desc(jobRuns.startedAt));
    },

    /** The last run of each schedule (for the schedules list). */
    async lastRuns(scheduleIds: readonly string[]): Promise<Map<string, JobRunRow>> {
      if (scheduleIds.length === 0) return new Map();
      const rows = await db
        .selectDistinctOn([jobRuns.scheduleId])
        .from(jobRuns)
        .where(inArray(jobRuns.scheduleId, [...scheduleIds]))
        .orderBy(jobRuns.scheduleId, desc(jobRuns.startedAt));
      return new Map(rows.map((r) => [r.scheduleId!, r]));
    },

    /**
     * Deletes the runs of each schedule beyond its newest `keep` (history retention; a run still
     * running is never deleted). At most `batch` runs per call; returns how many.
     */
    async trimScheduleRuns(keep: number, batch = 5_000): Promise<number> {
      const rank = sql<number>`row_number() over (partition by ${jobRuns.scheduleId} order by ${jobRuns.startedAt} desc)`;
      const ranked = db
        .select({ id: jobRuns.id, rank: rank.as('rank') })
        .from(jobRuns)
        .where(and(isNotNull(jobRuns.scheduleId), ne(jobRuns.status, 'running')))
        .as('ranked');
      const old = await db.select({ id: ranked.id }).from(ranked).where(gt(ranked.rank, keep)).limit(batch);
      if (old.length === 0) return 0;
      const rows = await db
        .delete(jobRuns)
        .where(
          inArray(
            jobRuns.id,
            old.map((r) => r.id),
          ),
        )
        .returning({ id: jobRuns.id });
      return rows.length;
    },

    /** Deletes runs that ended before `before` (history retention); returns how many. */
    async deleteRunsBefore(before: Date): Promise<number> {
      const rows = await db
        .delete(jobRuns)
        .where(and(lt(jobRuns.startedAt, before), sql`${jobRuns.status} <> 'running'`))
        .returning({ id: jobRuns.id });
      return rows.length;
    },
  };
}

export type JobsRepository = ReturnType<typeof createJobsRepository>;
