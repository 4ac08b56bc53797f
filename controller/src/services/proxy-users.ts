// Proxy users as a rule (Marzban-style): who may see and change them (`proxy.users.manage` for
// one's own, `proxy.users.all` for everyone's; placing a user on a node needs `config.apply` on
// its host), generated secrets, limits and status, links and subscriptions, and fleet-wide
// traffic: a scraper reads every node's counters each KEEL_PROXY_SCRAPE_SECONDS, sums the deltas
// per user over all nodes, marks a user over its limit `limited` (past its expiry `expired`) and
// takes it off every node at once; periods reset usage. Every change re-applies the nodes the
// user is (or was) on through the proxy nodes service, coalesced: a burst of changes is one apply
// per node. Every mutating action is audited. See docs/proxies.md, "Proxy users and links".
import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  checkedUserList,
  KeelError,
  PROXY_USER_ID_PATTERN,
  base64Subscription,
  clashProfile,
  shareLink,
  singBoxProfile,
  subscriptionUserinfo,
  tmeProxyLink,
  type ProxyEndpoint,
  type ProxyUserSpec,
} from '@keel/shared';
import type {
  ActiveProxyUser,
  NodeDescription,
  NodeKey,
  ProxyUserNodeRow,
  ProxyUserPlace,
  ProxyUserRow,
  ProxyUsersRepository,
  ProxyUserStatus,
} from '../repositories/proxy-users.ts';
import { hasHostPermission, hasPermission, requireAccess, requireHostAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';

/** A person (or API token) acting, with the address for the audit trail. */
export type ProxyUsersActor = Actor & { ip: string | null };

/** Keel itself (quota, expiry, resets): what the proxy nodes service accepts as a system actor. */
export const PROXY_USERS_SYSTEM = { system: true as const, id: 'system:proxy-users' };

/** The part of the proxy nodes service this one uses (A2's `apply`). */
export interface ProxyNodeApplier {
  apply(
    actor: typeof PROXY_USERS_SYSTEM,
    hostId: string,
    instance: string,
    opts: { reason?: string },
  ): Promise<unknown>;
}

/** Reads one node's per-user counters (the agent's `config.traffic`). */
export type TrafficReader = (
  node: NodeKey,
) => Promise<{ counterEpoch: string; users: { id: string; upBytes: number; downBytes: number }[] }>;

export const resetPeriods = ['none', 'daily', 'weekly', 'monthly'] as const;
export const proxyUserStatuses = ['active', 'disabled', 'limited', 'expired'] as const;

/** Adapters that serve proxy users (nginx serves sites, not users). */
const USER_ADAPTERS = new Set(['v2ray', 'shadowsocks', 'telemt']);

/** What create and update take. */
export interface ProxyUserInput {
  name?: string;
  status?: 'active' | 'disabled';
  dataLimitBytes?: number | null;
  resetPeriod?: (typeof resetPeriods)[number];
  expiresAt?: string | null;
  maxConnections?: number | null;
  maxUniqueIps?: number | null;
  note?: string;
  nodes?: { hostId: string; instance: string; inbounds?: string[] | null }[];
  /** Only when the caller holds proxy.users.all: give the user to another console user. */
  ownerId?: string | null;
}

/** A proxy user as the API shows it. */
export interface ProxyUserView {
  id: string;
  name: string;
  ownerId: string | null;
  status: ProxyUserStatus;
  secret: string;
  uuid: string;
  password: string;
  dataLimitBytes: number | null;
  resetPeriod: (typeof resetPeriods)[number];
  lastResetAt: string;
  expiresAt: string | null;
  maxConnections: number | null;
  maxUniqueIps: number | null;
  note: string;
  usedUpBytes: number;
  usedDownBytes: number;
  usedBytes: number;
  lifetimeBytes: number;
  lastSeenAt: string | null;
  createdAt: string;
  updatedAt: string;
  nodes: { hostId: string; instance: string; inbounds: string[] | null; port: number | null }[];
  subscriptionUrl: string;
}

/** One share link of a user. */
export interface ProxyUserLink {
  hostId: string;
  hostName: string;
  instance: string;
  protocol: ProxyEndpoint['protocol'];
  /** The inbound tag (v2ray), else null. */
  inbound: string | null;
  name: string;
  link: string;
  /** The https://t.me/proxy form (MTProxy only). */
  webLink: string | null;
}

export interface ProxyUsersServiceDeps {
  repo: ProxyUsersRepository;
  audit: AuditService;
  log: Logger;
  /** The controller's public URL (subscription links). */
  publicUrl: string;
  /** Reads a node's counters; absent: no scraping. */
  readTraffic?: TrafficReader;
  /** Whether a host has a live agent session (offline nodes are not scraped). */
  isOnline?: (hostId: string) => boolean;
  now?: () => Date;
  /** How long changes gather before their nodes are applied (default 100 ms). */
  coalesceMs?: number;
  /** Seconds between scrapes (default KEEL_PROXY_SCRAPE_SECONDS or 30). */
  scrapeSeconds?: number;
  /** Nodes applied at once in one batch (default 8). */
  applyConcurrency?: number;
}

const nodeKey = (n: NodeKey) => `${n.hostId}/${n.instance}`;

/** KEEL_PROXY_SCRAPE_SECONDS (default 30, at least 1). */
export function scrapeSecondsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.KEEL_PROXY_SCRAPE_SECONDS ?? 30);
  return Number.isFinite(v) && v >= 1 ? v : 30;
}

/** A new MTProxy secret: 32 lower-case hex. */
export const newSecret = (): string => randomBytes(16).toString('hex');
/** A new Trojan/Shadowsocks password: 24 base64url characters (144 bits). */
export const newPassword = (): string => randomBytes(18).toString('base64url');
/** A new subscription token: 32 random bytes, base64url. */
export const newSubscriptionToken = (): string => randomBytes(32).toString('base64url');

/** v2ray's cipher names -> the names share links and clients use. */
const SS_METHOD_NAMES: Record<string, string> = { 'chacha20-poly1305': 'chacha20-ietf-poly1305' };

/**
 * The endpoints one user has on one node, from the node's adapter and settings (the shapes of
 * `adapterSettingsSchemas` in shared/src/messages/configs.ts), read tolerantly: a node whose
 * settings lack what a link needs gives no link rather than a wrong one.
 */
export function endpointsOf(
  user: Pick<ProxyUserRow, 'name' | 'secret' | 'uuid' | 'password'>,
  node: NodeDescription,
  place: Pick<ProxyUserNodeRow, 'inbounds' | 'port'>,
): (ProxyEndpoint & { inbound: string | null })[] {
  const s = node.settings as Record<string, unknown>;
  // The node's public address when set (behind NAT or a CDN), else the host's name.
  const server = node.publicAddress ?? node.hostName;
  const label = (suffix: string) => `${user.name}@${node.hostName}-${suffix}`;
  if (node.adapter === 'telemt') {
    const modes = (s.modes ?? {}) as { tls?: boolean };
    const tlsDomain = typeof s.tlsDomain === 'string' && modes.tls !== false ? s.tlsDomain : undefined;
    return [
      {
        protocol: 'mtproto',
        name: label(node.instance),
        server,
        port: typeof s.port === 'number' ? s.port : 443,
        secret: user.secret,
        ...(tlsDomain ? { tlsDomain } : {}),
        inbound: null,
      },
    ];
  }
  if (node.adapter === 'shadowsocks') {
    if (place.port === null) return [];
    return [
      {
        protocol: 'shadowsocks',
        name: label(node.instance),
        server,
        port: place.port,
        method: typeof s.method === 'string' ? s.method : 'chacha20-ietf-poly1305',
        password: user.password,
        inbound: null,
      },
    ];
  }
  if (node.adapter === 'v2ray' && Array.isArray(s.inbounds)) {
    const out: (ProxyEndpoint & { inbound: string | null })[] = [];
    for (const raw of s.inbounds as Record<string, unknown>[]) {
      const tag = String(raw.tag);
      if (place.inbounds && !place.inbounds.includes(tag)) continue;
      const port = Number(raw.port);
      const tls = raw.tls !== undefined && raw.tls !== null;
      const transport = {
        network: raw.network === 'ws' ? ('ws' as const) : ('tcp' as const),
        security: tls ? ('tls' as const) : ('none' as const),
        ...(tls ? { sni: server } : {}),
        ...(raw.network === 'ws' ? { path: typeof raw.wsPath === 'string' ? raw.wsPath : '/' } : {}),
      };
      const base = { name: label(tag), server, port, inbound: tag };
      if (raw.protocol === 'vless') out.push({ ...base, protocol: 'vless', uuid: user.uuid, transport });
      else if (raw.protocol === 'vmess') out.push({ ...base, protocol: 'vmess', uuid: user.uuid, transport });
      else if (raw.protocol === 'trojan')
        out.push({ ...base, protocol: 'trojan', password: user.password, transport });
      else if (raw.protocol === 'shadowsocks') {
        const method = typeof raw.method === 'string' ? raw.method : 'chacha20-poly1305';
        out.push({
          ...base,
          protocol: 'shadowsocks',
          method: SS_METHOD_NAMES[method] ?? method,
          password: user.password,
        });
      }
    }
    return out;
  }
  return [];
}

/** Proxy users: CRUD, links, subscriptions, traffic and enforcement. */
export function createProxyUsersService(deps: ProxyUsersServiceDeps) {
  const { repo, audit, log } = deps;
  const now = deps.now ?? (() => new Date());
  const coalesceMs = deps.coalesceMs ?? 100;
  const concurrency = deps.applyConcurrency ?? 8;
  let applier: ProxyNodeApplier | null = null;

  // ---- access ------------------------------------------------------------------------------

  const seesAll = (actor: Actor) => hasPermission(actor, 'proxy.users.all');

  async function owned(actor: ProxyUsersActor, id: string): Promise<ProxyUserRow> {
    requireAccess(actor, 'proxy.users.manage');
    const row = /^[0-9a-f-]{36}$/i.test(id) ? await repo.get(id) : null;
    // Someone else's user is as absent as a missing one (its existence is not told).
    if (!row || (!seesAll(actor) && row.ownerId !== actor.id)) throw new KeelError('proxy.user_not_found');
    return row;
  }

  // ---- views -------------------------------------------------------------------------------

  const subscriptionUrl = (token: string) => `${deps.publicUrl.replace(/\/$/, '')}/sub/${token}`;

  function view(row: ProxyUserRow, nodes: ProxyUserNodeRow[]): ProxyUserView {
    return {
      id: row.id,
      name: row.name,
      ownerId: row.ownerId,
      status: row.status,
      secret: row.secret,
      uuid: row.uuid,
      password: row.password,
      dataLimitBytes: row.dataLimitBytes,
      resetPeriod: row.resetPeriod,
      lastResetAt: row.lastResetAt.toISOString(),
      expiresAt: row.expiresAt?.toISOString() ?? null,
      maxConnections: row.maxConnections,
      maxUniqueIps: row.maxUniqueIps,
      note: row.note,
      usedUpBytes: row.usedUpBytes,
      usedDownBytes: row.usedDownBytes,
      usedBytes: row.usedUpBytes + row.usedDownBytes,
      lifetimeBytes: row.lifetimeBytes,
      lastSeenAt: row.lastSeenAt?.toISOString() ?? null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      nodes: nodes
        .filter((n) => n.userId === row.id)
        .map((n) => ({ hostId: n.hostId, instance: n.instance, inbounds: n.inbounds, port: n.port })),
      subscriptionUrl: subscriptionUrl(row.subscriptionToken),
    };
  }

  async function viewOf(row: ProxyUserRow): Promise<ProxyUserView> {
    return view(row, await repo.nodesOf([row.id]));
  }

  /** The status a user should have from its limits (a disabled one stays disabled). */
  function statusFor(
    row: Pick<ProxyUserRow, 'status' | 'expiresAt' | 'dataLimitBytes' | 'usedUpBytes' | 'usedDownBytes'>,
  ): ProxyUserStatus {
    if (row.status === 'disabled') return 'disabled';
    if (row.expiresAt && row.expiresAt.getTime() <= now().getTime()) return 'expired';
    if (row.dataLimitBytes !== null && row.usedUpBytes + row.usedDownBytes >= row.dataLimitBytes)
      return 'limited';
    return 'active';
  }

  // ---- applying nodes, coalesced -----------------------------------------------------------

  const pending = new Map<string, { node: NodeKey; reasons: Set<string> }>();
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> = Promise.resolve();
  /** Active users per node, loaded once for a whole batch (usersForNode answers from it). */
  let batchUsers: Map<string, ProxyUserSpec[]> | null = null;
  const applied: ((node: NodeKey, ok: boolean) => void)[] = [];

  function schedule(nodes: readonly NodeKey[], reason: string): void {
    for (const n of nodes) {
      const k = nodeKey(n);
      const p = pending.get(k) ?? { node: { hostId: n.hostId, instance: n.instance }, reasons: new Set() };
      if (p.reasons.size < 5) p.reasons.add(reason);
      pending.set(k, p);
    }
    if (pending.size > 0 && !timer) {
      timer = setTimeout(() => {
        timer = null;
        flushing = flushing.then(flush, flush);
      }, coalesceMs);
      timer.unref?.();
    }
  }

  async function flush(): Promise<void> {
    if (pending.size === 0) return;
    const batch = [...pending.values()];
    pending.clear();
    if (!applier) {
      log.debug({ nodes: batch.length }, 'proxy users changed; no proxy nodes service to apply them');
      return;
    }
    try {
      const active = await repo.activeOnNodes(batch.map((b) => b.node));
      batchUsers = sharedLists(active);
      let next = 0;
      const worker = async () => {
        while (next < batch.length) {
          const b = batch[next++]!;
          let ok = true;
          try {
            await applier!.apply(PROXY_USERS_SYSTEM, b.node.hostId, b.node.instance, {
              reason: `proxy users: ${[...b.reasons].join('; ')}`.slice(0, 500),
            });
          } catch (err) {
            ok = false;
            // The node keeps its last good config; the next change or scrape tries again.
            log.warn(
              { err, hostId: b.node.hostId, instance: b.node.instance },
              'proxy users: node apply failed',
            );
          }
          for (const f of applied) f(b.node, ok);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, worker));
    } catch (err) {
      log.error({ err }, 'proxy users: apply batch failed');
    } finally {
      batchUsers = null;
    }
  }

  /**
   * Every node's users as specs, validated once: nodes that serve the same users (the usual fan-out:
   * 20 nodes, 10,000 users each) share one frozen list, which config.apply does not validate again.
   */
  function sharedLists(
    active: Map<string, { user: ActiveProxyUser; place: ProxyUserPlace }[]>,
  ): Map<string, ProxyUserSpec[]> {
    const samePlace = (a: ProxyUserPlace, b: ProxyUserPlace) =>
      a === b || (a.port === b.port && (a.inbounds ?? null)?.join(',') === (b.inbounds ?? null)?.join(','));
    // The repository hands every node the same user objects, so equal lists compare by identity.
    const same = (
      a: { user: ActiveProxyUser; place: ProxyUserPlace }[],
      b: { user: ActiveProxyUser; place: ProxyUserPlace }[],
    ) => a.length === b.length && a.every((x, i) => x.user === b[i]!.user && samePlace(x.place, b[i]!.place));
    const seen: { list: { user: ActiveProxyUser; place: ProxyUserPlace }[]; specs: ProxyUserSpec[] }[] = [];
    const out = new Map<string, ProxyUserSpec[]>();
    for (const [k, list] of active) {
      let specs = seen.find((x) => same(x.list, list))?.specs;
      if (!specs) {
        const plain = list.map((x) => specOf(x.user, x.place));
        try {
          specs = checkedUserList(plain) as ProxyUserSpec[];
        } catch {
          specs = plain; // each push then fails with the schema's typed error, as before
        }
        seen.push({ list, specs });
      }
      out.set(k, specs);
    }
    return out;
  }

  function specOf(u: ActiveProxyUser, place: ProxyUserPlace): ProxyUserSpec {
    return {
      id: u.name,
      secret: u.secret,
      uuid: u.uuid,
      password: u.password,
      ...(place.inbounds ? { inbounds: place.inbounds } : {}),
      ...(place.port !== null ? { port: place.port } : {}),
      ...(u.maxConnections !== null ? { maxTcpConns: u.maxConnections } : {}),
      ...(u.maxUniqueIps !== null ? { maxUniqueIps: u.maxUniqueIps } : {}),
      // The data limit is fleet-wide and enforced here (a proxy would count its node alone and
      // not see period resets), so it is not rendered; the expiry is exact, so it is.
      ...(u.expiresAt ? { expiresAt: u.expiresAt.getTime() } : {}),
    };
  }

  // ---- node assignment -----------------------------------------------------------------------

  async function checkNodes(
    actor: ProxyUsersActor,
    nodes: NonNullable<ProxyUserInput['nodes']>,
  ): Promise<{ hostId: string; instance: string; inbounds: string[] | null }[]> {
    const unique = new Map(nodes.map((n) => [nodeKey(n), n]));
    if (unique.size === 0) return [];
    requireHostAccess(actor, 'config.apply', [...new Set([...unique.values()].map((n) => n.hostId))]);
    const known = new Map((await repo.describeNodes([...unique.values()])).map((d) => [nodeKey(d), d]));
    const out = [];
    for (const n of unique.values()) {
      const d = known.get(nodeKey(n));
      if (!d) throw new KeelError('proxy.node_not_found', `No proxy node ${n.instance} on host ${n.hostId}.`);
      if (!USER_ADAPTERS.has(d.adapter)) {
        throw new KeelError(
          'request.invalid',
          `${n.instance} is an ${d.adapter} node: it serves no proxy users.`,
        );
      }
      const inbounds = n.inbounds && n.inbounds.length > 0 ? [...new Set(n.inbounds)].sort() : null;
      if (inbounds && d.adapter === 'v2ray') {
        const tags = new Set(((d.settings.inbounds ?? []) as { tag?: string }[]).map((i) => String(i.tag)));
        const missing = inbounds.filter((t) => !tags.has(t));
        if (missing.length > 0) {
          throw new KeelError('request.invalid', `${n.instance} has no inbound ${missing.join(', ')}.`);
        }
      }
      out.push({ hostId: n.hostId, instance: n.instance, inbounds: d.adapter === 'v2ray' ? inbounds : null });
    }
    return out;
  }

  async function placeOnNodes(
    userId: string,
    nodes: { hostId: string; instance: string; inbounds: string[] | null }[],
  ): Promise<{ before: ProxyUserNodeRow[]; after: ProxyUserNodeRow[] }> {
    const described = new Map((await repo.describeNodes(nodes)).map((d) => [nodeKey(d), d]));
    return repo.setNodes(userId, nodes, (n) => described.get(nodeKey(n))?.adapter === 'shadowsocks');
  }

  // ---- validation of input -----------------------------------------------------------------

  function limits(input: ProxyUserInput) {
    const out: Partial<ProxyUserRow> = {};
    if (input.dataLimitBytes !== undefined) out.dataLimitBytes = input.dataLimitBytes;
    if (input.resetPeriod !== undefined) out.resetPeriod = input.resetPeriod;
    if (input.expiresAt !== undefined)
      out.expiresAt = input.expiresAt === null ? null : new Date(input.expiresAt);
    if (input.maxConnections !== undefined) out.maxConnections = input.maxConnections;
    if (input.maxUniqueIps !== undefined) out.maxUniqueIps = input.maxUniqueIps;
    if (input.note !== undefined) out.note = input.note;
    return out;
  }

  async function ownerFor(
    actor: ProxyUsersActor,
    input: ProxyUserInput,
    current: string | null,
  ): Promise<string | null> {
    if (input.ownerId === undefined) return current;
    if (!seesAll(actor))
      throw new KeelError('auth.forbidden', 'Giving a proxy user to another owner needs proxy.users.all.');
    return input.ownerId;
  }

  const target = (row: Pick<ProxyUserRow, 'id'>) => `proxy-user:${row.id}`;

  // ---- traffic -----------------------------------------------------------------------------

  let scrapeTimer: NodeJS.Timeout | null = null;
  let scraping: Promise<unknown> | null = null;

  /** Turns users the limits caught into status changes and node removals (audited once a round). */
  async function enforce(): Promise<{ id: string; status: ProxyUserStatus }[]> {
    const at = now();
    const reset = await repo.resetDue(at);
    const changed = await repo.enforceLimits(at);
    const revived = reset.filter((r) => r.wasLimited).map((r) => r.id);
    const ids = [...changed.map((c) => c.id), ...revived];
    if (reset.length > 0) {
      await audit.record(PROXY_USERS_SYSTEM.id, 'proxy.user.period_reset', null, {
        count: reset.length,
        users: reset.slice(0, 100).map((r) => r.id),
      });
    }
    if (changed.length > 0) {
      const rows = await repo.getMany(changed.map((c) => c.id));
      await audit.record(PROXY_USERS_SYSTEM.id, 'proxy.user.enforce', null, {
        count: changed.length,
        limited: rows
          .filter((r) => r.status === 'limited')
          .slice(0, 100)
          .map((r) => r.name),
        expired: rows
          .filter((r) => r.status === 'expired')
          .slice(0, 100)
          .map((r) => r.name),
      });
    }
    if (ids.length > 0) {
      const nodes = await repo.nodesOf(ids);
      schedule(nodes, changed.length > 0 ? 'over limit or expired' : 'period reset');
    }
    return changed;
  }

  async function scrapeOnce(): Promise<{ nodes: number; failed: number; deltas: number }> {
    if (!deps.readTraffic) return { nodes: 0, failed: 0, deltas: 0 };
    const nodes = (await repo.nodes()).filter((n) => deps.isOnline?.(n.hostId) ?? true);
    let failed = 0;
    let deltas = 0;
    let next = 0;
    const worker = async () => {
      while (next < nodes.length) {
        const node = nodes[next++]!;
        try {
          const reading = await deps.readTraffic!(node);
          const got = await repo.recordReading(
            node,
            reading.counterEpoch,
            reading.users.map((u) => ({ id: u.id, up: u.upBytes, down: u.downBytes })),
            now(),
          );
          deltas += got.length;
        } catch (err) {
          failed++;
          log.warn({ err, hostId: node.hostId, instance: node.instance }, 'proxy traffic scrape failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, nodes.length) }, worker));
    await enforce();
    return { nodes: nodes.length, failed, deltas };
  }

  return {
    /** Sets the proxy nodes service that applies nodes (wired after both are built). */
    setApplier(a: ProxyNodeApplier | null): void {
      applier = a;
    },

    /** Calls `f` after each node apply of a batch (tests and the benchmark watch these). */
    onApplied(f: (node: NodeKey, ok: boolean) => void): () => void {
      applied.push(f);
      return () => applied.splice(applied.indexOf(f), 1);
    },

    /** Resolves when the changes made so far have been applied (pending timers flushed). */
    async settled(): Promise<void> {
      if (timer) {
        clearTimeout(timer);
        timer = null;
        flushing = flushing.then(flush, flush);
      }
      await flushing;
    },

    /** Seals protocol secrets stored in clear or under a retired key (at controller start). */
    sealStoredSecrets(): Promise<number> {
      return repo.sealStoredSecrets();
    },

    /**
     * The users a node serves: active users placed on it (the proxy nodes service's provider).
     * Answers from the batch being applied when there is one, so 20 nodes cost one query.
     */
    async usersForNode(hostId: string, instance: string): Promise<ProxyUserSpec[]> {
      const k = nodeKey({ hostId, instance });
      const cached = batchUsers?.get(k);
      if (cached) return cached;
      const active = await repo.activeOnNodes([{ hostId, instance }]);
      return (active.get(k) ?? []).map((x) => specOf(x.user, x.place));
    },

    /** Nodes the actor may place users on: user-serving nodes on hosts it may apply configs to. */
    async assignableNodes(actor: ProxyUsersActor) {
      requireAccess(actor, 'proxy.users.manage');
      return (await repo.describeNodes('all'))
        .filter((d) => USER_ADAPTERS.has(d.adapter) && hasHostPermission(actor, 'config.apply', d.hostId))
        .map((d) => ({
          hostId: d.hostId,
          hostName: d.hostName,
          instance: d.instance,
          adapter: d.adapter,
          inbounds:
            d.adapter === 'v2ray'
              ? ((d.settings.inbounds ?? []) as { tag?: unknown; protocol?: unknown }[]).map((i) => ({
                  tag: String(i.tag),
                  protocol: String(i.protocol),
                }))
              : [],
        }));
    },

    /** A page of the users the actor may see, searched by name and note. */
    async list(
      actor: ProxyUsersActor,
      q: { search?: string; status?: ProxyUserStatus; limit?: number; offset?: number } = {},
    ): Promise<{ users: ProxyUserView[]; total: number }> {
      requireAccess(actor, 'proxy.users.manage');
      const { rows, total } = await repo.list({
        ownerId: seesAll(actor) ? null : actor.id,
        search: q.search?.trim() || undefined,
        status: q.status,
        limit: Math.min(Math.max(q.limit ?? 50, 1), 500),
        offset: Math.max(q.offset ?? 0, 0),
      });
      const nodes = await repo.nodesOf(rows.map((r) => r.id));
      return { users: rows.map((r) => view(r, nodes)), total };
    },

    async get(actor: ProxyUsersActor, id: string): Promise<ProxyUserView> {
      return viewOf(await owned(actor, id));
    },

    /** Makes a user with fresh secrets (owned by the actor unless `ownerId` is given). */
    async create(actor: ProxyUsersActor, input: ProxyUserInput & { name: string }): Promise<ProxyUserView> {
      requireAccess(actor, 'proxy.users.manage');
      if (!PROXY_USER_ID_PATTERN.test(input.name)) {
        throw new KeelError(
          'request.invalid',
          'name: at most 64 lower-case letters, digits, ".", "_" and "-", starting alphanumeric',
        );
      }
      const nodes = await checkNodes(actor, input.nodes ?? []);
      const ownerId = await ownerFor(actor, input, actor.id);
      const values = {
        name: input.name,
        ownerId,
        secret: newSecret(),
        uuid: randomUUID(),
        password: newPassword(),
        subscriptionToken: newSubscriptionToken(),
        lastResetAt: now(),
        ...limits(input),
        status: input.status ?? 'active',
      } as const;
      let row: ProxyUserRow;
      try {
        row = await repo.create({
          ...values,
          status: statusFor({
            ...values,
            dataLimitBytes: values.dataLimitBytes ?? null,
            expiresAt: values.expiresAt ?? null,
            usedUpBytes: 0,
            usedDownBytes: 0,
          }),
        });
      } catch (err) {
        if (
          (err as { code?: string; cause?: { code?: string } }).code === '23505' ||
          (err as { cause?: { code?: string } }).cause?.code === '23505'
        ) {
          throw new KeelError('proxy.user_exists');
        }
        throw err;
      }
      const { after } = await placeOnNodes(row.id, nodes);
      await audit.record(
        actor.id,
        'proxy.user.create',
        target(row),
        {
          name: row.name,
          ownerId,
          nodes: after.map((n) => nodeKey(n)),
          dataLimitBytes: row.dataLimitBytes,
          expiresAt: row.expiresAt?.toISOString() ?? null,
        },
        actor.ip,
      );
      if (row.status === 'active') schedule(after, `create ${row.name}`);
      return view(row, after);
    },

    /** Changes limits, note, status (active/disabled), owner or nodes; re-applies the nodes touched. */
    async update(actor: ProxyUsersActor, id: string, input: ProxyUserInput): Promise<ProxyUserView> {
      const row = await owned(actor, id);
      if (input.name !== undefined && input.name !== row.name) {
        throw new KeelError(
          'request.invalid',
          'name: a proxy user keeps its name (it is its id on every node)',
        );
      }
      const nodes = input.nodes ? await checkNodes(actor, input.nodes) : null;
      const ownerId = await ownerFor(actor, input, row.ownerId);
      const merged = { ...row, ...limits(input), ...(input.status ? { status: input.status } : {}) };
      const status = statusFor(merged);
      const updated = (await repo.update(id, { ...limits(input), ownerId, status }))!;
      let before = await repo.nodesOf([id]);
      let after = before;
      if (nodes) ({ before, after } = await placeOnNodes(id, nodes));
      await audit.record(
        actor.id,
        'proxy.user.update',
        target(row),
        {
          name: row.name,
          changed: Object.keys(input).filter((k) => k !== 'nodes' || nodes !== null),
          status: status !== row.status ? { from: row.status, to: status } : undefined,
          ...(nodes ? { nodes: after.map((n) => nodeKey(n)) } : {}),
        },
        actor.ip,
      );
      schedule([...before, ...after], `update ${row.name}`);
      return view(updated, after);
    },

    async remove(actor: ProxyUsersActor, id: string): Promise<void> {
      const row = await owned(actor, id);
      const nodes = await repo.nodesOf([id]);
      await repo.remove([id]);
      await audit.record(actor.id, 'proxy.user.delete', target(row), { name: row.name }, actor.ip);
      schedule(nodes, `delete ${row.name}`);
    },

    /** New secret(s): the old ones stop working once the nodes are applied. */
    async regenerate(
      actor: ProxyUsersActor,
      id: string,
      which: 'secret' | 'uuid' | 'password' | 'all',
    ): Promise<ProxyUserView> {
      const row = await owned(actor, id);
      const patch: Partial<ProxyUserRow> = {};
      if (which === 'secret' || which === 'all') patch.secret = newSecret();
      if (which === 'uuid' || which === 'all') patch.uuid = randomUUID();
      if (which === 'password' || which === 'all') patch.password = newPassword();
      const updated = (await repo.update(id, patch))!;
      await audit.record(actor.id, 'proxy.user.regenerate', target(row), { name: row.name, which }, actor.ip);
      const nodes = await repo.nodesOf([id]);
      schedule(nodes, `new ${which} for ${row.name}`);
      return view(updated, nodes);
    },

    /** A new subscription token: the old URL stops answering at once. */
    async rotateSubscription(actor: ProxyUsersActor, id: string): Promise<ProxyUserView> {
      const row = await owned(actor, id);
      const updated = (await repo.update(id, { subscriptionToken: newSubscriptionToken() }))!;
      await audit.record(
        actor.id,
        'proxy.user.rotate_subscription',
        target(row),
        { name: row.name },
        actor.ip,
      );
      return viewOf(updated);
    },

    /** Disable, enable, delete or reset the usage of many users at once (one audit row). */
    async bulk(
      actor: ProxyUsersActor,
      ids: readonly string[],
      action: 'disable' | 'enable' | 'delete' | 'reset-usage',
    ): Promise<{ count: number }> {
      requireAccess(actor, 'proxy.users.manage');
      const rows = (await repo.getMany([...new Set(ids)].filter((i) => /^[0-9a-f-]{36}$/i.test(i)))).filter(
        (r) => seesAll(actor) || r.ownerId === actor.id,
      );
      if (rows.length === 0) return { count: 0 };
      const nodes = await repo.nodesOf(rows.map((r) => r.id));
      if (action === 'delete') {
        await repo.remove(rows.map((r) => r.id));
      } else if (action === 'disable') {
        await repo.updateMany(
          rows.map((r) => r.id),
          { status: 'disabled' },
        );
      } else {
        for (const r of rows) {
          const next =
            action === 'enable'
              ? { status: statusFor({ ...r, status: 'active' }) }
              : {
                  usedUpBytes: 0,
                  usedDownBytes: 0,
                  lastResetAt: now(),
                  status: statusFor({ ...r, usedUpBytes: 0, usedDownBytes: 0 }),
                };
          await repo.update(r.id, next);
        }
      }
      await audit.record(
        actor.id,
        `proxy.user.bulk_${action.replace('-', '_')}`,
        null,
        {
          count: rows.length,
          users: rows.slice(0, 100).map((r) => r.name),
        },
        actor.ip,
      );
      schedule(nodes, `${action} ${rows.length} user(s)`);
      return { count: rows.length };
    },

    /** Every share link of a user, one per node and inbound (QR codes are drawn by the route). */
    async links(
      actor: ProxyUsersActor,
      id: string,
    ): Promise<{ links: ProxyUserLink[]; subscriptionUrl: string }> {
      const row = await owned(actor, id);
      return { links: await linksOf(row), subscriptionUrl: subscriptionUrl(row.subscriptionToken) };
    },

    /**
     * Hourly traffic of one node (every user on it) over the last `hours` (default 24, at most
     * 24 x 90): host.view on its host, as the node's other pages.
     */
    async nodeUsage(actor: ProxyUsersActor, node: NodeKey, hours = 24) {
      requireHostAccess(actor, 'host.view', [node.hostId]);
      if ((await repo.describeNodes([node])).length === 0) throw new KeelError('proxy.node_not_found');
      const to = now();
      const from = new Date(to.getTime() - Math.min(Math.max(hours, 1), 24 * 90) * 3_600_000);
      const points = await repo.nodeUsage(node, from, new Date(to.getTime() + 3_600_000));
      return { points: points.map((p) => ({ at: p.hour.getTime(), up: p.up, down: p.down })) };
    },

    /** Hourly usage of a user over the last `hours` (default 24, at most 24 x 90). */
    async usage(actor: ProxyUsersActor, id: string, hours = 24) {
      const row = await owned(actor, id);
      const to = now();
      const from = new Date(to.getTime() - Math.min(Math.max(hours, 1), 24 * 90) * 3_600_000);
      const points = await repo.usage(row.id, from, new Date(to.getTime() + 3_600_000));
      return { points: points.map((p) => ({ at: p.hour.getTime(), up: p.up, down: p.down })) };
    },

    /**
     * The public subscription of a token (no session: the token is the credential). A user that
     * is not active still answers (with no links), so clients show its status and usage.
     */
    async subscription(token: string, format: 'base64' | 'clash' | 'sing-box') {
      if (!/^[A-Za-z0-9_-]{43}$/.test(token)) throw new KeelError('proxy.subscription_not_found');
      const row = await repo.byToken(token);
      if (!row) throw new KeelError('proxy.subscription_not_found');
      const endpoints = row.status === 'active' ? await endpointsFor(row) : [];
      const userinfo = subscriptionUserinfo({
        upload: row.usedUpBytes,
        download: row.usedDownBytes,
        total: row.dataLimitBytes,
        expire: row.expiresAt,
      });
      const body =
        format === 'clash'
          ? clashProfile(endpoints)
          : format === 'sing-box'
            ? singBoxProfile(endpoints)
            : base64Subscription(endpoints);
      return { name: row.name, userinfo, body };
    },

    /** One scrape of every node's counters, then limits, expiries and resets (also run by the timer). */
    scrapeOnce,
    /** Limits, expiries and resets without a scrape. */
    enforce,

    /** Starts the periodic scrape. */
    start(): void {
      if (scrapeTimer || !deps.readTraffic) return;
      const every = (deps.scrapeSeconds ?? scrapeSecondsFromEnv()) * 1000;
      scrapeTimer = setInterval(() => {
        if (scraping) return; // a slow round is not stacked
        scraping = scrapeOnce()
          .catch((err: unknown) => log.error({ err }, 'proxy traffic round failed'))
          .finally(() => (scraping = null));
      }, every);
      scrapeTimer.unref?.();
    },

    async stop(): Promise<void> {
      if (scrapeTimer) clearInterval(scrapeTimer);
      scrapeTimer = null;
      if (timer) clearTimeout(timer);
      timer = null;
      await scraping;
      await flushing;
    },
  };

  async function endpointsFor(
    row: ProxyUserRow,
  ): Promise<(ProxyEndpoint & { inbound: string | null; node: NodeDescription })[]> {
    const places = await repo.nodesOf([row.id]);
    const nodes = new Map((await repo.describeNodes(places)).map((d) => [nodeKey(d), d]));
    const out = [];
    // By host name, then instance: the order a person reads them in.
    const label = (p: NodeKey) => `${nodes.get(nodeKey(p))?.hostName ?? ''}\u0000${p.instance}`;
    places.sort((a, b) => label(a).localeCompare(label(b)));
    for (const p of places) {
      const d = nodes.get(nodeKey(p));
      if (d) for (const e of endpointsOf(row, d, p)) out.push({ ...e, node: d });
    }
    return out;
  }

  async function linksOf(row: ProxyUserRow): Promise<ProxyUserLink[]> {
    return (await endpointsFor(row)).map(({ node, inbound, ...e }) => ({
      hostId: node.hostId,
      hostName: node.hostName,
      instance: node.instance,
      protocol: e.protocol,
      inbound,
      name: e.name,
      link: shareLink(e),
      webLink: e.protocol === 'mtproto' ? tmeProxyLink(e) : null,
    }));
  }
}

export type ProxyUsersService = ReturnType<typeof createProxyUsersService>;

/**
 * Wires the proxy users service and the proxy nodes service together (when both are built): the
 * nodes service asks this one for a node's users, and this one asks it to apply nodes.
 */
export function linkProxyUsers(services: {
  proxyUsers: ProxyUsersService;
  proxyNodes?: ProxyNodeApplier & {
    setUsersProvider(p: (hostId: string, instance: string) => Promise<ProxyUserSpec[]>): void;
  };
}): void {
  if (!services.proxyNodes) return;
  services.proxyNodes.setUsersProvider((hostId, instance) =>
    services.proxyUsers.usersForNode(hostId, instance),
  );
  services.proxyUsers.setApplier(services.proxyNodes);
}
