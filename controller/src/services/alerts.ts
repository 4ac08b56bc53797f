// Alerting as a rule: alert rules (monitoring.manage), silences and maintenance windows
// (monitoring.silence), and the evaluation loop that walks every rule against stored data on an
// interval and moves each (rule, subject) through pending -> firing -> resolved:
//
//   - the condition holds            : no alert -> pending (startedAt); pending for `forSeconds` -> firing
//   - a pending condition stops      : the pending alert is dropped (it never fired; not history)
//   - a firing alert's condition is clear (below the separate resolve threshold when the rule has
//     one) for `resolveForSeconds`   : resolved. Between the two thresholds it stays firing, and a
//     clear spell that is interrupted starts again: nothing flaps.
//   - no data (a host stopped sending): the state is kept; host offline is its own rule kind.
//
// Firing and resolving notify the rule's channels unless a silence or a maintenance window covers
// the alert when it fires (the alert is then marked silenced and stays quiet until resolved).
import type { Logger } from 'pino';
import { z } from 'zod';
import { KeelError, metricSeriesNames, type MetricSeriesName } from '@keel/shared';
import type { FleetBus } from '../bus/index.ts';
import type { AlertScope } from '../db/schema/alerts.ts';
import type {
  AlertRow,
  AlertRuleRow,
  AlertsRepository,
  MaintenanceRow,
  SilenceRow,
} from '../repositories/alerts.ts';
import type { ChecksRepository } from '../repositories/checks.ts';
import type { GroupsRepository } from '../repositories/groups.ts';
import type { AuditService } from './audit.ts';
import type { TrafficUsage } from './traffic.ts';
import type { NotificationPayload, NotificationsService } from './notifications.ts';
import { canSeeHost, requireAccess, type Actor } from './access.ts';

const DAY = 86_400_000;

const comparator = z.enum(['>', '>=', '<', '<=']);
type Comparator = z.infer<typeof comparator>;
const compare = (v: number, op: Comparator, t: number) =>
  op === '>' ? v > t : op === '>=' ? v >= t : op === '<' ? v < t : v <= t;

/** The parameters of each rule kind. */
export const ruleParamSchemas = {
  /** A metric series (average over `windowSeconds` of raw ticks) against a threshold. */
  metric: z.strictObject({
    series: z.enum(metricSeriesNames as [MetricSeriesName, ...MetricSeriesName[]]),
    comparator,
    threshold: z.number().finite(),
    /** Hysteresis: a firing alert resolves only once the value is past this (e.g. fire > 90, resolve < 80). */
    resolveThreshold: z.number().finite().optional(),
    windowSeconds: z.number().int().min(5).max(3_600).default(60),
  }),
  /** The host has no live session. */
  host_offline: z.strictObject({}),
  /** A supervised process exited (and was not stopped by hand), or gave up restarting. */
  process_down: z.strictObject({
    process: z.string().max(63).optional(),
    mode: z.enum(['down', 'crash-loop']).default('down'),
  }),
  /** A check's last result on a host is down. */
  check_failing: z.strictObject({ checkId: z.uuid().optional() }),
  /** An HTTPS check's certificate expires within `days`. */
  cert_expiry: z.strictObject({ checkId: z.uuid().optional(), days: z.number().min(0).max(365).default(14) }),
  /**
   * The host's transfer this billing cycle (received + sent) reached `percent` of its quota; hosts
   * without a quota are not watched. Resolves below `resolvePercent` (default: `percent`), which a
   * new cycle brings.
   */
  transfer_quota: z.strictObject({
    percent: z.number().min(1).max(1_000).default(80),
    resolvePercent: z.number().min(0).max(1_000).optional(),
  }),
  /** The fullest file system, extrapolated linearly from the last `lookbackHours`, is full within `hours`. */
  disk_forecast: z.strictObject({
    hours: z
      .number()
      .min(1)
      .max(24 * 90),
    lookbackHours: z
      .number()
      .min(1)
      .max(24 * 7)
      .default(6),
    /** Fewer ticks than this in the lookback: no forecast. */
    minPoints: z.number().int().min(3).max(100_000).default(10),
  }),
} as const;
export type RuleKind = keyof typeof ruleParamSchemas;
export const ruleKinds = Object.keys(ruleParamSchemas) as RuleKind[];

const scopeSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('all') }),
  z.strictObject({ type: z.literal('host'), id: z.uuid() }),
  z.strictObject({ type: z.literal('group'), id: z.uuid() }),
]);

export const ruleBodySchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  kind: z.enum(ruleKinds as [RuleKind, ...RuleKind[]]),
  params: z.record(z.string(), z.unknown()).default({}),
  scope: scopeSchema.default({ type: 'all' }),
  severity: z.enum(['info', 'warning', 'critical']).default('warning'),
  forSeconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(60),
  resolveForSeconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(60),
  channelIds: z.array(z.uuid()).max(20).default([]),
  enabled: z.boolean().default(true),
});

export const silenceBodySchema = z.strictObject({
  matchers: z
    .strictObject({
      ruleId: z.uuid().optional(),
      hostId: z.uuid().optional(),
      kind: z.enum(ruleKinds as [RuleKind, ...RuleKind[]]).optional(),
    })
    .default({}),
  startsAt: z.iso.datetime({ offset: true }).optional(),
  endsAt: z.iso.datetime({ offset: true }),
  comment: z.string().max(500).default(''),
});

export const maintenanceBodySchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  scope: scopeSchema,
  startsAt: z.iso.datetime({ offset: true }),
  durationMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60),
  recurrence: z.enum(['daily', 'weekly']).nullable().default(null),
});

function invalid(error: z.ZodError): KeelError {
  const first = error.issues[0]!;
  return new KeelError('request.invalid', `${first.path.join('.') || 'body'}: ${first.message}`);
}

/** True when a maintenance window covers `at` (a recurring one: any repetition since its start). */
export function maintenanceActive(
  w: Pick<MaintenanceRow, 'startsAt' | 'durationMinutes' | 'recurrence'>,
  at: number,
): boolean {
  const start = w.startsAt.getTime();
  if (at < start) return false;
  const length = w.durationMinutes * 60_000;
  const period = w.recurrence === 'daily' ? DAY : w.recurrence === 'weekly' ? 7 * DAY : null;
  const offset = period === null ? at - start : (at - start) % period;
  return offset < length;
}

/** What one evaluation saw for one subject of a rule. */
interface Observation {
  subject: string;
  hostId: string | null;
  checkId: string | null;
  /** The condition holds (fire threshold). */
  active: boolean;
  /** The condition is clear (resolve threshold); neither with no data. */
  clear: boolean;
  value: number | null;
  summary: string;
}

/** Process states the supervisor reported on the host event stream, per host and process. */
export class ProcessStates {
  #states = new Map<string, Map<string, 'up' | 'down' | 'crash-loop' | 'stopped'>>();
  /** Reads process events out of stored `events` records. */
  observe(hostId: string, payload: Buffer): void {
    let event: { kind?: unknown; process?: unknown };
    try {
      event = JSON.parse(payload.toString('utf8')) as typeof event;
    } catch {
      return;
    }
    if (typeof event.kind !== 'string' || typeof event.process !== 'string') return;
    const states: Record<string, 'up' | 'down' | 'crash-loop' | 'stopped' | undefined> = {
      'process.started': 'up',
      'process.adopted': 'up',
      'process.restarting': 'down',
      'process.exited': 'down',
      'process.crash-loop': 'crash-loop',
      'process.stopped': 'stopped',
      'process.removed': 'stopped',
    };
    const state = states[event.kind];
    if (!state) return;
    let host = this.#states.get(hostId);
    if (!host) this.#states.set(hostId, (host = new Map()));
    if (state === 'stopped' && event.kind === 'process.removed') host.delete(event.process);
    else host.set(event.process, state);
  }
  of(hostId: string): ReadonlyMap<string, 'up' | 'down' | 'crash-loop' | 'stopped'> {
    return this.#states.get(hostId) ?? new Map();
  }
}

export interface AlertsServiceDeps {
  alerts: AlertsRepository;
  checks: ChecksRepository;
  groups: Pick<GroupsRepository, 'hostsOf'>;
  notifications: NotificationsService;
  audit: AuditService;
  bus: FleetBus;
  log: Logger;
  now?: () => number;
  /** The console's URL, linked from notifications. */
  publicUrl?: string;
  /** Resolved alerts kept, days (default 90). */
  historyDays?: number;
  /** Hosts' transfer in their current billing cycles (the transfer_quota rule). */
  trafficUsage?: (hostIds: readonly string[], at: number) => Promise<Map<string, TrafficUsage>>;
}

export function createAlertsService(deps: AlertsServiceDeps) {
  const { alerts: repo, log, audit } = deps;
  const now = deps.now ?? Date.now;
  const processes = new ProcessStates();
  let timer: NodeJS.Timeout | null = null;
  let unsubscribe: (() => void) | null = null;
  let running: Promise<void> | null = null;
  let lastPrune = 0;

  async function hostsIn(scope: AlertScope, all: readonly string[]): Promise<string[]> {
    if (scope.type === 'all') return [...all];
    if (scope.type === 'host') return all.includes(scope.id) ? [scope.id] : [];
    const members = new Set(await deps.groups.hostsOf([scope.id]));
    return all.filter((h) => members.has(h));
  }

  /** What each rule sees now. */
  async function observe(
    rule: AlertRuleRow,
    at: number,
    hosts: { id: string; name: string; online: boolean; lastSeenAt: Date | null }[],
    latestChecks: Awaited<ReturnType<ChecksRepository['latest']>>,
    checkRows: Awaited<ReturnType<ChecksRepository['list']>>,
  ): Promise<Observation[]> {
    const scoped = await hostsIn(
      rule.scope,
      hosts.map((h) => h.id),
    );
    const nameOf = (id: string) => hosts.find((h) => h.id === id)?.name ?? id;
    const kind = rule.kind as RuleKind;
    const parsed = ruleParamSchemas[kind]?.safeParse(rule.params);
    if (!parsed?.success) return [];
    const out: Observation[] = [];
    switch (kind) {
      case 'metric': {
        const p = parsed.data as z.output<(typeof ruleParamSchemas)['metric']>;
        const values = await repo.metricAverages(
          p.series,
          scoped,
          new Date(at - p.windowSeconds * 1000),
          new Date(at),
        );
        for (const hostId of scoped) {
          const v = values.get(hostId);
          const resolveAt = p.resolveThreshold ?? p.threshold;
          const fmt = v === undefined ? 'no data' : String(Math.round(v * 100) / 100);
          out.push({
            subject: `host:${hostId}`,
            hostId,
            checkId: null,
            active: v !== undefined && compare(v, p.comparator, p.threshold),
            clear: v !== undefined && !compare(v, p.comparator, resolveAt),
            value: v ?? null,
            summary: `${p.series} is ${fmt} (fires ${p.comparator} ${p.threshold}${p.resolveThreshold !== undefined ? `, resolves past ${p.resolveThreshold}` : ''})`,
          });
        }
        break;
      }
      case 'host_offline': {
        for (const hostId of scoped) {
          const h = hosts.find((x) => x.id === hostId)!;
          out.push({
            subject: `host:${hostId}`,
            hostId,
            checkId: null,
            active: !h.online,
            clear: h.online,
            value: null,
            summary: h.online
              ? 'online'
              : `offline${h.lastSeenAt ? ` since ${h.lastSeenAt.toISOString()}` : ''}`,
          });
        }
        break;
      }
      case 'process_down': {
        const p = parsed.data as z.output<(typeof ruleParamSchemas)['process_down']>;
        for (const hostId of scoped) {
          for (const [name, state] of processes.of(hostId)) {
            if (p.process !== undefined && p.process !== name) continue;
            const down =
              p.mode === 'crash-loop' ? state === 'crash-loop' : state === 'down' || state === 'crash-loop';
            out.push({
              subject: `process:${hostId}:${name}`,
              hostId,
              checkId: null,
              active: down,
              clear: !down,
              value: null,
              summary: `process ${name} is ${state === 'up' ? 'running' : state}`,
            });
          }
        }
        break;
      }
      case 'check_failing':
      case 'cert_expiry': {
        const p = parsed.data as { checkId?: string; days?: number };
        for (const result of latestChecks) {
          if (p.checkId !== undefined && result.checkId !== p.checkId) continue;
          const check = checkRows.find((c) => c.id === result.checkId);
          if (
            !check ||
            !check.enabled ||
            !check.hostIds.includes(result.hostId) ||
            !scoped.includes(result.hostId)
          )
            continue;
          const base = {
            subject: `check:${result.checkId}:${result.hostId}`,
            hostId: result.hostId,
            checkId: result.checkId,
          };
          if (kind === 'check_failing') {
            out.push({
              ...base,
              active: !result.ok,
              clear: result.ok,
              value: result.latencyMs,
              summary: result.ok
                ? `${check.name} is up from ${nameOf(result.hostId)}`
                : `${check.name} is down from ${nameOf(result.hostId)}: ${result.error ?? 'failed'}`,
            });
          } else {
            if (!result.certExpiresAt) continue;
            const daysLeft = (result.certExpiresAt.getTime() - at) / DAY;
            const soon = daysLeft < (p.days ?? 14);
            out.push({
              ...base,
              active: soon,
              clear: !soon,
              value: Math.round(daysLeft * 10) / 10,
              summary: `the certificate of ${check.name} expires ${result.certExpiresAt.toISOString()} (${Math.round(daysLeft * 10) / 10} days)`,
            });
          }
        }
        break;
      }
      case 'transfer_quota': {
        const p = parsed.data as z.output<(typeof ruleParamSchemas)['transfer_quota']>;
        if (!deps.trafficUsage || scoped.length === 0) break;
        const usage = await deps.trafficUsage(scoped, at);
        const gb = (b: number) => `${(b / 1e9).toFixed(b < 1e10 ? 2 : 1)} GB`;
        for (const hostId of scoped) {
          const u = usage.get(hostId);
          if (!u || u.quotaUsedPct === null || u.quotaBytes === null) continue;
          const pct = u.quotaUsedPct;
          out.push({
            subject: `host:${hostId}`,
            hostId,
            checkId: null,
            active: pct >= p.percent,
            clear: pct < (p.resolvePercent ?? p.percent),
            value: Math.round(pct * 10) / 10,
            summary: `${gb(u.totalBytes)} of the ${gb(u.quotaBytes)} transfer quota used this cycle (${Math.round(pct * 10) / 10} %, resets ${new Date(u.cycle.end).toISOString().slice(0, 10)})`,
          });
        }
        break;
      }
      case 'disk_forecast': {
        const p = parsed.data as z.output<(typeof ruleParamSchemas)['disk_forecast']>;
        const trends = await repo.diskTrend(scoped, new Date(at - p.lookbackHours * 3_600_000), new Date(at));
        for (const hostId of scoped) {
          const t = trends.get(hostId);
          if (!t || t.points < p.minPoints) continue;
          const hoursLeft = t.slope > 0 ? Math.max(0, (100 - t.valueAtEnd) / t.slope / 3600) : Infinity;
          const soon = hoursLeft <= p.hours;
          out.push({
            subject: `host:${hostId}`,
            hostId,
            checkId: null,
            active: soon,
            clear: !soon,
            value: Number.isFinite(hoursLeft) ? Math.round(hoursLeft * 10) / 10 : null,
            summary: Number.isFinite(hoursLeft)
              ? `the fullest file system (${Math.round(t.valueAtEnd)} % used) is full in about ${Math.round(hoursLeft * 10) / 10} h at the last ${p.lookbackHours} h's rate`
              : `disk use is not growing (${Math.round(t.valueAtEnd)} % used)`,
          });
        }
        break;
      }
    }
    return out;
  }

  function silencedBy(
    rule: AlertRuleRow,
    hostId: string | null,
    at: number,
    silences: SilenceRow[],
    windows: MaintenanceRow[],
    groupsOf: Map<string, Set<string>>,
  ): boolean {
    for (const s of silences) {
      if (at < s.startsAt.getTime() || at >= s.endsAt.getTime()) continue;
      const m = s.matchers;
      if (m.ruleId && m.ruleId !== rule.id) continue;
      if (m.hostId && m.hostId !== hostId) continue;
      if (m.kind && m.kind !== rule.kind) continue;
      return true;
    }
    for (const w of windows) {
      if (!maintenanceActive(w, at)) continue;
      if (w.scope.type === 'all') return true;
      if (hostId === null) continue;
      if (w.scope.type === 'host' && w.scope.id === hostId) return true;
      if (w.scope.type === 'group' && groupsOf.get(w.scope.id)?.has(hostId)) return true;
    }
    return false;
  }

  function payloadOf(
    event: 'firing' | 'resolved',
    rule: AlertRuleRow,
    alert: AlertRow,
    hostName: string | null,
  ): NotificationPayload {
    return {
      version: 1,
      event,
      alert: {
        id: alert.id,
        rule: { id: rule.id, name: rule.name, kind: rule.kind, severity: rule.severity },
        subject: alert.subject,
        hostId: alert.hostId,
        hostName,
        checkId: alert.checkId,
        state: alert.state,
        value: alert.value,
        summary: alert.summary,
        startedAt: alert.startedAt.toISOString(),
        firedAt: alert.firedAt?.toISOString() ?? null,
        resolvedAt: alert.resolvedAt?.toISOString() ?? null,
      },
      url: deps.publicUrl ? `${deps.publicUrl.replace(/\/+$/, '')}/alerts` : null,
    };
  }

  /** One pass over every rule at time `at` (default now). */
  async function evaluate(at = now()): Promise<void> {
    const [rules, active, hosts, silences, windows, checkRows] = await Promise.all([
      repo.listRules(),
      repo.active(),
      repo.hostsPresence(),
      repo.listSilences(),
      repo.listMaintenance(),
      deps.checks.list(),
    ]);
    const latestChecks = rules.some(
      (r) => r.enabled && (r.kind === 'check_failing' || r.kind === 'cert_expiry'),
    )
      ? await deps.checks.latest()
      : [];
    const groupsOf = new Map<string, Set<string>>();
    for (const w of windows) {
      if (w.scope.type === 'group' && !groupsOf.has(w.scope.id) && maintenanceActive(w, at)) {
        groupsOf.set(w.scope.id, new Set(await deps.groups.hostsOf([w.scope.id])));
      }
    }
    const nameOf = (id: string | null) => (id ? (hosts.find((h) => h.id === id)?.name ?? null) : null);
    const when = new Date(at);

    const notify = async (event: 'firing' | 'resolved', rule: AlertRuleRow, alert: AlertRow) => {
      if (alert.silenced || rule.channelIds.length === 0) return;
      await deps.notifications.enqueue(
        rule.channelIds,
        alert.id,
        payloadOf(event, rule, alert, nameOf(alert.hostId)),
      );
    };
    const resolve = async (rule: AlertRuleRow | undefined, alert: AlertRow, summary?: string) => {
      if (alert.state === 'pending') return repo.deleteAlert(alert.id);
      const done = await repo.updateAlert(alert.id, {
        state: 'resolved',
        resolvedAt: when,
        clearSince: null,
        ...(summary ? { summary } : {}),
      });
      if (done && rule) await notify('resolved', rule, done);
    };

    for (const rule of rules) {
      const mine = active.filter((a) => a.ruleId === rule.id);
      if (!rule.enabled) {
        for (const a of mine) await resolve(rule, a, 'the rule was disabled');
        continue;
      }
      let seen: Observation[];
      try {
        seen = await observe(rule, at, hosts, latestChecks, checkRows);
      } catch (err) {
        log.error({ err, rule: rule.id }, 'alert rule evaluation failed');
        continue;
      }
      const bySubject = new Map(seen.map((o) => [o.subject, o]));
      for (const o of seen) {
        const current = mine.find((a) => a.subject === o.subject);
        if (!current) {
          if (!o.active) continue;
          const fireNow = rule.forSeconds === 0;
          const silenced = fireNow && silencedBy(rule, o.hostId, at, silences, windows, groupsOf);
          const made = await repo.insertAlert({
            ruleId: rule.id,
            subject: o.subject,
            hostId: o.hostId,
            checkId: o.checkId,
            state: fireNow ? 'firing' : 'pending',
            value: o.value,
            summary: o.summary,
            startedAt: when,
            firedAt: fireNow ? when : null,
            silenced,
          });
          if (made && fireNow) await notify('firing', rule, made);
          continue;
        }
        if (current.state === 'pending') {
          if (!o.active) {
            await repo.deleteAlert(current.id);
          } else if (at - current.startedAt.getTime() >= rule.forSeconds * 1000) {
            const silenced = silencedBy(rule, o.hostId, at, silences, windows, groupsOf);
            const fired = await repo.updateAlert(current.id, {
              state: 'firing',
              firedAt: when,
              value: o.value,
              summary: o.summary,
              silenced,
            });
            if (fired) await notify('firing', rule, fired);
          } else {
            await repo.updateAlert(current.id, { value: o.value, summary: o.summary });
          }
          continue;
        }
        // firing
        if (o.clear) {
          const since = current.clearSince?.getTime() ?? at;
          if (at - since >= rule.resolveForSeconds * 1000) {
            await resolve(rule, { ...current, value: o.value }, o.summary);
          } else if (!current.clearSince) {
            await repo.updateAlert(current.id, { clearSince: when, value: o.value, summary: o.summary });
          }
        } else if (o.active || current.clearSince) {
          // Not clear (still past the fire threshold, or between the two): the clear spell restarts.
          await repo.updateAlert(current.id, { clearSince: null, value: o.value, summary: o.summary });
        }
      }
      // Subjects no longer observed: out of scope, host or check deleted, process removed.
      for (const a of mine) {
        if (bySubject.has(a.subject)) continue;
        const stillThere =
          (a.hostId === null || hosts.some((h) => h.id === a.hostId)) &&
          (a.checkId === null || checkRows.some((c) => c.id === a.checkId)) &&
          (a.hostId === null || (await hostsIn(rule.scope, [a.hostId])).length > 0) &&
          // A metric or forecast subject without data keeps its state (no data is not recovery).
          (rule.kind === 'metric' || rule.kind === 'disk_forecast');
        if (!stillThere) await resolve(rule, a, 'no longer watched by this rule');
      }
    }
    if (at - lastPrune > 3_600_000) {
      lastPrune = at;
      await repo.pruneHistory(new Date(at - (deps.historyDays ?? 90) * DAY));
      await deps.notifications.prune(new Date(at - (deps.historyDays ?? 90) * DAY));
    }
  }

  const alertView = (a: AlertRow, rule: AlertRuleRow | undefined) => ({
    id: a.id,
    ruleId: a.ruleId,
    ruleName: rule?.name ?? '',
    kind: rule?.kind ?? '',
    severity: rule?.severity ?? 'warning',
    subject: a.subject,
    hostId: a.hostId,
    checkId: a.checkId,
    state: a.state,
    value: a.value,
    summary: a.summary,
    silenced: a.silenced,
    startedAt: a.startedAt.toISOString(),
    firedAt: a.firedAt?.toISOString() ?? null,
    resolvedAt: a.resolvedAt?.toISOString() ?? null,
    acknowledgedAt: a.acknowledgedAt?.toISOString() ?? null,
    acknowledgedBy: a.acknowledgedBy,
  });
  const ruleView = (r: AlertRuleRow) => ({
    id: r.id,
    name: r.name,
    kind: r.kind,
    params: r.params,
    scope: r.scope,
    severity: r.severity,
    forSeconds: r.forSeconds,
    resolveForSeconds: r.resolveForSeconds,
    channelIds: r.channelIds,
    enabled: r.enabled,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  });

  function parseRule(body: unknown) {
    const parsed = ruleBodySchema.safeParse(body);
    if (!parsed.success) throw invalid(parsed.error);
    const params = ruleParamSchemas[parsed.data.kind].safeParse(parsed.data.params);
    if (!params.success) {
      const first = params.error.issues[0]!;
      throw new KeelError('request.invalid', `params.${first.path.join('.')}: ${first.message}`);
    }
    return { ...parsed.data, params: params.data as Record<string, unknown> };
  }

  return {
    evaluate,
    processes,

    /** Evaluates and delivers every `everyMs` (default 15 s) until stop(); feeds process states from the bus. */
    start(everyMs = 15_000): void {
      unsubscribe = deps.bus.subscribe((event) => {
        if (event.type === 'stream.stored' && event.stream === 'events') {
          for (const r of event.records) processes.observe(event.hostId, r.payload);
        }
      });
      const run = () => {
        running ??= evaluate()
          .then(() => deps.notifications.deliverDue())
          .then(() => undefined)
          .catch((err: unknown) => log.error({ err }, 'alert evaluation failed'))
          .finally(() => (running = null));
      };
      timer = setInterval(run, everyMs);
      timer.unref();
    },
    async stop(): Promise<void> {
      unsubscribe?.();
      unsubscribe = null;
      if (timer) clearInterval(timer);
      timer = null;
      await running;
    },

    async listRules(actor: Actor) {
      requireAccess(actor, 'monitoring.view');
      return (await repo.listRules()).map(ruleView);
    },
    async createRule(actor: Actor, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.manage');
      const input = parseRule(body);
      const row = await repo.createRule(input);
      await audit.record(
        actor.id,
        'alert.rule.create',
        `alert-rule:${row.id}`,
        { name: row.name, kind: row.kind },
        ip,
      );
      return ruleView(row);
    },
    async updateRule(actor: Actor, id: string, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.manage');
      const current = await repo.getRule(id);
      if (!current) throw new KeelError('alert.rule_not_found');
      const { id: _i, createdAt: _c, updatedAt: _u, ...rest } = current;
      const input = parseRule({ ...rest, ...(body as object) });
      const row = await repo.updateRule(id, input);
      if (!row) throw new KeelError('alert.rule_not_found');
      await audit.record(
        actor.id,
        'alert.rule.update',
        `alert-rule:${id}`,
        { name: row.name, changed: Object.keys(body as object) },
        ip,
      );
      return ruleView(row);
    },
    async deleteRule(actor: Actor, id: string, ip: string | null = null) {
      requireAccess(actor, 'monitoring.manage');
      const row = await repo.deleteRule(id);
      if (!row) throw new KeelError('alert.rule_not_found');
      await audit.record(actor.id, 'alert.rule.delete', `alert-rule:${id}`, { name: row.name }, ip);
    },

    /** Active alerts (pending and firing) or history (every alert that fired), of hosts the actor sees. */
    async list(actor: Actor, q: { state: 'active' | 'history'; limit?: number; before?: number }) {
      requireAccess(actor, 'monitoring.view');
      const [rows, rules] = await Promise.all([
        repo.list({
          state: q.state,
          limit: Math.min(Math.max(q.limit ?? 200, 1), 1_000),
          before: q.before !== undefined ? new Date(q.before) : undefined,
        }),
        repo.listRules(),
      ]);
      return rows
        .filter((a) => a.hostId === null || canSeeHost(actor, a.hostId))
        .map((a) =>
          alertView(
            a,
            rules.find((r) => r.id === a.ruleId),
          ),
        );
    },

    /**
     * Acknowledges an active alert (someone is on it): shown in the console, audited; the first
     * acknowledgement stays. A resolved alert or one on a host the actor cannot see: not found.
     */
    async acknowledge(actor: Actor, id: string, ip: string | null = null) {
      requireAccess(actor, 'monitoring.silence');
      const current = await repo.get(id);
      if (
        !current ||
        current.state === 'resolved' ||
        (current.hostId !== null && !canSeeHost(actor, current.hostId))
      ) {
        throw new KeelError('alert.not_found');
      }
      const by = /^[0-9a-f-]{36}$/i.test(actor.id) ? actor.id : null;
      const row = await repo.acknowledge(id, by, new Date(now()));
      if (!row) throw new KeelError('alert.not_found');
      await audit.record(actor.id, 'alert.acknowledge', `alert:${id}`, { subject: row.subject }, ip);
      const rule = await repo.getRule(row.ruleId);
      return alertView(row, rule ?? undefined);
    },

    async listSilences(actor: Actor) {
      requireAccess(actor, 'monitoring.view');
      return (await repo.listSilences()).map((s) => ({
        id: s.id,
        matchers: s.matchers,
        startsAt: s.startsAt.toISOString(),
        endsAt: s.endsAt.toISOString(),
        comment: s.comment,
        createdBy: s.createdBy,
        createdAt: s.createdAt.toISOString(),
      }));
    },
    async createSilence(actor: Actor, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.silence');
      const parsed = silenceBodySchema.safeParse(body);
      if (!parsed.success) throw invalid(parsed.error);
      const startsAt = parsed.data.startsAt ? new Date(parsed.data.startsAt) : new Date(now());
      const endsAt = new Date(parsed.data.endsAt);
      if (!(endsAt > startsAt)) throw new KeelError('request.invalid', 'endsAt must be after startsAt.');
      const row = await repo.createSilence({
        matchers: parsed.data.matchers,
        startsAt,
        endsAt,
        comment: parsed.data.comment,
        createdBy: actor.id,
      });
      await audit.record(
        actor.id,
        'alert.silence.create',
        `silence:${row.id}`,
        { matchers: row.matchers, endsAt: row.endsAt.toISOString() },
        ip,
      );
      return (await this.listSilences(actor)).find((s) => s.id === row.id)!;
    },
    async deleteSilence(actor: Actor, id: string, ip: string | null = null) {
      requireAccess(actor, 'monitoring.silence');
      const row = await repo.deleteSilence(id);
      if (!row) throw new KeelError('alert.silence_not_found');
      await audit.record(actor.id, 'alert.silence.delete', `silence:${id}`, {}, ip);
    },

    async listMaintenance(actor: Actor) {
      requireAccess(actor, 'monitoring.view');
      const at = now();
      return (await repo.listMaintenance()).map((w) => ({
        id: w.id,
        name: w.name,
        scope: w.scope,
        startsAt: w.startsAt.toISOString(),
        durationMinutes: w.durationMinutes,
        recurrence: w.recurrence,
        activeNow: maintenanceActive(w, at),
        createdAt: w.createdAt.toISOString(),
      }));
    },
    async createMaintenance(actor: Actor, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.silence');
      const parsed = maintenanceBodySchema.safeParse(body);
      if (!parsed.success) throw invalid(parsed.error);
      const row = await repo.createMaintenance({ ...parsed.data, startsAt: new Date(parsed.data.startsAt) });
      await audit.record(
        actor.id,
        'alert.maintenance.create',
        `maintenance:${row.id}`,
        { name: row.name, scope: row.scope },
        ip,
      );
      return (await this.listMaintenance(actor)).find((w) => w.id === row.id)!;
    },
    async deleteMaintenance(actor: Actor, id: string, ip: string | null = null) {
      requireAccess(actor, 'monitoring.silence');
      const row = await repo.deleteMaintenance(id);
      if (!row) throw new KeelError('alert.maintenance_not_found');
      await audit.record(actor.id, 'alert.maintenance.delete', `maintenance:${id}`, { name: row.name }, ip);
    },
  };
}

export type AlertsService = ReturnType<typeof createAlertsService>;
