// Service checks as a rule: create, change and delete checks (monitoring.manage, audited), push
// each host the set it runs (`checks.apply` with the set's generation: on every change to the
// hosts concerned, and to a host whenever it comes online), store the `checks` stream's results
// (the sink), and answer the list with last status, uptime and a latency sparkline per check.
// A user sees a check when they see at least one of the hosts that run it.
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  checkKinds,
  checkSpecSchema,
  dnsCheckTargetSchema,
  httpCheckTargetSchema,
  KeelError,
  tcpCheckTargetSchema,
  type CheckSpec,
} from '@keel/shared';
import type { FleetBus } from '../bus/index.ts';
import type { StreamSink } from '../gateway/sinks.ts';
import type { AgentGateway } from '../gateway/types.ts';
import type { ChecksRepository, CheckRow } from '../repositories/checks.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type { AuditService } from './audit.ts';
import { canSeeHost, requireAccess, type Actor } from './access.ts';

const DAY = 86_400_000;

/** A check as created or changed through the API. */
export const checkBodySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    kind: z.enum(checkKinds),
    target: z.record(z.string(), z.unknown()),
    hostIds: z.array(z.uuid()).min(1).max(100),
    intervalSeconds: z.number().int().min(5).max(86_400).default(60),
    timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
    enabled: z.boolean().default(true),
  })
  .superRefine((body, ctx) => {
    const schema = { http: httpCheckTargetSchema, tcp: tcpCheckTargetSchema, dns: dnsCheckTargetSchema }[
      body.kind
    ];
    const parsed = schema.safeParse(body.target);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['target', ...issue.path.map(String)], message: issue.message });
      }
    }
  });
export type CheckBody = z.input<typeof checkBodySchema>;

/** One check as the API shows it. */
export interface CheckView {
  id: string;
  name: string;
  kind: CheckRow['kind'];
  target: CheckRow['target'];
  hostIds: string[];
  intervalSeconds: number;
  timeoutMs: number;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
  /** `up` when every host's last result is up, `down` when any is down, `unknown` without results. */
  status: 'up' | 'down' | 'unknown';
  /** Last result per host. */
  last: {
    hostId: string;
    at: string;
    ok: boolean;
    latencyMs: number | null;
    status: number | null;
    certExpiresAt: string | null;
    error: string | null;
  }[];
  uptime: { day: number | null; week: number | null; month: number | null };
  /** Average latency over the last 24 h in 48 buckets (oldest first; null: no result). */
  latency: (number | null)[];
}

function specOf(row: CheckRow): CheckSpec {
  return checkSpecSchema.parse({
    id: row.id,
    kind: row.kind,
    intervalSeconds: row.intervalSeconds,
    timeoutMs: row.timeoutMs,
    target: row.target,
  });
}

function parseBody(body: unknown, partial: boolean, current?: CheckRow) {
  const merged = partial && current ? { ...pick(current), ...(body as object) } : body;
  const parsed = checkBodySchema.safeParse(merged);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new KeelError('request.invalid', `${first.path.join('.') || 'body'}: ${first.message}`);
  }
  const schema = { http: httpCheckTargetSchema, tcp: tcpCheckTargetSchema, dns: dnsCheckTargetSchema }[
    parsed.data.kind
  ];
  return { ...parsed.data, target: schema.parse(parsed.data.target) as CheckRow['target'] };
}

function pick(row: CheckRow) {
  const { name, kind, target, hostIds, intervalSeconds, timeoutMs, enabled } = row;
  return { name, kind, target, hostIds, intervalSeconds, timeoutMs, enabled };
}

export interface ChecksServiceDeps {
  checks: ChecksRepository;
  hosts: Pick<HostRepository, 'get'>;
  gateway: AgentGateway;
  bus: FleetBus;
  audit: AuditService;
  log: Logger;
  now?: () => number;
  /** Results kept, days (`KEEL_CHECKS_RETENTION_DAYS`, default 90). */
  retentionDays?: number;
}

export function createChecksService(deps: ChecksServiceDeps) {
  const { checks, log, audit } = deps;
  const now = deps.now ?? Date.now;
  const retentionDays = deps.retentionDays ?? 90;
  let unsubscribe: (() => void) | null = null;
  let pruneTimer: NodeJS.Timeout | null = null;

  /** Sends a host the checks it runs now; an offline host gets them when it comes online. */
  async function pushTo(hostId: string): Promise<void> {
    if (!deps.gateway.isOnline(hostId)) return;
    try {
      const generation = await checks.generation();
      const list = (await checks.forHost(hostId)).map(specOf);
      await deps.gateway.request(hostId, 'checks.apply', { generation, checks: list });
    } catch (err) {
      const code = err instanceof KeelError ? err.code : undefined;
      if (code === 'agent.unsupported') log.debug({ host: hostId }, 'agent runs no checks (too old)');
      else log.warn({ err, host: hostId }, 'pushing checks to the host failed');
    }
  }

  async function pushAll(hostIds: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(hostIds)].map((h) => pushTo(h)));
  }

  async function requireHostsExist(hostIds: readonly string[]): Promise<void> {
    for (const id of hostIds) if (!(await deps.hosts.get(id))) throw new KeelError('host.not_found');
  }

  async function views(rows: CheckRow[]): Promise<CheckView[]> {
    if (rows.length === 0) return [];
    const at = now();
    const ids = rows.map((r) => r.id);
    const [latest, uptime, latency] = await Promise.all([
      checks.latest(ids),
      checks.uptime(new Date(at)),
      checks.latencyBuckets(new Date(at - DAY), new Date(at), 48),
    ]);
    return rows.map((row) => {
      const last = latest
        .filter((l) => l.checkId === row.id && row.hostIds.includes(l.hostId))
        .map((l) => ({
          hostId: l.hostId,
          at: l.ts.toISOString(),
          ok: l.ok,
          latencyMs: l.latencyMs,
          status: l.status,
          certExpiresAt: l.certExpiresAt?.toISOString() ?? null,
          error: l.error,
        }));
      const u = uptime.find((x) => x.checkId === row.id);
      return {
        id: row.id,
        name: row.name,
        kind: row.kind,
        target: row.target,
        hostIds: row.hostIds,
        intervalSeconds: row.intervalSeconds,
        timeoutMs: row.timeoutMs,
        enabled: row.enabled,
        createdAt: row.createdAt.toISOString(),
        updatedAt: row.updatedAt.toISOString(),
        status: last.length === 0 ? 'unknown' : last.every((l) => l.ok) ? 'up' : 'down',
        last,
        uptime: { day: u?.day ?? null, week: u?.week ?? null, month: u?.month ?? null },
        latency: latency.get(row.id) ?? Array.from({ length: 48 }, () => null),
      };
    });
  }

  const visible = (actor: Actor, row: CheckRow) => row.hostIds.some((h) => canSeeHost(actor, h));

  async function getVisible(actor: Actor, id: string): Promise<CheckRow> {
    const row = await checks.get(id);
    if (!row || !visible(actor, row)) throw new KeelError('check.not_found');
    return row;
  }

  const sink: StreamSink = {
    async append(hostId, stream, batch) {
      const result = await checks.append(hostId, stream, batch);
      if (result.rejected > 0)
        log.warn({ host: hostId, rejected: result.rejected }, 'malformed check results skipped');
      if (result.gap) log.warn({ host: hostId, gap: result.gap }, 'check results lost on the agent');
      return { ackedSeq: result.ackedSeq };
    },
  };

  return {
    sink,
    pushTo,

    /** Pushes checks to every host that comes online, and prunes old results daily. */
    start(): void {
      unsubscribe = deps.bus.subscribe((event) => {
        if (event.type === 'host' && event.host.online) void pushTo(event.host.id);
      });
      const prune = () =>
        void checks
          .prune(new Date(now() - retentionDays * DAY))
          .catch((err: unknown) => log.error({ err }, 'pruning check results failed'));
      prune();
      pruneTimer = setInterval(prune, 3_600_000);
      pruneTimer.unref();
    },
    stop(): void {
      unsubscribe?.();
      unsubscribe = null;
      if (pruneTimer) clearInterval(pruneTimer);
      pruneTimer = null;
    },

    async list(actor: Actor): Promise<CheckView[]> {
      requireAccess(actor, 'monitoring.view');
      return views((await checks.list()).filter((r) => visible(actor, r)));
    },

    async get(actor: Actor, id: string): Promise<CheckView> {
      requireAccess(actor, 'monitoring.view');
      return (await views([await getVisible(actor, id)]))[0]!;
    },

    /** One check's results over [from, to) (default: the last 24 h), newest first. */
    async history(actor: Actor, id: string, q: { from?: number; to?: number; limit?: number }) {
      requireAccess(actor, 'monitoring.view');
      const row = await getVisible(actor, id);
      const to = q.to ?? now();
      const from = q.from ?? to - DAY;
      const limit = Math.min(Math.max(q.limit ?? 500, 1), 5_000);
      const rows = await checks.history(row.id, new Date(from), new Date(to), limit);
      return rows
        .filter((r) => canSeeHost(actor, r.hostId))
        .map((r) => ({
          hostId: r.hostId,
          at: r.ts.toISOString(),
          ok: r.ok,
          latencyMs: r.latencyMs,
          status: r.status,
          certExpiresAt: r.certExpiresAt?.toISOString() ?? null,
          error: r.error,
        }));
    },

    async create(actor: Actor, body: unknown, ip: string | null = null): Promise<CheckView> {
      requireAccess(actor, 'monitoring.manage');
      const input = parseBody(body, false);
      await requireHostsExist(input.hostIds);
      const row = await checks.create(input);
      await checks.nextGeneration();
      await audit.record(
        actor.id,
        'check.create',
        `check:${row.id}`,
        { name: row.name, kind: row.kind, hostIds: row.hostIds },
        ip,
      );
      await pushAll(row.hostIds);
      return (await views([row]))[0]!;
    },

    async update(actor: Actor, id: string, body: unknown, ip: string | null = null): Promise<CheckView> {
      requireAccess(actor, 'monitoring.manage');
      const current = await checks.get(id);
      if (!current) throw new KeelError('check.not_found');
      const input = parseBody(body, true, current);
      await requireHostsExist(input.hostIds);
      const row = await checks.update(id, input);
      if (!row) throw new KeelError('check.not_found');
      await checks.nextGeneration();
      await audit.record(
        actor.id,
        'check.update',
        `check:${row.id}`,
        { name: row.name, changed: Object.keys(body as object) },
        ip,
      );
      await pushAll([...current.hostIds, ...row.hostIds]);
      return (await views([row]))[0]!;
    },

    async remove(actor: Actor, id: string, ip: string | null = null): Promise<void> {
      requireAccess(actor, 'monitoring.manage');
      const row = await checks.remove(id);
      if (!row) throw new KeelError('check.not_found');
      await checks.nextGeneration();
      await audit.record(actor.id, 'check.delete', `check:${row.id}`, { name: row.name }, ip);
      await pushAll(row.hostIds);
    },
  };
}

export type ChecksService = ReturnType<typeof createChecksService>;

/** Reads `KEEL_CHECKS_RETENTION_DAYS` (whole days >= 1, default 90). */
export function checksRetentionFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KEEL_CHECKS_RETENTION_DAYS;
  if (raw === undefined || raw === '') return 90;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`KEEL_CHECKS_RETENTION_DAYS must be a whole number >= 1, got "${raw}"`);
  return n;
}
