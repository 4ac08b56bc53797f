// Staged agent upgrades (issue 11): a rollout moves chosen hosts to one agent bundle the
// controller holds — the canary hosts first, then batches — and halts on the first host that
// fails (refused the bundle, came back on its old version because its watchdog rolled it back,
// or did not come back within the bound). Everything a rollout is lives in its rows; a driver
// ticks every second and moves each running rollout one step, so a restarted controller carries
// on where the last one stopped. Needs `fleet.upgrade`; every change is audited.
import { KeelError, agentBundleFile, agentUpgradeEvents, type ErrorCode } from '@keel/shared';
import type { Logger } from 'pino';
import type { AgentGateway } from '../gateway/types.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type {
  AgentRollout,
  AgentRolloutHost,
  AgentUpgradeRepository,
  RolloutHostState,
  RolloutState,
} from '../repositories/agent-upgrades.ts';
import type { AuditService } from './audit.ts';
import type { HostEventsReader } from './host-events.ts';
import { requireAccess, type Actor as AccessActor } from './access.ts';

/** Who acts, and from where (for the audit trail). */
type Actor = AccessActor & { ip?: string | null };

/** One agent bundle the controller can hand out. */
export interface HeldBundle {
  version: string;
  sha256: string;
  size: number;
}

export interface AgentUpgradesDeps {
  rollouts: AgentUpgradeRepository;
  hosts: HostRepository;
  /** The host event stream (where a host reports that it rolled itself back). */
  hostEvents: Pick<HostEventsReader, 'tail'>;
  gateway: AgentGateway;
  audit: AuditService;
  log: Logger;
  /** The agent bundles held now (read from the bundle directory each time). */
  bundles: {
    versions(): string[];
    get(file: string): { version: string; sha256: string; bytes: Buffer } | null;
  };
  now?: () => Date;
  /** How often running rollouts are moved on (default 1 s). */
  tickMs?: number;
}

export interface StartRolloutInput {
  version: string;
  /** Hosts in order (the first `canary` are the canaries); absent: every host not on `version`. */
  hostIds?: string[];
  canary?: number;
  batchSize?: number;
  confirmSeconds?: number;
  maxStarts?: number;
}

/** Time beyond the agent's own bound before the controller gives a silent host up. */
const GRACE_SECONDS = 30;

/** A rollout with its hosts, as the API shows it. */
export interface RolloutView {
  id: string;
  version: string;
  sha256: string;
  state: RolloutState;
  canary: number;
  batchSize: number;
  confirmSeconds: number;
  maxStarts: number;
  reason: string | null;
  createdBy: string;
  createdAt: string;
  finishedAt: string | null;
  counts: Record<RolloutHostState, number>;
  hosts: {
    hostId: string;
    name: string;
    position: number;
    state: RolloutHostState;
    fromVersion: string | null;
    reason: string | null;
    startedAt: string | null;
    finishedAt: string | null;
  }[];
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function createAgentUpgradesService(deps: AgentUpgradesDeps) {
  const now = deps.now ?? (() => new Date());
  const log = deps.log.child({ component: 'agent-upgrades' });
  let timer: NodeJS.Timeout | null = null;
  let ticking: Promise<void> | null = null;
  /** Upgrade requests in flight on this controller, by `${rollout}:${host}`. */
  const inFlight = new Set<string>();
  /** Hosts of a batch found offline, since when (ms), by `${rollout}:${host}`. */
  const offlineSince = new Map<string, number>();
  /** When each upgrading host was last asked `agent.upgrade.status` (ms), by `${rollout}:${host}`. */
  const askedAt = new Map<string, number>();
  /**
   * When this controller started: a host's bound to come back counts from here at the earliest,
   * so time while the controller itself was down never counts against a host.
   */
  const startedAtMs = now().getTime();

  const held = (version: string): HeldBundle | null => {
    const b = deps.bundles.get(agentBundleFile(version));
    return b ? { version: b.version, sha256: b.sha256, size: b.bytes.length } : null;
  };

  const view = (r: AgentRollout, hosts: AgentRolloutHost[]): RolloutView => {
    const counts = { pending: 0, upgrading: 0, ok: 0, failed: 0, 'rolled-back': 0, cancelled: 0 };
    for (const h of hosts)
      counts[h.state as RolloutHostState] = (counts[h.state as RolloutHostState] ?? 0) + 1;
    return {
      id: r.id,
      version: r.version,
      sha256: r.sha256,
      state: r.state as RolloutState,
      canary: r.canary,
      batchSize: r.batchSize,
      confirmSeconds: r.confirmSeconds,
      maxStarts: r.maxStarts,
      reason: r.reason,
      createdBy: r.createdBy,
      createdAt: r.createdAt.toISOString(),
      finishedAt: iso(r.finishedAt),
      counts,
      hosts: hosts.map((h) => ({
        hostId: h.hostId,
        name: h.name,
        position: h.position,
        state: h.state as RolloutHostState,
        fromVersion: h.fromVersion,
        reason: h.reason,
        startedAt: iso(h.startedAt),
        finishedAt: iso(h.finishedAt),
      })),
    };
  };

  const mustGet = async (id: string) => {
    const r = await deps.rollouts.get(id);
    if (!r) throw new KeelError('upgrade.rollout_not_found');
    return r;
  };

  /** Ends the rollout because `host` failed: the rest waits for a person. */
  const halt = async (r: AgentRollout, host: AgentRolloutHost, state: RolloutHostState, reason: string) => {
    const at = now();
    await deps.rollouts.setHost(r.id, host.hostId, { state, reason, finishedAt: at });
    const why = `${host.name}: ${reason}`;
    await deps.rollouts.setState(r.id, 'halted', at, why);
    await deps.rollouts.cancelPending(r.id, at, 'the rollout halted');
    log.warn({ rollout: r.id, host: host.hostId, state, reason }, 'agent rollout halted');
    await deps.audit.record('system', 'rollout.halt', `rollout:${r.id}`, {
      version: r.version,
      host: host.hostId,
      hostState: state,
      reason,
    });
  };

  /** Sends the upgrade request; its answer (or error) is handled when it comes. */
  const begin = async (r: AgentRollout, host: AgentRolloutHost) => {
    const row = await deps.hosts.get(host.hostId);
    if (!row || row.revokedAt) return halt(r, host, 'failed', 'the host is revoked or gone');
    if (row.agentVersion === r.version) {
      await deps.rollouts.setHost(r.id, host.hostId, {
        state: 'ok',
        fromVersion: row.agentVersion,
        reason: `already on ${r.version}`,
        finishedAt: now(),
      });
      return;
    }
    const key = `${r.id}:${host.hostId}`;
    if (!row.online || !deps.gateway.isOnline(host.hostId)) {
      // A host may be between sessions (this controller just started, a network blip): it gets
      // the rollout's bound to come back before it counts as a failure.
      const since = offlineSince.get(key) ?? now().getTime();
      offlineSince.set(key, since);
      if (now().getTime() - since > r.confirmSeconds * 1000) {
        offlineSince.delete(key);
        return halt(r, host, 'failed', `the host has been offline for more than ${r.confirmSeconds} s`);
      }
      return;
    }
    offlineSince.delete(key);
    const startedAt = now();
    await deps.rollouts.setHost(r.id, host.hostId, {
      state: 'upgrading',
      fromVersion: row.agentVersion,
      startedAt,
      reason: null,
    });
    inFlight.add(key);
    deps.gateway
      .request(host.hostId, 'agent.upgrade', {
        version: r.version,
        sha256: r.sha256,
        size: r.size,
        confirmSeconds: r.confirmSeconds,
        maxStarts: r.maxStarts,
      })
      .then(
        async () => {
          // The agent restarts now: the bound for coming back counts from here.
          await deps.rollouts.setHost(r.id, host.hostId, { startedAt: now() });
          log.info(
            { rollout: r.id, host: host.hostId, version: r.version },
            'agent restarting into the new release',
          );
        },
        async (err: unknown) => {
          // A refusal is a failure; a disconnect is expected (the agent restarts right after answering).
          const code = err instanceof KeelError ? (err.code as ErrorCode) : 'internal';
          if (code === 'request.disconnected') return;
          const current = (await deps.rollouts.hostsOf(r.id)).find((h) => h.hostId === host.hostId);
          const fresh = await deps.rollouts.get(r.id);
          if (current?.state !== 'upgrading' || !fresh) return;
          await halt(
            fresh,
            current,
            'failed',
            `${code}: ${err instanceof Error ? err.message : String(err)}`,
          );
        },
      )
      .catch((err: unknown) => log.error({ err, rollout: r.id }, 'handling an upgrade answer failed'))
      .finally(() => inFlight.delete(key));
  };

  /** Checks one upgrading host: back on the new version, rolled back, or given up. */
  const check = async (r: AgentRollout, host: AgentRolloutHost): Promise<'waiting' | 'ok' | 'halted'> => {
    if (!host.startedAt) return 'waiting';
    const row = await deps.hosts.get(host.hostId);
    if (!row) {
      await halt(r, host, 'failed', 'the host is gone');
      return 'halted';
    }
    const key = `${r.id}:${host.hostId}`;
    const t0 = host.startedAt.getTime();
    // On the new version: only the new release can say so — in the hello of its session on this
    // controller, or in the facts it stored.
    const live = deps.gateway.capabilitiesOf?.(host.hostId) ?? null;
    const version = live ? live.agentVersion : row.online ? row.agentVersion : null;
    if (version === r.version) {
      await deps.rollouts.setHost(r.id, host.hostId, { state: 'ok', finishedAt: now(), reason: null });
      return 'ok';
    }
    // Still on the old release, with no upgrade request of this controller under way.
    if (version === host.fromVersion && !inFlight.has(key)) {
      const rolledBack = async (why: string) => {
        await halt(
          r,
          host,
          'rolled-back',
          `keel-agent ${r.version} did not come up (${why.slice(0, 300)}); the host switched itself back to ${host.fromVersion}`,
        );
        return 'halted' as const;
      };
      // Rolled back: the previous release, back, reports what its launcher recorded.
      const { events } = await deps.hostEvents.tail(host.hostId, 50);
      const back = events.find(
        (e) =>
          e.kind === agentUpgradeEvents.rolledBack && e.data.version === r.version && e.ts >= t0 - 60_000,
      );
      if (back)
        return rolledBack(typeof back.data.reason === 'string' ? back.data.reason : 'no reason given');
      // Or the request never took effect: its answer was lost with a restart of this controller or
      // a dropped link, and the host may have never got it, or failed it (its download cut off by
      // that restart). An agent that serves agent.upgrade.status says which; an older one is given
      // the bound below.
      const asked = askedAt.get(key) ?? 0;
      if (live?.requests.includes('agent.upgrade.status') && now().getTime() - asked >= 2_000) {
        askedAt.set(key, now().getTime());
        const status = await deps.gateway
          .request(host.hostId, 'agent.upgrade.status', {})
          .catch((err: unknown) => {
            log.debug({ err, rollout: r.id, host: host.hostId }, 'agent.upgrade.status failed');
            return null;
          });
        if (status && status.version === host.fromVersion) {
          const last = status.lastRollback;
          if (last && last.version === r.version && last.at * 1000 >= t0 - 60_000) {
            return rolledBack(last.reason);
          }
          if (!status.upgrading && !inFlight.has(key)) {
            log.info(
              { rollout: r.id, host: host.hostId, version: r.version },
              'the host is still on its old release and not upgrading: sending the upgrade again',
            );
            askedAt.delete(key);
            await begin(r, host);
            return 'waiting';
          }
        }
      }
    }
    // The bound counts from the request (or its answer), and never from before this controller started.
    if (now().getTime() - Math.max(t0, startedAtMs) > (r.confirmSeconds + GRACE_SECONDS) * 1000) {
      await halt(
        r,
        host,
        'failed',
        `did not come back online on ${r.version} within ${r.confirmSeconds + GRACE_SECONDS} s (now ${row.online ? `online on ${row.agentVersion}` : 'offline'})`,
      );
      return 'halted';
    }
    return 'waiting';
  };

  /** Moves one rollout a step: check the hosts upgrading, else start the next batch, else done. */
  const advance = async (r: AgentRollout) => {
    const hosts = await deps.rollouts.hostsOf(r.id);
    let upgrading = 0;
    for (const h of hosts.filter((x) => x.state === 'upgrading')) {
      const result = await check(r, h);
      if (result === 'halted') return;
      if (result === 'waiting') upgrading++;
    }
    if (upgrading > 0 || r.state !== 'running') return;
    const pending = hosts.filter((h) => h.state === 'pending');
    if (pending.length === 0) {
      await deps.rollouts.setState(r.id, 'done', now());
      log.info({ rollout: r.id, version: r.version }, 'agent rollout done');
      await deps.audit.record('system', 'rollout.done', `rollout:${r.id}`, { version: r.version });
      return;
    }
    // Batches by position: [0, canary), then batchSize at a time.
    const batchOf = (p: number) => (p < r.canary ? 0 : 1 + Math.floor((p - r.canary) / r.batchSize));
    const next = batchOf(pending[0]!.position);
    for (const h of pending.filter((x) => batchOf(x.position) === next)) {
      const fresh = await deps.rollouts.get(r.id);
      if (fresh?.state !== 'running') return;
      await begin(fresh, h);
    }
  };

  const tick = async () => {
    for (const r of await deps.rollouts.inStates(['running', 'paused'])) {
      try {
        await advance(r);
      } catch (err) {
        log.error({ err, rollout: r.id }, 'moving an agent rollout on failed');
      }
    }
  };

  return {
    /** Versions held by this controller, versions in the fleet, and recent rollouts. */
    async overview(actor: Actor | undefined) {
      requireAccess(actor, 'fleet.upgrade');
      const fleet = new Map<string, { hosts: number; online: number }>();
      for (const h of await deps.hosts.list()) {
        if (h.revokedAt) continue;
        const v = h.agentVersion ?? 'unknown';
        const e = fleet.get(v) ?? { hosts: 0, online: 0 };
        e.hosts++;
        if (h.online) e.online++;
        fleet.set(v, e);
      }
      const bundles: HeldBundle[] = [];
      for (const v of deps.bundles.versions()) {
        const b = held(v);
        if (b) bundles.push(b);
      }
      const rollouts = await deps.rollouts.list(20);
      return {
        bundles,
        fleet: [...fleet].map(([version, e]) => ({ version, ...e })),
        rollouts: await Promise.all(rollouts.map(async (r) => view(r, await deps.rollouts.hostsOf(r.id)))),
      };
    },

    async get(actor: Actor | undefined, id: string): Promise<RolloutView> {
      requireAccess(actor, 'fleet.upgrade');
      const r = await mustGet(id);
      return view(r, await deps.rollouts.hostsOf(id));
    },

    /** Starts a rollout; one runs (or is paused) at a time. */
    async create(actor: Actor | undefined, input: StartRolloutInput): Promise<RolloutView> {
      requireAccess(actor, 'fleet.upgrade');
      const bundle = held(input.version);
      if (!bundle) {
        throw new KeelError(
          'upgrade.bundle_not_found',
          `This controller holds no keel-agent ${input.version} bundle.`,
        );
      }
      if ((await deps.rollouts.inStates(['running', 'paused'])).length > 0) {
        throw new KeelError('upgrade.rollout_active');
      }
      const all = (await deps.hosts.list()).filter((h) => !h.revokedAt);
      let hostIds: string[];
      if (input.hostIds) {
        const known = new Set(all.map((h) => h.id));
        const unknown = input.hostIds.find((id) => !known.has(id));
        if (unknown) throw new KeelError('host.not_found', `No such host: ${unknown}.`);
        hostIds = [...new Set(input.hostIds)];
      } else {
        hostIds = all
          .filter((h) => h.agentVersion !== input.version)
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((h) => h.id);
      }
      if (hostIds.length === 0) throw new KeelError('request.invalid', 'No host to upgrade.');
      const canary = Math.min(input.canary ?? 1, hostIds.length);
      const r = await deps.rollouts.create({
        version: bundle.version,
        sha256: bundle.sha256,
        size: bundle.size,
        canary,
        batchSize: input.batchSize ?? Math.max(1, Math.ceil(hostIds.length / 4)),
        confirmSeconds: input.confirmSeconds ?? 60,
        maxStarts: input.maxStarts ?? 3,
        createdBy: actor!.id,
        hostIds,
        now: now(),
      });
      await deps.audit.record(
        actor!.id,
        'rollout.start',
        `rollout:${r.id}`,
        {
          version: r.version,
          sha256: r.sha256,
          hosts: hostIds.length,
          canary,
          batchSize: r.batchSize,
          confirmSeconds: r.confirmSeconds,
          maxStarts: r.maxStarts,
        },
        actor!.ip ?? null,
      );
      void this.tick();
      return view(r, await deps.rollouts.hostsOf(r.id));
    },

    /** pause (no new batch starts; hosts upgrading finish), resume, cancel (pending hosts are not touched). */
    async act(
      actor: Actor | undefined,
      id: string,
      action: 'pause' | 'resume' | 'cancel',
    ): Promise<RolloutView> {
      requireAccess(actor, 'fleet.upgrade');
      const r = await mustGet(id);
      const allowed = { pause: ['running'], resume: ['paused'], cancel: ['running', 'paused'] }[action];
      if (!allowed.includes(r.state)) {
        throw new KeelError('upgrade.rollout_state', `A ${r.state} rollout cannot be ${action}d.`);
      }
      const at = now();
      if (action === 'cancel') {
        await deps.rollouts.cancelPending(id, at, 'the rollout was cancelled');
        await deps.rollouts.setState(id, 'cancelled', at, `cancelled by a user`);
      } else {
        await deps.rollouts.setState(id, action === 'pause' ? 'paused' : 'running', at);
      }
      await deps.audit.record(
        actor!.id,
        `rollout.${action}`,
        `rollout:${id}`,
        { version: r.version },
        actor!.ip ?? null,
      );
      if (action === 'resume') void this.tick();
      return view((await deps.rollouts.get(id))!, await deps.rollouts.hostsOf(id));
    },

    /** One step of every running rollout (the driver calls it every tick; tests may too). */
    tick(): Promise<void> {
      ticking ??= tick().finally(() => (ticking = null));
      return ticking;
    },

    run(): void {
      timer ??= setInterval(() => void this.tick(), deps.tickMs ?? 1000);
      timer.unref();
    },

    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await ticking;
    },
  };
}

export type AgentUpgradesService = ReturnType<typeof createAgentUpgradesService>;
