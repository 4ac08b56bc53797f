// Proxy nodes as a rule: a node is one proxy instance on one host with its adapter and settings;
// every push is a new, numbered configuration generation (numbers only go up, so the agent refuses
// an older push that arrives late); each generation is stored with the files the agent rendered,
// who pushed it, when and why, and how it ended. Rollback re-pushes an old generation's settings as
// a new generation. A rollout pushes to many nodes in stages (canary, then batches) and halts on
// the first failure; its progress is stored, so a controller restart leaves it halted and
// resumable. Drift (a local edit of an applied file) arrives as `config.drift` events on the host
// event stream and is adopted (stored as a generation made by host edit) or overwritten.
//
// Permissions: host.view to read, config.apply to change or push; every change is audited.
import { EventEmitter } from 'node:events';
import { createTwoFilesPatch } from 'diff';
import type { Logger } from 'pino';
import {
  adapterSettingsSchemas,
  describeSchemaError,
  KeelError,
  proxyPublicAddressSchema,
  proxyAdapters,
  proxyInstanceSchema,
  type ProxyAdapter,
  type ProxyUserSpec,
} from '@keel/shared';
import type { FleetBus, FleetEvent } from '../bus/index.ts';
import type { AgentGateway } from '../gateway/types.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type {
  ConfigRolloutStepRow,
  DriftEntry,
  GenerationOutcome,
  GenerationRecord,
  GenerationSummary,
  ProxyNodeRepository,
  ProxyNodeRow,
  RenderedFile,
  RolloutWithSteps,
} from '../repositories/proxy-nodes.ts';
import {
  canSeeHost,
  hasHostPermission,
  requireAccess,
  requireHostAccess,
  type Actor,
  type Permission,
} from './access.ts';
import type { AuditService } from './audit.ts';

/** A person (or API token) acting, with the address for the audit trail. */
export type ProxyUserActor = Actor & { ip: string | null };
/**
 * Keel itself acting (e.g. the proxy users service removing a user over quota): no permission
 * check; `id` names it in the audit trail (`system:proxy-users`).
 */
export interface SystemActor {
  system: true;
  id: string;
}
export type ProxyActor = ProxyUserActor | SystemActor;

const isSystem = (actor: ProxyActor): actor is SystemActor => 'system' in actor && actor.system === true;

/** The users an instance serves (the proxy users service answers; [] until there is one). */
export type UsersForNode = (hostId: string, instance: string) => Promise<ProxyUserSpec[]>;

/** A node as the API shows it. */
export interface ProxyNodeView {
  hostId: string;
  hostName: string;
  instance: string;
  adapter: string;
  settings: Record<string, unknown>;
  /** Where share links point users (null: the host's name). */
  publicAddress: string | null;
  state: ProxyNodeRow['state'];
  currentGeneration: number | null;
  lastGeneration: number;
  drift: { path: string; diff: string; at: string }[];
  /** The newest generation pushed, with its outcome (null before the first push). */
  latest: GenerationView | null;
  createdAt: string;
  updatedAt: string;
}

/** A generation as the API shows it (files with content only when asked for one generation). */
export interface GenerationView {
  generation: number;
  adapter: string;
  settings: Record<string, unknown>;
  userIds: string[];
  files: { path: string; sha256: string; content?: string }[];
  origin: string;
  rollbackOf: number | null;
  actor: string;
  reason: string | null;
  outcome: GenerationOutcome;
  method: string | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  finishedAt: string | null;
}

/** One part of a diff between two generations. */
export interface GenerationDiffPart {
  /** A rendered file's path, or `settings` / `users` for the parts made from the generation record. */
  path: string;
  kind: 'file' | 'settings' | 'users';
  status: 'added' | 'removed' | 'changed' | 'unchanged';
  /** Unified diff (empty when unchanged; a note when too large to diff). */
  diff: string;
}

export interface RolloutView {
  id: string;
  adapter: string | null;
  settings: Record<string, unknown> | null;
  canary: number;
  batchSize: number;
  state: RolloutWithSteps['state'];
  haltReason: string | null;
  actor: string;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  steps: {
    position: number;
    stage: number;
    hostId: string;
    instance: string;
    state: ConfigRolloutStepRow['state'];
    generation: number | null;
    error: { code: string; message: string } | null;
    startedAt: string | null;
    finishedAt: string | null;
  }[];
}

/** What the proxies change stream tells the console. */
export type ProxyChange =
  | { type: 'node'; hostId: string; instance: string }
  | { type: 'rollout'; rolloutId: string; hostIds: string[] };

export interface ProxyNodesServiceDeps {
  hosts: HostRepository;
  nodes: ProxyNodeRepository;
  gateway: AgentGateway;
  audit: AuditService;
  bus: FleetBus;
  log: Logger;
  usersForNode?: UsersForNode;
  /** Host groups, for rollouts aimed at a group (absent: a group target is refused). */
  groups?: { get(id: string): Promise<unknown>; hostsOf(ids: readonly string[]): Promise<string[]> };
  now?: () => number;
  /** Generations kept per host and instance (the one it runs is always kept); default 200. */
  keepGenerations?: number;
}

/** Generations kept per host and instance unless `KEEL_PROXY_GENERATIONS_KEEP` says otherwise. */
export const DEFAULT_KEEP_GENERATIONS = 200;

/** How often a replica renews the heartbeat of the rollouts it runs, and sweeps for stale ones. */
export const ROLLOUT_HEARTBEAT_MS = 10_000;
/** A running rollout whose heartbeat is older than this has no live replica: it is halted. */
export const ROLLOUT_STALE_MS = 45_000;
/** A generation pending longer than this is past config.apply's 90 s deadline: nobody awaits it. */
export const PENDING_GENERATION_STALE_MS = 150_000;

/** Largest rollout (nodes). */
export const MAX_ROLLOUT_NODES = 10_000;
/** What a rollout is aimed at: nodes picked by hand, every node of a host group, or of a tag. */
export interface RolloutTargetInput {
  targets?: { hostId: string; instance: string }[];
  groupId?: string;
  tag?: string;
  /** With a group or tag: only nodes of this instance name. */
  instance?: string;
}

/** A file larger than this is not diffed line by line (a note says so). */
const MAX_DIFF_BYTES = 4 * 1024 * 1024;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** JSON with sorted keys and two-space indentation: the same settings always read the same. */
export function stableJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v as object)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2) + '\n';
}

/** What a failed push's error makes of the generation. */
function outcomeOf(code: string): Exclude<GenerationOutcome, 'pending' | 'applied'> {
  if (code === 'config.stale_generation' || code === 'config.invalid') return 'refused';
  if (code === 'config.unhealthy') return 'rolled-back';
  return 'failed';
}

function toGenerationView(row: GenerationSummary | GenerationRecord): GenerationView {
  return {
    generation: row.generation,
    adapter: row.adapter,
    settings: row.settings,
    userIds: row.userIds,
    files: row.files,
    origin: row.origin,
    rollbackOf: row.rollbackOf,
    actor: row.actor,
    reason: row.reason,
    outcome: row.outcome,
    method: row.method,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    createdAt: row.createdAt.toISOString(),
    finishedAt: iso(row.finishedAt),
  };
}

function toRolloutView(r: RolloutWithSteps): RolloutView {
  return {
    id: r.id,
    adapter: r.adapter,
    settings: r.settings,
    canary: r.canary,
    batchSize: r.batchSize,
    state: r.state,
    haltReason: r.haltReason,
    actor: r.actor,
    reason: r.reason,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
    finishedAt: iso(r.finishedAt),
    steps: r.steps.map((s) => ({
      position: s.position,
      stage: s.stage,
      hostId: s.hostId,
      instance: s.instance,
      state: s.state,
      generation: s.generation,
      error: s.errorCode ? { code: s.errorCode, message: s.errorMessage ?? '' } : null,
      startedAt: iso(s.startedAt),
      finishedAt: iso(s.finishedAt),
    })),
  };
}

/** Unified diff of two texts, or a note when they are too large to diff here. */
function unified(path: string, a: string, b: string, from: string, to: string): string {
  if (a.length + b.length > MAX_DIFF_BYTES) {
    return `(${path}: too large to diff here: ${a.length} -> ${b.length} bytes)\n`;
  }
  return createTwoFilesPatch(path, path, a, b, from, to, { context: 3 });
}

/** Parses a node's settings with its adapter's schema (defaults filled in); 400 with the first issue. */
export function parseSettings(adapter: string, settings: unknown): Record<string, unknown> {
  if (!(proxyAdapters as readonly string[]).includes(adapter)) {
    throw new KeelError('request.invalid', `adapter: must be one of ${proxyAdapters.join(', ')}`);
  }
  const parsed = adapterSettingsSchemas[adapter as ProxyAdapter].safeParse(settings);
  if (!parsed.success)
    throw new KeelError('request.invalid', `settings.${describeSchemaError(parsed.error)}`);
  return parsed.data as Record<string, unknown>;
}

/** Checks a node's public address (null clears it); 400 naming the field. */
export function parsePublicAddress(value: string | null | undefined): string | null | undefined {
  if (value === undefined || value === null) return value;
  if (value.trim() === '') return null;
  const parsed = proxyPublicAddressSchema.safeParse(value.trim());
  if (!parsed.success)
    throw new KeelError('request.invalid', `publicAddress: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** The ids of a users list, once per list (a fan-out pushes one list to every node). */
const userIdLists = new WeakMap<readonly ProxyUserSpec[], string[]>();
function idsOf(users: readonly ProxyUserSpec[]): string[] {
  let ids = userIdLists.get(users);
  if (!ids) userIdLists.set(users, (ids = users.map((u) => u.id)));
  return ids;
}

/** Proxy nodes, generations, rollouts and drift. */
export function createProxyNodesService(deps: ProxyNodesServiceDeps) {
  const { hosts, nodes, gateway, audit, bus, log } = deps;
  const now = deps.now ?? Date.now;
  const keep = Math.max(
    deps.keepGenerations ?? (Number(process.env.KEEL_PROXY_GENERATIONS_KEEP) || DEFAULT_KEEP_GENERATIONS),
    2,
  );
  let usersForNode: UsersForNode = deps.usersForNode ?? (async () => []);
  const changes = new EventEmitter();
  changes.setMaxListeners(0);
  const emit = (change: ProxyChange) => changes.emit('change', change);
  /** Per-node queue: pushes to one node go one at a time, so their numbers reach the agent in order. */
  const queues = new Map<string, Promise<unknown>>();
  /** Rollouts this process is running. */
  const running = new Map<string, Promise<void>>();
  let unsubscribe: (() => void) | null = null;
  let sweepTimer: NodeJS.Timeout | null = null;

  function serially<T>(hostId: string, instance: string, work: () => Promise<T>): Promise<T> {
    const key = `${hostId}\u0000${instance}`;
    const prev = queues.get(key) ?? Promise.resolve();
    const next = prev.then(work, work);
    const tail = next.catch(() => {});
    queues.set(key, tail);
    void tail.then(() => {
      if (queues.get(key) === tail) queues.delete(key);
    });
    return next;
  }

  async function usable(actor: ProxyActor, permission: Permission, hostId: string) {
    if (!isSystem(actor)) requireHostAccess(actor, permission, [hostId]);
    const host = await hosts.get(hostId);
    if (!host) throw new KeelError('host.not_found');
    return host;
  }

  async function nodeOf(hostId: string, instance: string): Promise<ProxyNodeRow> {
    const row = await nodes.getNode(hostId, instance);
    if (!row) throw new KeelError('proxy.node_not_found');
    return row;
  }

  async function view(
    row: ProxyNodeRow,
    hostName?: string,
    known?: GenerationSummary | null,
  ): Promise<ProxyNodeView> {
    const latest =
      known !== undefined ? known : (await nodes.listGenerations(row.hostId, row.instance, { limit: 1 }))[0];
    return {
      hostId: row.hostId,
      hostName: hostName ?? (await hosts.get(row.hostId))?.name ?? '',
      instance: row.instance,
      adapter: row.adapter,
      settings: row.settings,
      publicAddress: row.publicAddress,
      state: row.state,
      currentGeneration: row.currentGeneration,
      lastGeneration: row.lastGeneration,
      drift: row.drift.map((d) => ({ path: d.path, diff: d.diff, at: new Date(d.at).toISOString() })),
      latest: latest ? toGenerationView(latest) : null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
    };
  }

  const record = (
    actor: ProxyActor,
    action: string,
    hostId: string | null,
    detail: Record<string, unknown>,
  ) =>
    audit.record(
      actor.id,
      action,
      hostId ? `host:${hostId}` : null,
      detail,
      isSystem(actor) ? null : actor.ip,
    );

  /** The host's session is here, or on another replica that answers for it (bus/routing.ts). */
  const reachable = async (hostId: string): Promise<boolean> =>
    (await gateway.isReachable?.(hostId)) ?? gateway.isOnline(hostId);

  /**
   * Pushes `settings` (and the node's users now) as the node's next generation and stores the
   * outcome. Never throws for the agent's refusal: the caller decides (the API rethrows, a rollout
   * halts). Throws before anything is stored when the host is offline.
   */
  async function push(
    actor: ProxyActor,
    row: ProxyNodeRow,
    opts: {
      settings: Record<string, unknown>;
      origin: string;
      reason?: string | null;
      rollbackOf?: number | null;
    },
  ): Promise<{ generation: GenerationRecord; error: KeelError | null }> {
    const { hostId, instance } = row;
    if (!(await reachable(hostId))) throw new KeelError('host.offline');
    const users = await usersForNode(hostId, instance);
    const generation = await nodes.nextGeneration(hostId, instance);
    await nodes.insertGeneration({
      hostId,
      instance,
      generation,
      adapter: row.adapter,
      settings: opts.settings,
      userIds: idsOf(users),
      origin: opts.origin,
      rollbackOf: opts.rollbackOf ?? null,
      actor: actor.id,
      reason: opts.reason ?? null,
    });
    let error: KeelError | null = null;
    let stored: GenerationRecord | null;
    try {
      const result = await gateway.request(hostId, 'config.apply', {
        instance,
        adapter: row.adapter as ProxyAdapter,
        generation,
        settings: opts.settings,
        users,
        ...(opts.reason ? { reason: opts.reason.slice(0, 500) } : {}),
      });
      stored = await nodes.finishGeneration(hostId, instance, generation, {
        outcome: 'applied',
        files: result.files,
        method: result.method,
      });
      await nodes.markApplied(hostId, instance, generation, opts.settings);
    } catch (err) {
      error =
        err instanceof KeelError
          ? err
          : new KeelError('config.apply_failed', err instanceof Error ? err.message : String(err));
      stored = await nodes.finishGeneration(hostId, instance, generation, {
        outcome: outcomeOf(error.code),
        errorCode: error.code,
        errorMessage: error.message.slice(0, 4000),
      });
      await nodes.updateNode(hostId, instance, { state: 'failed' });
      if (error.code === 'config.stale_generation') await catchUp(hostId, instance);
    }
    await record(actor, 'config.apply', hostId, {
      instance,
      generation,
      origin: opts.origin,
      outcome: stored?.outcome ?? 'failed',
      ...(error ? { error: error.code } : {}),
      ...(opts.rollbackOf ? { rollbackOf: opts.rollbackOf } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
    });
    // Old generations go (each holds its rendered files: with many users, a large config).
    const after = await nodes.getNode(hostId, instance);
    await nodes.pruneGenerations(hostId, instance, keep, after?.currentGeneration ?? null);
    emit({ type: 'node', hostId, instance });
    return { generation: stored!, error };
  }

  /**
   * After a stale refusal the agent runs a number this database did not hand out (a restore from
   * an older backup, another controller): the counter moves past it so the next push is accepted.
   * The refused push itself stays refused.
   */
  async function catchUp(hostId: string, instance: string): Promise<void> {
    try {
      const status = await gateway.request(hostId, 'config.status', {});
      const mine = status.instances.find((i) => i.instance === instance);
      if (mine) await nodes.raiseGeneration(hostId, instance, mine.generation);
    } catch (err) {
      log.warn({ err, host: hostId, instance }, 'reading config status after a stale refusal failed');
    }
  }

  /**
   * Stores drift the agent reported on the event stream. The agent's own status is the authority
   * when it answers (an event may be a late replay of drift resolved since, and comparing the
   * agent's clock with ours would drop real edits on a host whose clock is behind); the event
   * itself is stored when the agent cannot be asked.
   */
  async function onDriftEvent(hostId: string, ts: number, payload: Record<string, unknown>): Promise<void> {
    const instance = proxyInstanceSchema.safeParse(payload.instance);
    if (!instance.success || typeof payload.path !== 'string' || typeof payload.diff !== 'string') return;
    const row = await nodes.getNode(hostId, instance.data);
    if (!row) return;
    const at = now();
    try {
      const status = await gateway.request(hostId, 'config.status', {});
      const mine = status.instances.find((i) => i.instance === row.instance);
      await nodes.setDrift(
        hostId,
        row.instance,
        (mine?.drift ?? []).map((d) => ({
          path: d.path,
          diff: d.diff,
          at: row.drift.find((o) => o.path === d.path)?.at ?? at,
        })),
        { replace: true },
      );
    } catch (err) {
      if (!(err instanceof KeelError)) throw err;
      const entry: DriftEntry = {
        path: payload.path.slice(0, 4096),
        diff: payload.diff.slice(0, 65_536),
        at: ts,
      };
      if (entry.diff === '') {
        // The file is back to what was applied.
        const rest = row.drift.filter((d) => d.path !== entry.path);
        await nodes.setDrift(hostId, row.instance, rest, { replace: true });
      } else {
        await nodes.setDrift(hostId, row.instance, [entry]);
      }
    }
    emit({ type: 'node', hostId, instance: row.instance });
  }

  function onBusEvent(event: FleetEvent): void {
    if (event.type !== 'stream.stored' || event.stream !== 'events') return;
    for (const r of event.records) {
      let payload: unknown;
      try {
        payload = JSON.parse(r.payload.toString('utf8'));
      } catch {
        continue;
      }
      if (!payload || typeof payload !== 'object') continue;
      const p = payload as Record<string, unknown>;
      if ((p.kind ?? p.type) !== 'config.drift') continue;
      onDriftEvent(event.hostId, r.ts, p).catch((err: unknown) =>
        log.error({ err, host: event.hostId }, 'storing config drift failed'),
      );
    }
  }

  async function runRollout(id: string): Promise<void> {
    await nodes.heartbeatRollouts([id], new Date(now()));
    for (;;) {
      const rollout = await nodes.getRollout(id);
      if (!rollout || rollout.state !== 'running') return;
      const todo = rollout.steps.filter((s) => s.state === 'pending' || s.state === 'interrupted');
      if (todo.length === 0) {
        await nodes.transitionRollout(id, ['running'], 'completed');
        emit({ type: 'rollout', rolloutId: id, hostIds: rollout.steps.map((s) => s.hostId) });
        return;
      }
      const stage = Math.min(...todo.map((s) => s.stage));
      const batch = todo.filter((s) => s.stage === stage);
      const actor: SystemActor = { system: true, id: rollout.actor };
      const failures = await Promise.all(
        batch.map(async (step) => {
          await nodes.updateStep(id, step.position, {
            state: 'running',
            startedAt: new Date(now()),
            errorCode: null,
            errorMessage: null,
          });
          emit({ type: 'rollout', rolloutId: id, hostIds: [step.hostId] });
          let failure: KeelError | null = null;
          let generation: number | null = null;
          try {
            const row = await nodeOf(step.hostId, step.instance);
            if (rollout.adapter && row.adapter !== rollout.adapter) {
              throw new KeelError('request.invalid', `The node runs ${row.adapter}, not ${rollout.adapter}.`);
            }
            const result = await serially(step.hostId, step.instance, async () =>
              push(actor, await nodeOf(step.hostId, step.instance), {
                settings: rollout.settings ?? row.settings,
                origin: 'rollout',
                reason: rollout.reason ?? `rollout ${id}`,
              }),
            );
            generation = result.generation.generation;
            failure = result.error;
          } catch (err) {
            failure =
              err instanceof KeelError
                ? err
                : new KeelError('config.apply_failed', err instanceof Error ? err.message : String(err));
          }
          await nodes.updateStep(id, step.position, {
            state: failure ? 'failed' : 'applied',
            generation,
            errorCode: failure?.code ?? null,
            errorMessage: failure ? failure.message.slice(0, 4000) : null,
            finishedAt: new Date(now()),
          });
          emit({ type: 'rollout', rolloutId: id, hostIds: [step.hostId] });
          return failure ? { step, failure } : null;
        }),
      );
      const failed = failures.find((f) => f !== null);
      if (failed) {
        const host = (await hosts.get(failed.step.hostId))?.name ?? failed.step.hostId;
        await nodes.transitionRollout(
          id,
          ['running'],
          'halted',
          `${host}/${failed.step.instance}: ${failed.failure.code}: ${failed.failure.message}`.slice(0, 2000),
        );
        emit({ type: 'rollout', rolloutId: id, hostIds: rollout.steps.map((s) => s.hostId) });
        return;
      }
    }
  }

  function launch(id: string): void {
    if (running.has(id)) return;
    const run = runRollout(id)
      .catch(async (err: unknown) => {
        log.error({ err, rollout: id }, 'rollout stopped by an error');
        await nodes
          .transitionRollout(id, ['running'], 'halted', `controller error: ${String(err)}`.slice(0, 2000))
          .catch(() => {});
      })
      .finally(() => running.delete(id));
    running.set(id, run);
  }

  /**
   * The nodes a rollout is aimed at. Nodes picked by hand must all be on hosts the actor may apply
   * configs to (403 otherwise); a group or tag may reach hosts the actor may not, whose nodes are
   * left out and counted (`left`), as a job run on a group does. With settings, a group or tag
   * takes only the nodes of that adapter (a group mixing nginx and v2ray gets v2ray settings on
   * its v2ray nodes); `instance` narrows it to one instance name.
   */
  async function resolveTargets(
    actor: ProxyUserActor,
    input: RolloutTargetInput & { adapter?: string; settings?: unknown },
  ): Promise<{ targets: { hostId: string; instance: string }[]; left: number; label: string | null }> {
    const kinds = [input.targets !== undefined, input.groupId !== undefined, input.tag !== undefined];
    if (kinds.filter(Boolean).length !== 1) {
      throw new KeelError('request.invalid', 'targets, groupId or tag: exactly one of them');
    }
    if (input.targets) return { targets: input.targets, left: 0, label: null };
    let hostIds: string[];
    let label: string;
    if (input.groupId) {
      const group = deps.groups ? ((await deps.groups.get(input.groupId)) as { name?: string } | null) : null;
      if (!deps.groups || !group) throw new KeelError('group.not_found');
      hostIds = await deps.groups.hostsOf([input.groupId]);
      label = `group ${group.name ?? input.groupId}`;
    } else {
      hostIds = await nodes.hostsTagged(input.tag!);
      label = `tag ${input.tag!}`;
    }
    if (input.instance) label += `, instance ${input.instance}`;
    const reach = new Set(hostIds);
    let left = 0;
    const targets: { hostId: string; instance: string }[] = [];
    const names = new Map((await hosts.list()).map((h) => [h.id, h]));
    for (const row of await nodes.listNodes()) {
      if (!reach.has(row.hostId)) continue;
      if (input.instance && row.instance !== input.instance) continue;
      if (input.settings !== undefined && input.adapter && row.adapter !== input.adapter) continue;
      if (!input.settings && input.adapter && row.adapter !== input.adapter) continue;
      const host = names.get(row.hostId);
      if (!host || host.revokedAt) continue;
      if (!canSeeHost(actor, row.hostId) || !hasHostPermission(actor, 'config.apply', row.hostId)) {
        left++;
        continue;
      }
      targets.push({ hostId: row.hostId, instance: row.instance });
    }
    // In the order a person reads them: by host name, then instance.
    targets.sort(
      (a, b) =>
        (names.get(a.hostId)?.name ?? '').localeCompare(names.get(b.hostId)?.name ?? '') ||
        a.instance.localeCompare(b.instance),
    );
    if (targets.length === 0) {
      throw new KeelError(
        'request.invalid',
        `${input.groupId ? 'groupId' : 'tag'}: no proxy node${input.instance ? ` named ${input.instance}` : ''}${input.adapter ? ` running ${input.adapter}` : ''} on its hosts that you may apply to`,
      );
    }
    return { targets, left, label };
  }

  async function visibleRollout(actor: Actor, id: string): Promise<RolloutWithSteps> {
    const r = await nodes.getRollout(id);
    if (!r || !r.steps.every((s) => canSeeHost(actor, s.hostId)))
      throw new KeelError('proxy.rollout_not_found');
    return r;
  }

  /**
   * Renews the heartbeat of the rollouts this replica runs, then halts running rollouts nobody
   * renewed for ROLLOUT_STALE_MS (their controller stopped) and fails generations pending past any
   * deadline. Another live replica's rollouts and pushes are left alone.
   */
  async function sweep(): Promise<void> {
    await nodes.heartbeatRollouts([...running.keys()], new Date(now()));
    const halted = await nodes.haltInterrupted(
      'the controller stopped while the rollout ran; resume it',
      new Date(now() - ROLLOUT_STALE_MS),
    );
    if (halted.length > 0) {
      log.warn({ rollouts: halted }, 'rollouts halted: the controller running them stopped');
      for (const id of halted) {
        const r = await nodes.getRollout(id);
        if (r) emit({ type: 'rollout', rolloutId: id, hostIds: r.steps.map((s) => s.hostId) });
      }
    }
    await nodes.failPendingGenerations(
      'The controller stopped before the agent answered; whether it applied is unknown (the node shows what the agent runs after the next push or status read).',
      new Date(now() - PENDING_GENERATION_STALE_MS),
    );
  }

  return {
    /**
     * Subscribes to drift events; halts rollouts whose controller stopped (no heartbeat for
     * ROLLOUT_STALE_MS) now and every ROLLOUT_HEARTBEAT_MS, while renewing its own rollouts'.
     */
    async start(): Promise<void> {
      unsubscribe ??= bus.subscribe(onBusEvent);
      await sweep();
      sweepTimer ??= setInterval(() => {
        sweep().catch((err: unknown) => log.error({ err }, 'proxy rollout sweep failed'));
      }, ROLLOUT_HEARTBEAT_MS);
      sweepTimer.unref();
    },

    /** Stops listening and waits for rollouts this process runs to reach a stored state. */
    async stop(): Promise<void> {
      unsubscribe?.();
      unsubscribe = null;
      if (sweepTimer) clearInterval(sweepTimer);
      sweepTimer = null;
      await Promise.allSettled([...running.values()]);
    },

    /** Sets where a node's users come from (the proxy users service, once built). */
    setUsersProvider(provider: UsersForNode): void {
      usersForNode = provider;
    },

    /** Live changes for the console (node changed, rollout progressed). Returns the unsubscribe. */
    subscribe(listener: (change: ProxyChange) => void): () => void {
      changes.on('change', listener);
      return () => changes.off('change', listener);
    },

    /** Every node the actor may see (the fleet page), or one host's. */
    async list(actor: ProxyUserActor, hostId?: string): Promise<ProxyNodeView[]> {
      if (hostId) await usable(actor, 'host.view', hostId);
      else requireAccess(actor, 'host.view');
      const names = new Map((await hosts.list()).map((h) => [h.id, h.name]));
      const rows = (await nodes.listNodes(hostId ? { hostId } : {})).filter((r) =>
        canSeeHost(actor, r.hostId),
      );
      // The newest generation of every node in one query, not one per node.
      const latest = new Map(
        (await nodes.latestGenerations(hostId ? { hostId } : {})).map((g) => [
          `${g.hostId}/${g.instance}`,
          g,
        ]),
      );
      const views = await Promise.all(
        rows.map((r) => view(r, names.get(r.hostId), latest.get(`${r.hostId}/${r.instance}`) ?? null)),
      );
      return views.sort(
        (a, b) => a.hostName.localeCompare(b.hostName) || a.instance.localeCompare(b.instance),
      );
    },

    async get(actor: ProxyUserActor, hostId: string, instance: string): Promise<ProxyNodeView> {
      const host = await usable(actor, 'host.view', hostId);
      return view(await nodeOf(hostId, instance), host.name);
    },

    /** Creates a node (settings validated with the adapter's schema); nothing is pushed yet. */
    async create(
      actor: ProxyUserActor,
      hostId: string,
      input: { instance: string; adapter: string; settings: unknown; publicAddress?: string | null },
    ): Promise<ProxyNodeView> {
      const host = await usable(actor, 'config.apply', hostId);
      if (host.revokedAt) throw new KeelError('host.revoked');
      const instance = proxyInstanceSchema.safeParse(input.instance);
      if (!instance.success)
        throw new KeelError('request.invalid', `instance: ${instance.error.issues[0]?.message}`);
      const settings = parseSettings(input.adapter, input.settings);
      const publicAddress = parsePublicAddress(input.publicAddress) ?? null;
      const row = await nodes.createNode({
        hostId,
        instance: instance.data,
        adapter: input.adapter,
        settings,
        publicAddress,
      });
      await record(actor, 'proxy.node.create', hostId, {
        instance: row.instance,
        adapter: row.adapter,
        ...(publicAddress ? { publicAddress } : {}),
      });
      emit({ type: 'node', hostId, instance: row.instance });
      return view(row, host.name);
    },

    /**
     * Replaces a node's settings (and adapter) and/or its public address. New settings make it
     * `pending` until pushed; a public address alone changes only links and subscriptions.
     */
    async update(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      input: { adapter?: string; settings?: unknown; publicAddress?: string | null },
    ): Promise<ProxyNodeView> {
      const host = await usable(actor, 'config.apply', hostId);
      const current = await nodeOf(hostId, instance);
      const adapter = input.adapter ?? current.adapter;
      if (input.settings === undefined && adapter !== current.adapter) {
        throw new KeelError('request.invalid', 'settings: required when the adapter changes');
      }
      const settings = input.settings === undefined ? undefined : parseSettings(adapter, input.settings);
      const publicAddress = parsePublicAddress(input.publicAddress);
      // New settings wait for a push (as before, even when equal: the admin asked for them).
      const configChanged = settings !== undefined;
      const row = await nodes.updateNode(hostId, instance, {
        ...(settings !== undefined ? { adapter, settings } : {}),
        ...(configChanged ? { state: 'pending' as const } : {}),
        ...(publicAddress !== undefined ? { publicAddress } : {}),
      });
      if (!row) throw new KeelError('proxy.node_not_found');
      await record(actor, 'proxy.node.update', hostId, {
        instance,
        adapter,
        ...(settings !== undefined ? { settings: 'replaced' } : {}),
        ...(publicAddress !== undefined && publicAddress !== current.publicAddress
          ? { publicAddress: { from: current.publicAddress, to: publicAddress } }
          : {}),
      });
      emit({ type: 'node', hostId, instance });
      return view(row, host.name);
    },

    /** Forgets a node (its generations stay as history; the agent keeps running what it has). */
    async remove(actor: ProxyUserActor, hostId: string, instance: string): Promise<void> {
      await usable(actor, 'config.apply', hostId);
      if (!(await nodes.deleteNode(hostId, instance))) throw new KeelError('proxy.node_not_found');
      await record(actor, 'proxy.node.delete', hostId, { instance });
      emit({ type: 'node', hostId, instance });
    },

    /**
     * Pushes the node's settings and its users as the next generation. Resolves with the stored
     * generation when the agent applied it; rejects with the agent's error (the refused generation
     * is stored too).
     *
     * @example await proxyNodes.apply(actor, hostId, 'edge', { reason: 'new site' })
     */
    async apply(
      actor: ProxyActor,
      hostId: string,
      instance: string,
      opts: { reason?: string } = {},
    ): Promise<GenerationView> {
      const host = await usable(actor, 'config.apply', hostId);
      if (host.revokedAt) throw new KeelError('host.revoked');
      return serially(hostId, instance, async () => {
        const row = await nodeOf(hostId, instance);
        const { generation, error } = await push(actor, row, {
          settings: row.settings,
          origin: isSystem(actor) ? 'users' : 'apply',
          reason: opts.reason,
        });
        if (error) throw error;
        return toGenerationView(generation);
      });
    },

    /**
     * Re-pushes an old generation's settings as a new generation, with the node's users as they
     * are now (a user removed for its quota or expiry since then stays removed).
     */
    async rollback(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      target: number,
      opts: { reason?: string } = {},
    ): Promise<GenerationView> {
      const host = await usable(actor, 'config.apply', hostId);
      if (host.revokedAt) throw new KeelError('host.revoked');
      return serially(hostId, instance, async () => {
        const row = await nodeOf(hostId, instance);
        const old = await nodes.getGeneration(hostId, instance, target);
        if (!old) throw new KeelError('proxy.generation_not_found');
        if (old.adapter !== row.adapter) {
          throw new KeelError(
            'request.invalid',
            `Generation ${target} is a ${old.adapter} configuration; this node runs ${row.adapter}.`,
          );
        }
        const settings = parseSettings(row.adapter, old.settings);
        const { generation, error } = await push(actor, row, {
          settings,
          origin: 'rollback',
          rollbackOf: target,
          reason: opts.reason ?? `rollback to generation ${target}`,
        });
        if (error) throw error;
        return toGenerationView(generation);
      });
    },

    /** The node's generations, newest first (files without content). */
    async generations(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      q: { before?: number; limit: number },
    ): Promise<GenerationView[]> {
      await usable(actor, 'host.view', hostId);
      const rows = await nodes.listGenerations(hostId, instance, q);
      if (rows.length === 0 && !(await nodes.getNode(hostId, instance)))
        throw new KeelError('proxy.node_not_found');
      return rows.map(toGenerationView);
    },

    /** One generation with the rendered files' content. */
    async generation(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      generation: number,
    ): Promise<GenerationView> {
      await usable(actor, 'host.view', hostId);
      const row = await nodes.getGeneration(hostId, instance, generation);
      if (!row) throw new KeelError('proxy.generation_not_found');
      return toGenerationView(row);
    },

    /**
     * What changed from generation `from` to `to`: each rendered file as a unified diff, and the
     * settings and user list (so a push the agent refused, which has no files, still shows what
     * it would have changed).
     */
    async diff(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      from: number,
      to: number,
    ): Promise<{ from: number; to: number; parts: GenerationDiffPart[] }> {
      await usable(actor, 'host.view', hostId);
      const [a, b] = await Promise.all([
        nodes.getGeneration(hostId, instance, from),
        nodes.getGeneration(hostId, instance, to),
      ]);
      if (!a || !b) throw new KeelError('proxy.generation_not_found');
      const labelA = `generation ${from}`;
      const labelB = `generation ${to}`;
      const part = (
        path: string,
        kind: GenerationDiffPart['kind'],
        x: string | undefined,
        y: string | undefined,
      ): GenerationDiffPart => {
        const status =
          x === undefined ? 'added' : y === undefined ? 'removed' : x === y ? 'unchanged' : 'changed';
        return {
          path,
          kind,
          status,
          diff: status === 'unchanged' ? '' : unified(path, x ?? '', y ?? '', labelA, labelB),
        };
      };
      const filesA = new Map(a.files.map((f: RenderedFile) => [f.path, f.content]));
      const filesB = new Map(b.files.map((f: RenderedFile) => [f.path, f.content]));
      const paths = [...new Set([...filesA.keys(), ...filesB.keys()])].sort();
      return {
        from,
        to,
        parts: [
          part(
            'settings',
            'settings',
            stableJson({ adapter: a.adapter, ...a.settings }),
            stableJson({ adapter: b.adapter, ...b.settings }),
          ),
          part(
            'users',
            'users',
            [...a.userIds].sort().join('\n') + '\n',
            [...b.userIds].sort().join('\n') + '\n',
          ),
          ...paths.map((p) => part(p, 'file', filesA.get(p), filesB.get(p))),
        ],
      };
    },

    /**
     * The node's drift: read from the agent when the host is online (and stored), else what was
     * stored from its events.
     */
    async drift(actor: ProxyUserActor, hostId: string, instance: string): Promise<ProxyNodeView> {
      const host = await usable(actor, 'host.view', hostId);
      let row = await nodeOf(hostId, instance);
      if (await reachable(hostId)) {
        try {
          const status = await gateway.request(hostId, 'config.status', {});
          const mine = status.instances.find((i) => i.instance === instance);
          const at = now();
          row =
            (await nodes.setDrift(
              hostId,
              instance,
              (mine?.drift ?? []).map((d) => ({
                path: d.path,
                diff: d.diff,
                at: row.drift.find((o) => o.path === d.path)?.at ?? at,
              })),
              { replace: true },
            )) ?? row;
        } catch (err) {
          if (!(err instanceof KeelError)) throw err;
          log.warn({ err, host: hostId, instance }, 'reading config status failed; showing stored drift');
        }
      }
      return view(row, host.name);
    },

    /**
     * Resolves drift: `adopt` keeps the host's edit and stores it as a new generation made by host
     * edit; `overwrite` has the agent write the applied generation back.
     */
    async resolveDrift(
      actor: ProxyUserActor,
      hostId: string,
      instance: string,
      action: 'adopt' | 'overwrite',
    ): Promise<ProxyNodeView> {
      const host = await usable(actor, 'config.apply', hostId);
      if (!(await reachable(hostId))) throw new KeelError('host.offline');
      return serially(hostId, instance, async () => {
        const row = await nodeOf(hostId, instance);
        const result = await gateway.request(hostId, 'config.drift.resolve', { instance, action });
        let generation: number | null = null;
        if (action === 'adopt') {
          generation = await nodes.nextGeneration(hostId, instance);
          const current =
            row.currentGeneration !== null
              ? await nodes.getGeneration(hostId, instance, row.currentGeneration)
              : null;
          await nodes.insertGeneration({
            hostId,
            instance,
            generation,
            adapter: row.adapter,
            settings: row.settings,
            userIds: current?.userIds ?? [],
            origin: 'host-edit',
            actor: actor.id,
            reason: 'adopted a local edit on the host',
            outcome: 'applied',
            files: result.files,
          });
          await nodes.markApplied(hostId, instance, generation, row.settings);
        }
        const after = (await nodes.setDrift(hostId, instance, [], { replace: true })) ?? row;
        await record(actor, `config.drift.${action}`, hostId, {
          instance,
          paths: row.drift.map((d) => d.path),
          ...(generation ? { generation } : {}),
        });
        emit({ type: 'node', hostId, instance });
        return view(after, host.name);
      });
    },

    /**
     * Starts a staged rollout: the first `canary` nodes one stage, then stages of `batchSize`
     * nodes; each stage runs in parallel and the rollout halts after a stage in which any node
     * failed. With `settings`, every node gets them (all nodes must run `adapter`); without, each
     * node's own settings are pushed again (e.g. after a users change).
     */
    async startRollout(
      actor: ProxyUserActor,
      input: RolloutTargetInput & {
        adapter?: string;
        settings?: unknown;
        canary?: number;
        batchSize?: number;
        reason?: string;
      },
    ): Promise<RolloutView> {
      requireAccess(actor, 'config.apply');
      const picked = await resolveTargets(actor, input);
      const seen = new Set<string>();
      const targets = picked.targets.filter((t) => {
        const key = `${t.hostId}\u0000${t.instance}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      if (targets.length === 0) throw new KeelError('request.invalid', 'targets: at least one node');
      if (targets.length > MAX_ROLLOUT_NODES) {
        throw new KeelError('request.invalid', `targets: at most ${MAX_ROLLOUT_NODES} nodes`);
      }
      requireHostAccess(actor, 'config.apply', [...new Set(targets.map((t) => t.hostId))]);
      let settings: Record<string, unknown> | null = null;
      if (input.settings !== undefined) {
        if (!input.adapter) throw new KeelError('request.invalid', 'adapter: required with settings');
        settings = parseSettings(input.adapter, input.settings);
      }
      for (const t of targets) {
        const row = await nodes.getNode(t.hostId, t.instance);
        if (!row)
          throw new KeelError('proxy.node_not_found', `No proxy node ${t.instance} on host ${t.hostId}.`);
        if (settings && row.adapter !== input.adapter) {
          throw new KeelError(
            'request.invalid',
            `${t.instance} on host ${t.hostId} runs ${row.adapter}, not ${input.adapter}.`,
          );
        }
      }
      const canary = Math.min(Math.max(input.canary ?? 1, 0), targets.length);
      const batchSize = Math.max(input.batchSize ?? 5, 1);
      const steps = targets.map((t, i) => ({
        ...t,
        stage: i < canary ? 0 : 1 + Math.floor((i - canary) / batchSize),
      }));
      const rollout = await nodes.createRollout(
        {
          adapter: settings ? input.adapter! : null,
          settings,
          canary,
          batchSize,
          actor: actor.id,
          reason: input.reason ?? (picked.label ? `rollout to ${picked.label}` : null),
        },
        steps,
      );
      await record(actor, 'config.rollout.start', null, {
        rollout: rollout.id,
        ...(input.groupId ? { groupId: input.groupId } : {}),
        ...(input.tag ? { tag: input.tag } : {}),
        ...(input.instance && (input.groupId || input.tag) ? { instance: input.instance } : {}),
        ...(picked.left > 0 ? { leftOut: picked.left } : {}),
        nodes: targets.length,
        canary,
        batchSize,
        withSettings: settings !== null,
        ...(input.reason ? { reason: input.reason } : {}),
      });
      emit({ type: 'rollout', rolloutId: rollout.id, hostIds: targets.map((t) => t.hostId) });
      launch(rollout.id);
      return toRolloutView(rollout);
    },

    /** Continues a halted rollout: its failed and interrupted nodes are tried again first. */
    async resumeRollout(actor: ProxyUserActor, id: string): Promise<RolloutView> {
      requireAccess(actor, 'config.apply');
      const r = await visibleRollout(actor, id);
      requireHostAccess(actor, 'config.apply', [...new Set(r.steps.map((s) => s.hostId))]);
      if (running.has(id) || !(await nodes.transitionRollout(id, ['halted'], 'running'))) {
        throw new KeelError(
          'proxy.rollout_state',
          `The rollout is ${r.state}; only a halted rollout resumes.`,
        );
      }
      for (const s of r.steps) {
        if (s.state === 'failed' || s.state === 'interrupted')
          await nodes.updateStep(id, s.position, { state: 'pending' });
      }
      await record(actor, 'config.rollout.resume', null, { rollout: id });
      launch(id);
      emit({ type: 'rollout', rolloutId: id, hostIds: r.steps.map((s) => s.hostId) });
      return toRolloutView((await nodes.getRollout(id))!);
    },

    /** Stops a running or halted rollout for good (a stage in flight finishes first). */
    async cancelRollout(actor: ProxyUserActor, id: string): Promise<RolloutView> {
      requireAccess(actor, 'config.apply');
      const r = await visibleRollout(actor, id);
      if (!(await nodes.transitionRollout(id, ['running', 'halted'], 'cancelled', 'cancelled'))) {
        throw new KeelError('proxy.rollout_state', `The rollout is ${r.state}.`);
      }
      await record(actor, 'config.rollout.cancel', null, { rollout: id });
      emit({ type: 'rollout', rolloutId: id, hostIds: r.steps.map((s) => s.hostId) });
      return toRolloutView((await nodes.getRollout(id))!);
    },

    async rollout(actor: ProxyUserActor, id: string): Promise<RolloutView> {
      requireAccess(actor, 'host.view');
      return toRolloutView(await visibleRollout(actor, id));
    },

    /** The newest rollouts the actor may see (every node of theirs visible). */
    async rollouts(actor: ProxyUserActor, limit: number): Promise<RolloutView[]> {
      requireAccess(actor, 'host.view');
      return (await nodes.listRollouts(limit))
        .filter((r) => r.steps.every((s) => canSeeHost(actor, s.hostId)))
        .map(toRolloutView);
    },

    /** Waits for the rollouts this process runs (tests). */
    async settled(): Promise<void> {
      while (running.size > 0) await Promise.allSettled([...running.values()]);
    },
  };
}

export type ProxyNodesService = ReturnType<typeof createProxyNodesService>;
