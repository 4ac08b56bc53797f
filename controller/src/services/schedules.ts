// Scheduled jobs: a command on a host selection on a cron schedule (croner: 5 fields, or 6 with
// seconds) in a time zone. Every controller replica ticks; a due slot is claimed in the database
// (compare-and-set of `next_run_at`, and the run row is unique per schedule and slot), so a slot
// runs once however many replicas there are and across restarts. A slot whose previous run is still
// running is skipped (recorded as such). Every slot leaves exactly one run row: the next slot is
// computed from the slot just claimed, never from the clock, so a late tick (a busy machine, a stalled
// event loop) catches up on the slots it passed; slots more than a minute late (no controller was
// running) are recorded together as one missed row, not run late. With several replicas, whichever
// claims a slot runs it on every target host online anywhere (a host another replica holds is
// reached through it, services/jobs.ts); the one holding a target host's link still claims first
// (the others wait a few seconds), which saves that host the detour over the broker. A scheduled run acts with its owner's rights at the
// time it fires: hosts the owner may no longer run on are recorded as refused.
import { randomUUID } from 'node:crypto';
import { Cron } from 'croner';
import type { Logger } from 'pino';
import { KeelError, jobCommandSchema, JOB_MAX_TIMEOUT_SECONDS } from '@keel/shared';
import { z } from 'zod';
import type { JobTarget } from '../db/schema/jobs.ts';
import type { JobScheduleRow, JobsRepository } from '../repositories/jobs.ts';
import type { UserRow } from '../repositories/users.ts';
import { canSeeHost, hasHostPermission, requireAccess, rolePermissions, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';
import { jobTargetSchema, runView, type JobBusEvent, type JobRunView, type JobsService } from './jobs.ts';
import type { NotificationPayload } from './notifications.ts';

/** How late a slot may still start (the catch-up bound); later, it is recorded as missed. */
export const MISSED_AFTER_MS = 60_000;
/**
 * How long a replica holding none of a schedule's hosts leaves a due slot to a replica that holds
 * one (which claims it at its next tick); after this it claims the slot itself.
 */
export const HOLDER_GRACE_MS = 5_000;
/** At most this many slots of one schedule are handled in one tick (the rest at the next). */
const MAX_SLOTS_PER_TICK = 100;
/** Missed slots counted one by one up to this many (croner steps one slot at a time). */
const MISSED_COUNT_CAP = 100;
/** Sweep for orphaned runs every this many ticks. */
const SWEEP_EVERY_TICKS = 10;
/** Apply the history retention every this many ticks (10 minutes at the default tick). */
const RETENTION_EVERY_TICKS = 600;

/** How much run history is kept (docs/jobs.md, "Results and history"). */
export interface JobHistoryRetention {
  /** Runs that started more than this many days ago are deleted; 0 keeps them forever. */
  days: number;
  /** Each schedule keeps its newest this many runs; 0: no limit. */
  runsPerSchedule: number;
}

/**
 * Retention from `KEEL_JOB_HISTORY_DAYS` (default 90) and `KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE`
 * (default 1000); 0 turns either off. A malformed value is a start-up error naming the variable.
 */
export function jobHistoryFromEnv(env: Record<string, string | undefined>): JobHistoryRetention {
  const read = (name: string, fallback: number, max: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new Error(`${name} must be a whole number from 0 to ${max}, got "${raw.slice(0, 40)}"`);
    return n;
  };
  return {
    days: read('KEEL_JOB_HISTORY_DAYS', 90, 36_500),
    runsPerSchedule: read('KEEL_JOB_HISTORY_RUNS_PER_SCHEDULE', 1000, 10_000_000),
  };
}

const scheduleFields = {
  name: z.string().trim().min(1).max(120),
  command: jobCommandSchema,
  target: jobTargetSchema,
  concurrency: z.number().int().min(1).max(1000),
  timeoutSeconds: z.number().int().min(1).max(JOB_MAX_TIMEOUT_SECONDS),
  cron: z.string().trim().min(1).max(200),
  timezone: z.string().min(1).max(64),
  enabled: z.boolean(),
  /** Notification channels (docs/alerts.md) told when a run of the schedule fails. */
  notifyChannelIds: z.array(z.string().uuid()).max(20),
};
export const scheduleInputSchema = z.strictObject({
  ...scheduleFields,
  concurrency: scheduleFields.concurrency.default(20),
  timeoutSeconds: scheduleFields.timeoutSeconds.default(300),
  timezone: scheduleFields.timezone.default('UTC'),
  enabled: scheduleFields.enabled.default(true),
  notifyChannelIds: scheduleFields.notifyChannelIds.default([]),
});
/**
 * A PATCH: only the fields sent. (Built without the defaults: zod 4 applies a field's default
 * inside `.partial()`, so `{ enabled: false }` used to reset the time zone to UTC, concurrency to
 * 20 and the timeout to 300 s.)
 */
export const schedulePatchSchema = z.strictObject(scheduleFields).partial();

/** A schedule as the API shows it. */
export interface ScheduleView {
  id: string;
  name: string;
  command: JobScheduleRow['command'];
  target: JobTarget;
  concurrency: number;
  timeoutSeconds: number;
  cron: string;
  timezone: string;
  enabled: boolean;
  nextRunAt: string | null;
  ownerId: string | null;
  notifyChannelIds: string[];
  createdAt: string;
  updatedAt: string;
  lastRun: JobRunView | null;
  /** Each host's latest finished result in this schedule's runs, by host name. */
  lastResults: ScheduleHostResult[];
}

/** A host's latest finished result in a schedule's runs. */
export interface ScheduleHostResult {
  hostId: string;
  hostName: string;
  runId: string;
  status: string;
  exitCode: number | null;
  error: string | null;
  endedAt: string | null;
}

function view(
  row: JobScheduleRow,
  last?: Parameters<typeof runView>[0],
  results: ScheduleHostResult[] = [],
): ScheduleView {
  return {
    id: row.id,
    name: row.name,
    command: row.command,
    target: row.target,
    concurrency: row.concurrency,
    timeoutSeconds: row.timeoutSeconds,
    cron: row.cron,
    timezone: row.timezone,
    enabled: row.enabled,
    nextRunAt: row.nextRunAt?.toISOString() ?? null,
    ownerId: row.ownerId,
    notifyChannelIds: row.notifyChannelIds,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    lastRun: last ? runView(last) : null,
    lastResults: results,
  };
}

/** The next slot of a pattern after `from`, or a `schedule.invalid_cron` error. */
export function nextSlot(cron: string, timezone: string, from: Date): Date | null {
  return pattern(cron, timezone).nextRun(from);
}

/** A parsed pattern (croner), or a `schedule.invalid_cron` error. */
function pattern(cron: string, timezone: string): Cron {
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
  } catch {
    throw new KeelError('schedule.invalid_cron', `Unknown time zone "${timezone.slice(0, 64)}".`);
  }
  try {
    return new Cron(cron, { timezone, paused: true });
  } catch (err) {
    throw new KeelError(
      'schedule.invalid_cron',
      `Invalid cron expression: ${(err as Error).message}`.slice(0, 300),
    );
  }
}

function parse<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new KeelError(
      'request.invalid',
      `body${issue?.path.length ? `.${issue.path.join('.')}` : ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

export interface SchedulesServiceDeps {
  jobs: JobsRepository;
  runs: JobsService;
  users: { findById(id: string): Promise<UserRow | null> };
  resolveActor: (user: UserRow) => Promise<Actor>;
  groups: { hostsOf(groupIds: readonly string[]): Promise<string[]> };
  hosts: { list(): Promise<{ id: string; name: string; revokedAt: Date | null }[]> };
  /**
   * Whether a host's link is held by this controller: replicas leave a slot to one that holds a
   * target host for HOLDER_GRACE_MS (fewer routed channels; the run reaches every host either way).
   */
  isOnline?: (hostId: string) => boolean;
  audit: AuditService;
  log: Logger;
  now?: () => Date;
  /** How often the scheduler looks for due slots (default 1 s). */
  tickMs?: number;
  /** Run history kept (default: from the environment, see jobHistoryFromEnv). */
  history?: JobHistoryRetention;
  /** The failure hook: the bus carrying `job.failed`, and the notification channels it tells. */
  bus?: { subscribe(fn: (event: { type: string }) => void): () => void };
  notifications?: {
    list(actor: Actor): Promise<{ id: string }[]>;
    enqueue(
      channelIds: readonly string[],
      alertId: string | null,
      payload: NotificationPayload,
    ): Promise<void>;
    deliverDue(): Promise<number>;
  };
  /** The console's URL, linked from notifications. */
  publicUrl?: string;
}

export function createSchedulesService(deps: SchedulesServiceDeps) {
  const now = deps.now ?? (() => new Date());
  const { jobs, log } = deps;
  let timer: NodeJS.Timeout | null = null;
  let ticking: Promise<void> | null = null;
  let ticks = 0;
  const history = deps.history ?? jobHistoryFromEnv(process.env);

  /** Deletes run history past the retention (age, then runs per schedule); returns how many. */
  async function sweepHistory(): Promise<number> {
    let removed = 0;
    if (history.days > 0)
      removed += await jobs.deleteRunsBefore(new Date(now().getTime() - history.days * 86_400_000));
    if (history.runsPerSchedule > 0) {
      // In batches, so one sweep never holds the database long; the rest goes at the next one.
      for (let i = 0; i < 20; i++) {
        const n = await jobs.trimScheduleRuns(history.runsPerSchedule);
        removed += n;
        if (n === 0) break;
      }
    }
    if (removed > 0) log.info({ removed, ...history }, 'job history past its retention deleted');
    return removed;
  }

  const fleetWide = (actor: Actor) => (actor.fleet ?? rolePermissions[actor.role])?.has('job.run') ?? false;
  const visible = (actor: Actor, row: JobScheduleRow) => row.ownerId === actor.id || fleetWide(actor);

  async function visibleSchedule(actor: Actor, id: string): Promise<JobScheduleRow> {
    requireAccess(actor, 'job.run');
    const row = await jobs.getSchedule(id);
    if (!row || !visible(actor, row)) throw new KeelError('schedule.not_found');
    return row;
  }

  /** Hosts of a target split into those the owner may run on now and those refused. */
  async function hostsFor(actor: Actor, target: JobTarget) {
    const ids = new Set(target.hostIds ?? []);
    if (target.groupId) for (const h of await deps.groups.hostsOf([target.groupId])) ids.add(h);
    if (target.tag) for (const h of await jobs.hostsTagged(target.tag)) ids.add(h);
    const byId = new Map((await deps.hosts.list()).map((h) => [h.id, h]));
    const hosts: { id: string; name: string }[] = [];
    const refused: { id: string; name: string }[] = [];
    for (const id of ids) {
      const h = byId.get(id);
      if (!h || h.revokedAt) continue;
      if (canSeeHost(actor, id) && hasHostPermission(actor, 'job.run', id)) hosts.push({ id, name: h.name });
      else refused.push({ id, name: h.name });
    }
    return { hosts, refused };
  }

  /** Records a slot that did not run (skipped, missed, owner gone). */
  async function recordNotRun(s: JobScheduleRow, slot: Date | null, status: string, note: string) {
    const at = now();
    await jobs.createRun(
      {
        id: randomUUID(),
        scheduleId: s.id,
        scheduledFor: slot,
        trigger: 'schedule',
        userId: s.ownerId,
        command: s.command,
        target: s.target,
        concurrency: s.concurrency,
        timeoutSeconds: s.timeoutSeconds,
        maxOutputBytes: 256 * 1024,
        status,
        note,
        startedAt: at,
        endedAt: at,
        heartbeatAt: at,
      },
      [],
    );
    log.info({ schedule: s.id, slot, status, note }, 'scheduled slot not run');
  }

  /** Starts a schedule's run now (a claimed slot, or "run now"). */
  async function fire(s: JobScheduleRow, slot: Date | null, trigger: string): Promise<JobRunView | null> {
    const owner = s.ownerId ? await deps.users.findById(s.ownerId) : null;
    if (!owner) {
      await recordNotRun(s, slot, 'failed', 'the schedule owner no longer exists');
      return null;
    }
    const actor = await deps.resolveActor(owner);
    const { hosts, refused } = await hostsFor(actor, s.target);
    if (hosts.length + refused.length === 0) {
      await recordNotRun(s, slot, 'skipped', 'the selection holds no hosts');
      return null;
    }
    return deps.runs.startRun(
      actor,
      {
        command: { ...s.command, env: s.command.env ?? {} },
        target: s.target as never,
        concurrency: s.concurrency,
        timeoutSeconds: s.timeoutSeconds,
        maxOutputBytes: 256 * 1024,
      },
      {
        userId: owner.id,
        trigger,
        scheduleId: s.id,
        scheduleName: s.name,
        scheduledFor: slot,
        hosts,
        refused,
      },
    );
  }

  /** Each schedule's latest result per host, limited to hosts the actor can see. */
  async function hostResults(
    actor: Actor,
    ids: readonly string[],
  ): Promise<Map<string, ScheduleHostResult[]>> {
    const out = new Map<string, ScheduleHostResult[]>();
    for (const r of await jobs.lastHostResults(ids)) {
      if (!r.scheduleId || !canSeeHost(actor, r.hostId)) continue;
      const list = out.get(r.scheduleId) ?? [];
      list.push({
        hostId: r.hostId,
        hostName: r.hostName,
        runId: r.runId,
        status: r.status,
        exitCode: r.exitCode,
        error: r.error,
        endedAt: r.endedAt?.toISOString() ?? null,
      });
      out.set(r.scheduleId, list);
    }
    for (const list of out.values()) list.sort((a, b) => a.hostName.localeCompare(b.hostName));
    return out;
  }

  /** Refuses channel ids the actor cannot see (monitoring.view) or that do not exist. */
  async function checkChannels(actor: Actor, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    if (!deps.notifications)
      throw new KeelError('request.invalid', 'body.notifyChannelIds: notifications are not available');
    const known = new Set((await deps.notifications.list(actor)).map((c) => c.id));
    const unknown = ids.find((id) => !known.has(id));
    if (unknown)
      throw new KeelError('request.invalid', `body.notifyChannelIds: no notification channel ${unknown}`);
  }

  /**
   * The alert hook: a failed run of a schedule that names channels queues one notification to each
   * (event `firing`, rule kind `job_failed`) and sends what is due. Only the controller that ran
   * the run publishes its `job.failed`, so each failure is told once.
   */
  async function notifyFailure(e: Extract<JobBusEvent, { type: 'job.failed' }>): Promise<void> {
    if (!e.scheduleId || !deps.notifications) return;
    const s = await jobs.getSchedule(e.scheduleId);
    if (!s || s.notifyChannelIds.length === 0) return;
    const run = await jobs.getRun(e.runId);
    const shown = e.failedHosts.slice(0, 5).map((h) => {
      const why = h.exitCode !== null ? `exit ${h.exitCode}` : h.status;
      return `${h.hostName} (${why})`;
    });
    const more =
      e.failedHosts.length > shown.length ? `, and ${e.failedHosts.length - shown.length} more` : '';
    const payload: NotificationPayload = {
      version: 1,
      event: 'firing',
      alert: {
        id: null,
        rule: { id: s.id, name: s.name, kind: 'job_failed', severity: 'warning' },
        subject: `schedule:${s.id}`,
        hostId: e.failedHosts.length === 1 ? e.failedHosts[0]!.hostId : null,
        hostName: e.failedHosts.length === 1 ? e.failedHosts[0]!.hostName : null,
        checkId: null,
        state: 'firing',
        value: e.failedHosts.length,
        summary: `Scheduled job "${s.name}" failed on ${e.failedHosts.length} of ${run?.hostCount ?? '?'} hosts: ${shown.join(', ')}${more}.`,
        startedAt: run?.startedAt.toISOString() ?? null,
        firedAt: e.at,
        resolvedAt: null,
      },
      url: deps.publicUrl ? `${deps.publicUrl.replace(/\/$/, '')}/jobs?run=${e.runId}` : null,
    };
    await deps.notifications.enqueue(s.notifyChannelIds, null, payload);
    await deps.notifications.deliverDue();
  }
  let unsubscribe: (() => void) | null = null;

  /** Whether this controller holds the link of at least one host of a target. */
  async function holdsAnyHost(target: JobTarget): Promise<boolean> {
    const isOnline = deps.isOnline;
    if (!isOnline) return true;
    if ((target.hostIds ?? []).some(isOnline)) return true;
    if (target.groupId && (await deps.groups.hostsOf([target.groupId])).some(isOnline)) return true;
    if (target.tag && (await jobs.hostsTagged(target.tag)).some(isOnline)) return true;
    return false;
  }

  /** The slots from `first` up to (not including) `resume`, counted up to MISSED_COUNT_CAP. */
  function describeMissed(cron: Cron, first: Date, resume: Date | null): string {
    let count = 1;
    let last = first;
    for (let t = cron.nextRun(first); t && (!resume || t < resume); t = cron.nextRun(t)) {
      if (count === MISSED_COUNT_CAP)
        return `missed more than ${MISSED_COUNT_CAP} slots from ${first.toISOString()} until ${resume?.toISOString() ?? 'the end of the pattern'}: no controller ran them within ${MISSED_AFTER_MS / 1000} s`;
      count++;
      last = t;
    }
    return count === 1
      ? `missed: no controller ran the slot at ${first.toISOString()} within ${MISSED_AFTER_MS / 1000} s`
      : `missed ${count} slots from ${first.toISOString()} to ${last.toISOString()}: no controller ran them within ${MISSED_AFTER_MS / 1000} s`;
  }

  /**
   * Handles the due slots of one schedule, oldest first: each gets its row (run, or skipped) and
   * then its claim (compare-and-set of `next_run_at` from that slot to the one after it). Slots
   * past the catch-up bound get one missed row and are claimed in one step.
   */
  async function catchUp(s: JobScheduleRow, at: Date): Promise<void> {
    let cron: Cron;
    try {
      cron = pattern(s.cron, s.timezone);
    } catch (err) {
      // Saved patterns were checked; one croner no longer takes stops the schedule, visibly.
      await recordNotRun(s, s.nextRunAt, 'failed', (err as Error).message.slice(0, 300));
      await jobs.claimSlot(s.id, s.nextRunAt!, null);
      return;
    }
    let holds: boolean | null = null;
    let slot: Date | null = s.nextRunAt;
    for (let i = 0; slot && slot.getTime() <= at.getTime() && i < MAX_SLOTS_PER_TICK; i++) {
      const late = at.getTime() - slot.getTime();
      if (late < HOLDER_GRACE_MS) {
        holds ??= await holdsAnyHost(s.target);
        if (!holds) return; // a replica holding a host takes it; if none does, this one will
      }
      // The slot's row first, then the claim: the row is unique per (schedule, slot), so a replica
      // that lost the race writes nothing, and a controller killed between the two finds the row
      // there at its next tick and only moves the claim on. (Claim first, a kill in between left a
      // slot without a row.)
      if (late > MISSED_AFTER_MS) {
        const resume = cron.nextRun(new Date(at.getTime() - MISSED_AFTER_MS));
        await recordNotRun(s, slot, 'skipped', describeMissed(cron, slot, resume));
        if (!(await jobs.claimSlot(s.id, slot, resume))) return; // another replica took it
        slot = resume;
        continue;
      }
      const next = cron.nextRun(slot);
      try {
        if (await jobs.scheduleRunning(s.id))
          await recordNotRun(s, slot, 'skipped', 'the previous run was still running');
        else await fire(s, slot, 'schedule');
      } catch (err) {
        // Not claimed: the next tick tries the slot again (past the catch-up bound it is missed).
        log.error({ err, schedule: s.id, slot }, 'starting a scheduled run failed');
        return;
      }
      if (!(await jobs.claimSlot(s.id, slot, next))) return; // another replica moved it on
      slot = next;
    }
  }

  /** One look for due slots; each gets its row, then its claim moves on. */
  async function tick(): Promise<void> {
    ticks++;
    if (ticks % SWEEP_EVERY_TICKS === 1) await deps.runs.sweepOrphans();
    if (ticks % RETENTION_EVERY_TICKS === 1)
      await sweepHistory().catch((err: unknown) => log.error({ err }, 'job history retention failed'));
    const at = now();
    for (const s of await jobs.dueSchedules(at))
      await catchUp(s, at).catch((err: unknown) => log.error({ err, schedule: s.id }, 'scheduling failed'));
  }

  return {
    /** Starts the scheduler loop (and the failure hook). */
    start() {
      if (timer) return;
      unsubscribe =
        deps.bus?.subscribe((event) => {
          if (event.type !== 'job.failed') return;
          notifyFailure(event as Extract<JobBusEvent, { type: 'job.failed' }>).catch((err: unknown) =>
            log.error({ err }, 'notifying a failed scheduled run failed'),
          );
        }) ?? null;
      timer = setInterval(() => {
        if (ticking) return;
        ticking = tick()
          .catch((err: unknown) => log.error({ err }, 'scheduler tick failed'))
          .finally(() => (ticking = null));
      }, deps.tickMs ?? 1_000);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      unsubscribe?.();
      unsubscribe = null;
      await ticking;
    },
    /** One scheduler pass now (tests with an injected clock). */
    tick,
    /** The failure hook for one `job.failed` event (start() subscribes it to the bus). */
    notifyFailure,
    /** Applies the run history retention now (it also runs every 10 minutes of ticks). */
    sweepHistory,

    async list(actor: Actor): Promise<ScheduleView[]> {
      requireAccess(actor, 'job.run');
      const rows = (await jobs.listSchedules()).filter((r) => visible(actor, r));
      const last = await jobs.lastRuns(rows.map((r) => r.id));
      const results = await hostResults(
        actor,
        rows.map((r) => r.id),
      );
      return rows.map((r) => view(r, last.get(r.id), results.get(r.id)));
    },

    async get(actor: Actor, id: string): Promise<ScheduleView> {
      const row = await visibleSchedule(actor, id);
      return view(row, (await jobs.lastRuns([id])).get(id), (await hostResults(actor, [id])).get(id));
    },

    async create(actor: Actor & { ip?: string | null }, body: unknown): Promise<ScheduleView> {
      requireAccess(actor, 'job.run');
      const input = parse(scheduleInputSchema, body);
      await deps.runs.resolveTarget(actor, input.target as JobTarget);
      await checkChannels(actor, input.notifyChannelIds);
      const at = now();
      const next = nextSlot(input.cron, input.timezone, at);
      const row = await jobs.createSchedule({
        id: randomUUID(),
        name: input.name,
        command: input.command,
        target: input.target as JobTarget,
        concurrency: input.concurrency,
        timeoutSeconds: input.timeoutSeconds,
        cron: input.cron,
        timezone: input.timezone,
        enabled: input.enabled,
        nextRunAt: input.enabled ? next : null,
        notifyChannelIds: input.notifyChannelIds,
        ownerId: actor.id,
        createdAt: at,
        updatedAt: at,
      });
      await deps.audit.record(
        actor.id,
        'schedule.create',
        `schedule:${row.id}`,
        {
          name: row.name,
          cron: row.cron,
          timezone: row.timezone,
          argv: row.command.argv,
          target: row.target,
          notifyChannelIds: row.notifyChannelIds,
        },
        actor.ip ?? null,
      );
      return view(row);
    },

    async update(actor: Actor & { ip?: string | null }, id: string, body: unknown): Promise<ScheduleView> {
      const row = await visibleSchedule(actor, id);
      const patch = parse(schedulePatchSchema, body);
      const merged = { ...row, ...patch, target: (patch.target ?? row.target) as JobTarget };
      await deps.runs.resolveTarget(actor, merged.target);
      if (patch.notifyChannelIds) await checkChannels(actor, patch.notifyChannelIds);
      const at = now();
      const next = nextSlot(merged.cron, merged.timezone, at);
      const updated = await jobs.updateSchedule(id, {
        name: merged.name,
        command: merged.command,
        target: merged.target,
        concurrency: merged.concurrency,
        timeoutSeconds: merged.timeoutSeconds,
        cron: merged.cron,
        timezone: merged.timezone,
        enabled: merged.enabled,
        nextRunAt: merged.enabled ? next : null,
        notifyChannelIds: merged.notifyChannelIds,
        // The schedule now runs with the rights of whoever saved it last.
        ownerId: actor.id,
        updatedAt: at,
      });
      if (!updated) throw new KeelError('schedule.not_found');
      await deps.audit.record(
        actor.id,
        'schedule.update',
        `schedule:${id}`,
        { changed: Object.keys(patch) },
        actor.ip ?? null,
      );
      return view(updated, (await jobs.lastRuns([id])).get(id), (await hostResults(actor, [id])).get(id));
    },

    async remove(actor: Actor & { ip?: string | null }, id: string): Promise<void> {
      const row = await visibleSchedule(actor, id);
      await jobs.deleteSchedule(id);
      await deps.audit.record(
        actor.id,
        'schedule.delete',
        `schedule:${id}`,
        { name: row.name },
        actor.ip ?? null,
      );
    },

    /** Runs a schedule's job now (outside its slots), with the caller's rights checked too. */
    async runNow(actor: Actor & { ip?: string | null }, id: string): Promise<JobRunView> {
      const row = await visibleSchedule(actor, id);
      await deps.runs.resolveTarget(actor, row.target);
      await deps.audit.record(
        actor.id,
        'schedule.run_now',
        `schedule:${id}`,
        { name: row.name },
        actor.ip ?? null,
      );
      const run = await fire(row, null, 'run-now');
      if (!run) throw new KeelError('job.no_hosts');
      return run;
    },
  };
}

export type SchedulesService = ReturnType<typeof createSchedulesService>;
