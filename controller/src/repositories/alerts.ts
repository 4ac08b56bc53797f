// Alerting at rest: rules, alert instances (active ones and history), silences and maintenance
// windows, plus the reads rule evaluation needs from other domains' tables (recent metric values
// per host, the disk trend per host, host presence). Those reads only SELECT; the tables belong
// to their own repositories.
import { and, desc, eq, inArray, ne, sql } from 'drizzle-orm';
import { metricSeriesNames } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import {
  alertRules,
  alerts,
  alertSilences,
  maintenanceWindows,
  type AlertRow,
  type AlertRuleRow,
  type MaintenanceRow,
  type SilenceRow,
} from '../db/schema/alerts.ts';

export type { AlertRow, AlertRuleRow, MaintenanceRow, SilenceRow };

const rowsOf = (result: unknown): Record<string, unknown>[] =>
  Array.isArray(result)
    ? (result as Record<string, unknown>[])
    : ((result as { rows?: Record<string, unknown>[] }).rows ?? []);

export type RuleInput = Pick<
  AlertRuleRow,
  | 'name'
  | 'kind'
  | 'params'
  | 'scope'
  | 'severity'
  | 'forSeconds'
  | 'resolveForSeconds'
  | 'channelIds'
  | 'enabled'
>;

export function createAlertsRepository(db: Db) {
  return {
    // Rules
    listRules: (): Promise<AlertRuleRow[]> =>
      db.select().from(alertRules).orderBy(alertRules.name, alertRules.id),
    async getRule(id: string): Promise<AlertRuleRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(alertRules).where(eq(alertRules.id, id)).limit(1);
      return row ?? null;
    },
    async createRule(input: RuleInput): Promise<AlertRuleRow> {
      const [row] = await db.insert(alertRules).values(input).returning();
      return row!;
    },
    async updateRule(id: string, patch: Partial<RuleInput>): Promise<AlertRuleRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db
        .update(alertRules)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(alertRules.id, id))
        .returning();
      return row ?? null;
    },
    async deleteRule(id: string): Promise<AlertRuleRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.delete(alertRules).where(eq(alertRules.id, id)).returning();
      return row ?? null;
    },

    // Alert instances
    active: (): Promise<AlertRow[]> => db.select().from(alerts).where(ne(alerts.state, 'resolved')),
    async insertAlert(row: typeof alerts.$inferInsert): Promise<AlertRow | null> {
      // The partial unique index keeps one active alert per rule and subject (two controllers
      // evaluating at once: the second insert is a no-op).
      const [made] = await db.insert(alerts).values(row).onConflictDoNothing().returning();
      return made ?? null;
    },
    async updateAlert(id: string, patch: Partial<typeof alerts.$inferInsert>): Promise<AlertRow | null> {
      const [row] = await db
        .update(alerts)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(alerts.id, id))
        .returning();
      return row ?? null;
    },
    /** Marks an alert acknowledged by `userId` (first acknowledgement wins); null if there is none. */
    async acknowledge(id: string, userId: string | null, at: Date): Promise<AlertRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db
        .update(alerts)
        .set({
          acknowledgedAt: sql`coalesce(${alerts.acknowledgedAt}, ${at.toISOString()}::timestamptz)`,
          acknowledgedBy: sql`coalesce(${alerts.acknowledgedBy}, ${userId}::uuid)`,
          updatedAt: at,
        })
        .where(eq(alerts.id, id))
        .returning();
      return row ?? null;
    },
    get: async (id: string): Promise<AlertRow | null> =>
      isUuid(id) ? ((await db.select().from(alerts).where(eq(alerts.id, id)))[0] ?? null) : null,
    async deleteAlert(id: string): Promise<void> {
      await db.delete(alerts).where(eq(alerts.id, id));
    },
    /** Alerts, newest first: `active` (pending and firing) or every one that fired (history). */
    list(q: { state: 'active' | 'history'; limit: number; before?: Date }): Promise<AlertRow[]> {
      const where =
        q.state === 'active'
          ? ne(alerts.state, 'resolved')
          : and(
              sql`${alerts.firedAt} is not null`,
              q.before ? sql`${alerts.startedAt} < ${q.before.toISOString()}::timestamptz` : undefined,
            );
      return db.select().from(alerts).where(where).orderBy(desc(alerts.startedAt)).limit(q.limit);
    },
    async getAlert(id: string): Promise<AlertRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(alerts).where(eq(alerts.id, id)).limit(1);
      return row ?? null;
    },

    // Silences
    listSilences: (): Promise<SilenceRow[]> =>
      db.select().from(alertSilences).orderBy(desc(alertSilences.endsAt)),
    async createSilence(input: typeof alertSilences.$inferInsert): Promise<SilenceRow> {
      const [row] = await db.insert(alertSilences).values(input).returning();
      return row!;
    },
    async deleteSilence(id: string): Promise<SilenceRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.delete(alertSilences).where(eq(alertSilences.id, id)).returning();
      return row ?? null;
    },

    // Maintenance windows
    listMaintenance: (): Promise<MaintenanceRow[]> =>
      db.select().from(maintenanceWindows).orderBy(desc(maintenanceWindows.startsAt)),
    async createMaintenance(input: typeof maintenanceWindows.$inferInsert): Promise<MaintenanceRow> {
      const [row] = await db.insert(maintenanceWindows).values(input).returning();
      return row!;
    },
    async deleteMaintenance(id: string): Promise<MaintenanceRow | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.delete(maintenanceWindows).where(eq(maintenanceWindows.id, id)).returning();
      return row ?? null;
    },

    // Reads for evaluation (other domains' tables, SELECT only)
    /** Average of `series` per host over [from, to] of raw ticks, for hosts that have any. */
    async metricAverages(
      series: string,
      hostIds: readonly string[],
      from: Date,
      to: Date,
    ): Promise<Map<string, number>> {
      if (!(metricSeriesNames as readonly string[]).includes(series) || hostIds.length === 0)
        return new Map();
      const ids = hostIds.filter(isUuid);
      const result = await db.execute(sql`
        select host_id, avg(${sql.raw(`"${series}"`)})::float8 as v from metric_samples
        where host_id = any(${`{${ids.join(',')}}`}::uuid[])
          and ts >= ${from.toISOString()}::timestamptz and ts <= ${to.toISOString()}::timestamptz
        group by host_id`);
      const out = new Map<string, number>();
      for (const r of rowsOf(result)) if (r.v !== null) out.set(String(r.host_id), Number(r.v));
      return out;
    },
    /**
     * The least-squares line of the fullest file system's use (%) per host over [from, to]:
     * slope in % per second, the fitted value at `to`, and the number of ticks behind it.
     */
    async diskTrend(
      hostIds: readonly string[],
      from: Date,
      to: Date,
    ): Promise<Map<string, { slope: number; valueAtEnd: number; points: number }>> {
      const ids = hostIds.filter(isUuid);
      if (ids.length === 0) return new Map();
      const end = to.getTime() / 1000;
      const result = await db.execute(sql`
        select host_id, regr_slope(disk_used_max_pct, extract(epoch from ts))::float8 as slope,
          regr_intercept(disk_used_max_pct, extract(epoch from ts))::float8 as intercept,
          regr_count(disk_used_max_pct, extract(epoch from ts))::int as n
        from metric_samples
        where host_id = any(${`{${ids.join(',')}}`}::uuid[])
          and ts >= ${from.toISOString()}::timestamptz and ts <= ${to.toISOString()}::timestamptz
        group by host_id`);
      const out = new Map<string, { slope: number; valueAtEnd: number; points: number }>();
      for (const r of rowsOf(result)) {
        if (r.slope === null || r.intercept === null) continue;
        const slope = Number(r.slope);
        out.set(String(r.host_id), {
          slope,
          valueAtEnd: Number(r.intercept) + slope * end,
          points: Number(r.n),
        });
      }
      return out;
    },
    /** Every host with its presence (revoked ones left out). */
    async hostsPresence(): Promise<{ id: string; name: string; online: boolean; lastSeenAt: Date | null }[]> {
      const result = await db.execute(
        sql`select id, name, online, last_seen_at from hosts where revoked_at is null order by name`,
      );
      return rowsOf(result).map((r) => ({
        id: String(r.id),
        name: String(r.name),
        online: Boolean(r.online),
        lastSeenAt: r.last_seen_at ? new Date(r.last_seen_at as string) : null,
      }));
    },
    /** Deletes resolved alerts older than `before` (history retention). */
    async pruneHistory(before: Date): Promise<void> {
      await db
        .delete(alerts)
        .where(
          and(eq(alerts.state, 'resolved'), sql`${alerts.resolvedAt} < ${before.toISOString()}::timestamptz`),
        );
    },
    /** Alerts by id (for notifications). */
    byIds: (ids: string[]): Promise<AlertRow[]> =>
      ids.length === 0 ? Promise.resolve([]) : db.select().from(alerts).where(inArray(alerts.id, ids)),
  };
}

export type AlertsRepository = ReturnType<typeof createAlertsRepository>;
