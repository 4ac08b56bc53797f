// Traffic at rest: turns the interface counters of newly stored metrics ticks into bytes per UTC day
// (inside the metrics append's transaction, so a resent tick is never counted twice), reads a
// host's totals over a range of days, and keeps each host's billing plan. The delta rules — what a
// counter going backwards means — are `counterDelta` below; docs/metrics.md explains them.
import { and, eq, gte, lt, sql } from 'drizzle-orm';
import type { Db, Transaction } from '../db/index.ts';
import { trafficDaily, trafficPlans } from '../db/schema/traffic.ts';

const WRAP_32 = 2 ** 32;
/** A delta above this many bytes per second (100 Gbit/s) is not a wrap but a reset. */
const MAX_BYTES_PER_SECOND = 12.5e9;

/**
 * Bytes moved between two readings of one counter. Forward: the difference. Backwards: after a
 * reboot (`rebooted`), a re-created interface or a reloaded driver the counter restarted at 0, so
 * the new value is what moved since; a 32-bit counter (32-bit kernels) that was in the upper half
 * of its range and would imply a plausible rate wrapped, so the bytes are the way round 2^32.
 *
 * @example counterDelta(4_294_967_000, 200, 5, false) // 496: wrapped
 */
export function counterDelta(prev: number, cur: number, seconds: number, rebooted: boolean): number {
  if (rebooted) return cur;
  if (cur >= prev) return cur - prev;
  if (prev < WRAP_32 && prev >= WRAP_32 / 2) {
    const wrapped = WRAP_32 - prev + cur;
    if (wrapped <= Math.max(1, seconds) * MAX_BYTES_PER_SECOND) return wrapped;
  }
  return cur;
}

/** The UTC day (YYYY-MM-DD) the bytes observed by a tick at `ts` were moved in: that of ts - 1 ms. */
export function trafficDay(ts: number): string {
  return new Date(ts - 1).toISOString().slice(0, 10);
}

/** One stored tick's interface counters (loopback already left out). */
export interface TrafficReading {
  hostId: string;
  ts: number;
  uptime: number | null;
  ifaces: { name: string; rxBytes: number; txBytes: number }[];
}

/** Largest counter value kept exactly (JS numbers, PostgreSQL bigint). */
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

/**
 * Accounts `readings` (newly stored ticks, any order) inside `tx`: locks the hosts' last readings,
 * adds each delta to its day, and stores the newest reading per interface. A host's first reading
 * of an interface only sets the baseline (what moved before it is unknown); a reading not newer
 * than the last one is ignored.
 */
export async function accountTraffic(tx: Transaction, readings: TrafficReading[]): Promise<void> {
  const usable = readings.filter((r) => r.ifaces.length > 0);
  if (usable.length === 0) return;
  const hostIds = [...new Set(usable.map((r) => r.hostId))].sort();
  const prevRows = rowsOf(
    await tx.execute(sql`
      select "host_id"::text as "host", "iface", (extract(epoch from "ts") * 1000)::float8 as "t",
        "rx_bytes"::float8 as "rx", "tx_bytes"::float8 as "tx", "uptime"
      from "traffic_counters"
      where "host_id" in (select (jsonb_array_elements_text(${JSON.stringify(hostIds)}::jsonb))::uuid)
      order by "host_id", "iface" for update`),
  );
  const last = new Map<string, { t: number; rx: number; tx: number; uptime: number | null }>();
  for (const r of prevRows) {
    last.set(`${String(r.host)}\u0000${String(r.iface)}`, {
      t: Number(r.t),
      rx: Number(r.rx),
      tx: Number(r.tx),
      uptime: r.uptime === null || r.uptime === undefined ? null : Number(r.uptime),
    });
  }
  const days = new Map<string, { host: string; iface: string; day: string; rx: number; tx: number }>();
  const changed = new Set<string>();
  const sorted = [...usable].sort((a, b) =>
    a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : a.ts - b.ts,
  );
  for (const reading of sorted) {
    for (const iface of reading.ifaces) {
      if (!(iface.rxBytes <= MAX_COUNTER && iface.txBytes <= MAX_COUNTER)) continue;
      const rx = Math.floor(iface.rxBytes);
      const txb = Math.floor(iface.txBytes);
      const key = `${reading.hostId}\u0000${iface.name}`;
      const prev = last.get(key);
      if (prev && reading.ts <= prev.t) continue;
      if (prev) {
        const seconds = (reading.ts - prev.t) / 1000;
        // A reboot moves the boot time (tick time - uptime) later; 30 s of slack absorbs the stored
        // uptime's float4 rounding and clock steps.
        const rebooted =
          prev.uptime !== null && reading.uptime !== null && reading.uptime + 30 < prev.uptime + seconds;
        const dRx = counterDelta(prev.rx, rx, seconds, rebooted);
        const dTx = counterDelta(prev.tx, txb, seconds, rebooted);
        if (dRx > 0 || dTx > 0) {
          const day = trafficDay(reading.ts);
          const dayKey = `${key}\u0000${day}`;
          const d = days.get(dayKey) ?? { host: reading.hostId, iface: iface.name, day, rx: 0, tx: 0 };
          d.rx += dRx;
          d.tx += dTx;
          days.set(dayKey, d);
        }
      }
      last.set(key, { t: reading.ts, rx, tx: txb, uptime: reading.uptime });
      changed.add(key);
    }
  }
  if (days.size > 0) {
    await tx.execute(sql`
      insert into "traffic_daily" ("host_id", "iface", "day", "rx_bytes", "tx_bytes")
      select "host", "iface", "day", "rx", "tx"
      from jsonb_to_recordset(${JSON.stringify([...days.values()])}::jsonb)
        as v("host" uuid, "iface" text, "day" date, "rx" bigint, "tx" bigint)
      on conflict ("host_id", "iface", "day") do update
        set "rx_bytes" = "traffic_daily"."rx_bytes" + excluded."rx_bytes",
            "tx_bytes" = "traffic_daily"."tx_bytes" + excluded."tx_bytes"`);
  }
  if (changed.size > 0) {
    const rows = [...changed].map((key) => {
      const [host, iface] = key.split('\u0000') as [string, string];
      const r = last.get(key)!;
      return { host, iface, ts: new Date(r.t).toISOString(), rx: r.rx, tx: r.tx, uptime: r.uptime };
    });
    await tx.execute(sql`
      insert into "traffic_counters" ("host_id", "iface", "ts", "rx_bytes", "tx_bytes", "uptime")
      select "host", "iface", "ts", "rx", "tx", "uptime"
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        as v("host" uuid, "iface" text, "ts" timestamptz, "rx" bigint, "tx" bigint, "uptime" real)
      on conflict ("host_id", "iface") do update
        set "ts" = excluded."ts", "rx_bytes" = excluded."rx_bytes", "tx_bytes" = excluded."tx_bytes",
            "uptime" = excluded."uptime"`);
  }
}

/** A host's billing plan. */
export interface TrafficPlan {
  resetDay: number;
  quotaBytes: number | null;
}

/** Bytes per interface over some days. */
export interface TrafficTotals {
  iface: string;
  rxBytes: number;
  txBytes: number;
}

export interface TrafficRepository {
  /** The host's plan, or null when none was set. */
  plan(hostId: string): Promise<TrafficPlan | null>;
  /** Plans of many hosts (absent: none set). */
  plans(hostIds: readonly string[]): Promise<Map<string, TrafficPlan>>;
  setPlan(hostId: string, plan: TrafficPlan): Promise<void>;
  /** Bytes per interface of one host over the UTC days [fromDay, toDay). */
  totals(hostId: string, fromDay: string, toDay: string): Promise<TrafficTotals[]>;
  /** Bytes per host and interface over [fromDay, toDay) for many hosts (the /metrics exposition). */
  totalsMany(
    hostIds: readonly string[],
    fromDay: string,
    toDay: string,
  ): Promise<Map<string, TrafficTotals[]>>;
  /** Deletes days before `beforeDay`. Returns rows deleted. */
  prune(beforeDay: string): Promise<number>;
}

export function createTrafficRepository(db: Db): TrafficRepository {
  return {
    async plan(hostId) {
      const [row] = await db
        .select({ resetDay: trafficPlans.resetDay, quotaBytes: trafficPlans.quotaBytes })
        .from(trafficPlans)
        .where(eq(trafficPlans.hostId, hostId));
      return row ?? null;
    },
    async plans(hostIds) {
      const out = new Map<string, TrafficPlan>();
      if (hostIds.length === 0) return out;
      const rows = rowsOf(
        await db.execute(sql`
          select "host_id"::text as "host", "reset_day" as "resetDay", "quota_bytes"::float8 as "quota"
          from "traffic_plans"
          where "host_id" in (select (jsonb_array_elements_text(${JSON.stringify(hostIds)}::jsonb))::uuid)`),
      );
      for (const r of rows) {
        out.set(String(r.host), {
          resetDay: Number(r.resetDay),
          quotaBytes: r.quota === null || r.quota === undefined ? null : Number(r.quota),
        });
      }
      return out;
    },
    async setPlan(hostId, plan) {
      await db
        .insert(trafficPlans)
        .values({ hostId, resetDay: plan.resetDay, quotaBytes: plan.quotaBytes })
        .onConflictDoUpdate({
          target: trafficPlans.hostId,
          set: { resetDay: plan.resetDay, quotaBytes: plan.quotaBytes, updatedAt: new Date() },
        });
    },
    async totals(hostId, fromDay, toDay) {
      const rows = await db
        .select({
          iface: trafficDaily.iface,
          rxBytes: sql<string>`sum(${trafficDaily.rxBytes})::float8`,
          txBytes: sql<string>`sum(${trafficDaily.txBytes})::float8`,
        })
        .from(trafficDaily)
        .where(
          and(eq(trafficDaily.hostId, hostId), gte(trafficDaily.day, fromDay), lt(trafficDaily.day, toDay)),
        )
        .groupBy(trafficDaily.iface)
        .orderBy(trafficDaily.iface);
      return rows.map((r) => ({ iface: r.iface, rxBytes: Number(r.rxBytes), txBytes: Number(r.txBytes) }));
    },
    async totalsMany(hostIds, fromDay, toDay) {
      const out = new Map<string, TrafficTotals[]>();
      if (hostIds.length === 0) return out;
      const rows = rowsOf(
        await db.execute(sql`
          select "host_id"::text as "host", "iface", sum("rx_bytes")::float8 as "rx", sum("tx_bytes")::float8 as "tx"
          from "traffic_daily"
          where "host_id" in (select (jsonb_array_elements_text(${JSON.stringify(hostIds)}::jsonb))::uuid)
            and "day" >= ${fromDay}::date and "day" < ${toDay}::date
          group by 1, 2 order by 1, 2`),
      );
      for (const r of rows) {
        const list = out.get(String(r.host)) ?? [];
        list.push({ iface: String(r.iface), rxBytes: Number(r.rx), txBytes: Number(r.tx) });
        out.set(String(r.host), list);
      }
      return out;
    },
    async prune(beforeDay) {
      const result = await db.execute(sql`delete from "traffic_daily" where "day" < ${beforeDay}::date`);
      const r = result as { affectedRows?: number; count?: number; rowCount?: number };
      return r.affectedRows ?? r.count ?? r.rowCount ?? 0;
    },
  };
}

/** Rows of an execute() result on either driver (postgres.js: the array; PGlite: `.rows`). */
function rowsOf(result: unknown): Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[];
  return ((result as { rows?: Record<string, unknown>[] }).rows ?? []) as Record<string, unknown>[];
}
