// Traffic accounting as a rule (issue 9 item 4): each host has a billing cycle that resets on a day
// of the month (UTC, as most VPS providers bill; the 1st when none was set) and optionally a quota
// of bytes per cycle; "transfer this cycle" is the sum of the UTC days inside the cycle, per
// interface (loopback never counted). The bytes themselves are accounted at ingest
// (repositories/traffic.ts). `usage` needs no actor: alert rules and the /metrics exposition read it.
import { KeelError } from '@keel/shared';
import type { HostRepository } from '../repositories/hosts.ts';
import type { TrafficPlan, TrafficRepository, TrafficTotals } from '../repositories/traffic.ts';
import { requireHostAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';

/** The plan of a host that has none set: the cycle resets on the 1st, no quota. */
export const defaultTrafficPlan: TrafficPlan = { resetDay: 1, quotaBytes: null };

/** Largest quota accepted (bytes; exact in a JS number and a PostgreSQL bigint). */
export const MAX_QUOTA_BYTES = Number.MAX_SAFE_INTEGER;

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** Midnight UTC of `resetDay` in the given month, on the month's last day when it is shorter. */
function resetIn(year: number, month: number, resetDay: number): number {
  const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return Date.UTC(year, month, Math.min(resetDay, last));
}

/**
 * The billing cycle holding `at`: [start, end) from midnight UTC of the reset day to the next one.
 *
 * @example billingCycle(15, Date.UTC(2030, 0, 10)) // 2029-12-15 .. 2030-01-15
 */
export function billingCycle(
  resetDay: number,
  at: number,
): { start: number; end: number; startDay: string; endDay: string } {
  const d = new Date(at);
  let y = d.getUTCFullYear();
  let m = d.getUTCMonth();
  if (resetIn(y, m, resetDay) > at) {
    m -= 1;
    if (m < 0) {
      m = 11;
      y -= 1;
    }
  }
  const start = resetIn(y, m, resetDay);
  const end = m === 11 ? resetIn(y + 1, 0, resetDay) : resetIn(y, m + 1, resetDay);
  return { start, end, startDay: day(start), endDay: day(end) };
}

/** A host's transfer in one billing cycle. */
export interface TrafficUsage {
  hostId: string;
  resetDay: number;
  quotaBytes: number | null;
  /** Cycle bounds, epoch ms ([start, end)). */
  cycle: { start: number; end: number };
  interfaces: TrafficTotals[];
  rxBytes: number;
  txBytes: number;
  /** rx + tx: what providers bill. */
  totalBytes: number;
  /** totalBytes / quotaBytes x 100, or null without a quota. */
  quotaUsedPct: number | null;
}

export interface TrafficServiceDeps {
  hosts: Pick<HostRepository, 'get'>;
  traffic: TrafficRepository;
  audit: Pick<AuditService, 'record'>;
  now?: () => number;
}

function usageOf(hostId: string, plan: TrafficPlan, at: number, interfaces: TrafficTotals[]): TrafficUsage {
  const cycle = billingCycle(plan.resetDay, at);
  const rxBytes = interfaces.reduce((s, i) => s + i.rxBytes, 0);
  const txBytes = interfaces.reduce((s, i) => s + i.txBytes, 0);
  const totalBytes = rxBytes + txBytes;
  return {
    hostId,
    resetDay: plan.resetDay,
    quotaBytes: plan.quotaBytes,
    cycle: { start: cycle.start, end: cycle.end },
    interfaces,
    rxBytes,
    txBytes,
    totalBytes,
    quotaUsedPct: plan.quotaBytes ? (totalBytes / plan.quotaBytes) * 100 : null,
  };
}

export function createTrafficService(deps: TrafficServiceDeps) {
  const { traffic, audit } = deps;
  const now = deps.now ?? Date.now;

  /** A host's transfer in the cycle holding `at` (default now), without an access check. */
  async function usage(hostId: string, at = now()): Promise<TrafficUsage> {
    const plan = (await traffic.plan(hostId)) ?? defaultTrafficPlan;
    const cycle = billingCycle(plan.resetDay, at);
    return usageOf(hostId, plan, at, await traffic.totals(hostId, cycle.startDay, cycle.endDay));
  }

  /** Many hosts' transfer in their current cycles (one query per distinct reset day). */
  async function usageMany(hostIds: readonly string[], at = now()): Promise<Map<string, TrafficUsage>> {
    const plans = await traffic.plans(hostIds);
    const byDay = new Map<number, string[]>();
    for (const id of hostIds) {
      const d = (plans.get(id) ?? defaultTrafficPlan).resetDay;
      byDay.set(d, [...(byDay.get(d) ?? []), id]);
    }
    const out = new Map<string, TrafficUsage>();
    for (const [resetDay, ids] of byDay) {
      const cycle = billingCycle(resetDay, at);
      const totals = await traffic.totalsMany(ids, cycle.startDay, cycle.endDay);
      for (const id of ids)
        out.set(id, usageOf(id, plans.get(id) ?? defaultTrafficPlan, at, totals.get(id) ?? []));
    }
    return out;
  }

  async function requireHost(actor: Actor, hostId: string, permission: 'host.view' | 'host.manage') {
    requireHostAccess(actor, permission, [hostId]);
    const host = await deps.hosts.get(hostId);
    if (!host) throw new KeelError('host.not_found');
    return host;
  }

  return {
    usage,
    usageMany,

    /** The host's transfer this cycle (or the cycle holding `at`), for the API. */
    async view(actor: Actor, hostId: string, at?: number): Promise<TrafficUsage> {
      await requireHost(actor, hostId, 'host.view');
      return usage(hostId, at ?? now());
    },

    /** Sets the host's reset day (1-31) and quota (bytes, or null); audited. */
    async setPlan(
      actor: Actor,
      hostId: string,
      plan: TrafficPlan,
      ip: string | null = null,
    ): Promise<TrafficUsage> {
      await requireHost(actor, hostId, 'host.manage');
      if (!Number.isInteger(plan.resetDay) || plan.resetDay < 1 || plan.resetDay > 31) {
        throw new KeelError('request.invalid', 'resetDay must be a whole number from 1 to 31.');
      }
      if (
        plan.quotaBytes !== null &&
        (!Number.isInteger(plan.quotaBytes) || plan.quotaBytes < 1 || plan.quotaBytes > MAX_QUOTA_BYTES)
      ) {
        throw new KeelError('request.invalid', 'quotaBytes must be a whole number of bytes >= 1, or null.');
      }
      await traffic.setPlan(hostId, plan);
      await audit.record(actor.id, 'host.traffic_plan', `host:${hostId}`, { ...plan }, ip);
      return usage(hostId);
    },
  };
}

export type TrafficService = ReturnType<typeof createTrafficService>;
