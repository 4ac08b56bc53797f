// Proxy users, their node assignments and their traffic. The scrape path is built for 10,000 users
// on many nodes: one node's reading is one transaction that locks that node's counter row, turns
// cumulative counters into deltas (a new counter epoch or a smaller value counts from zero), adds
// them to the users (one UPDATE over a JSON record set) and to the hourly buckets (one upsert each).
//
// The users' protocol secrets (MTProxy secret, VLESS/VMess uuid, Trojan/Shadowsocks password) are
// sealed at rest under the master key (secrets.ts) and opened here only: every row this file
// answers carries them in clear, every write seals them, each bound to its row and column.
import { randomUUID } from 'node:crypto';
import { and, asc, count, eq, ilike, inArray, isNotNull, isNull, or, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { SEALED_PREFIX, type SecretBox } from '../secrets.ts';
import { hosts } from '../db/schema/hosts.ts';
import { proxyNodes } from '../db/schema/proxy-nodes.ts';
import {
  proxyTraffic,
  proxyUserNodeUsage,
  proxyUserNodes,
  proxyUsers,
  proxyUserUsage,
  type ProxyUserRow,
  type ProxyUserStatus,
} from '../db/schema/proxy-users.ts';

export type { ProxyUserRow, ProxyUserStatus };
export type ProxyUserInsert = typeof proxyUsers.$inferInsert;

/** One node: a proxy instance on a host. */
export interface NodeKey {
  hostId: string;
  instance: string;
}

/** A user's place on a node. */
export interface ProxyUserNodeRow extends NodeKey {
  userId: string;
  inbounds: string[] | null;
  port: number | null;
}

/** Where a user is on one node, as a config needs it (shared by every plain placement of a node). */
export type ProxyUserPlace = Pick<ProxyUserNodeRow, 'hostId' | 'instance' | 'inbounds' | 'port'>;

/** What a node's config needs of an active user. */
export type ActiveProxyUser = Pick<
  ProxyUserRow,
  'id' | 'name' | 'secret' | 'uuid' | 'password' | 'maxConnections' | 'maxUniqueIps' | 'expiresAt'
>;

/** A node as links and assignment checks need it. */
export interface NodeDescription extends NodeKey {
  adapter: string;
  settings: Record<string, unknown>;
  hostName: string;
  /** Where links point (null: the host's name). */
  publicAddress: string | null;
}

/** What a list shows: paging, search on name and note, a status filter, the owner scope. */
export interface ProxyUserQuery {
  /** Only users of this owner; null: every owner. */
  ownerId: string | null;
  search?: string;
  status?: ProxyUserStatus;
  limit: number;
  offset: number;
}

/** What one node's scrape added, per user (by id). */
export interface TrafficDelta {
  userId: string;
  up: number;
  down: number;
}

const nodeKey = (n: NodeKey) => `${n.hostId}/${n.instance}`;

/** The first hour of `at` (UTC). */
export function hourOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 3_600_000) * 3_600_000);
}

/**
 * Deltas between two readings of one node's cumulative counters. A new epoch means the proxy's
 * counters restarted: every value counts from zero. Within one epoch a value smaller than the last
 * also means a restart (of that counter) and counts from zero; a user missing from this reading
 * keeps its last value, so a user taken off and put back within one epoch is not counted twice.
 *
 * @example counterDeltas({ epoch: 'a', counters: { u: [10, 5] } }, 'a', [{ id: 'u', up: 15, down: 5 }]) -> deltas u: [5, 0]
 */
export function counterDeltas(
  last: { epoch: string; counters: Record<string, [number, number]> } | null,
  epoch: string,
  reading: readonly { id: string; up: number; down: number }[],
): { deltas: Map<string, [number, number]>; counters: Record<string, [number, number]> } {
  const same = last !== null && last.epoch === epoch;
  const counters: Record<string, [number, number]> = same ? { ...last.counters } : {};
  const deltas = new Map<string, [number, number]>();
  for (const r of reading) {
    const prev = same ? last.counters[r.id] : undefined;
    const du = prev && r.up >= prev[0] ? r.up - prev[0] : r.up;
    const dd = prev && r.down >= prev[1] ? r.down - prev[1] : r.down;
    counters[r.id] = [r.up, r.down];
    if (du > 0 || dd > 0) deltas.set(r.id, [du, dd]);
  }
  return { deltas, counters };
}

/** The columns sealed at rest. */
const SEALED_COLUMNS = ['secret', 'uuid', 'password'] as const;
type SealedColumn = (typeof SEALED_COLUMNS)[number];
/** Opened values kept (sealed value -> clear) so a fan-out does not open 30,000 values each time. */
const MAX_OPENED = 200_000;

/**
 * Proxy users storage. With `secrets`, the protocol secrets are sealed at rest (without it they are
 * stored and read as they are: only for tools that fill a scratch database).
 */
export function createProxyUsersRepository(db: Db, secrets?: SecretBox) {
  const opened = new Map<string, string>();
  const context = (column: SealedColumn, id: string) => `proxy_users.${column}:${id}`;
  /** The row with its secrets in clear (the object is changed in place and returned). */
  function openRow<T extends { id: string } & Partial<Record<SealedColumn, string>>>(row: T): T {
    if (!secrets) return row;
    for (const column of SEALED_COLUMNS) {
      const value = row[column];
      if (value === undefined || !value.startsWith(SEALED_PREFIX)) continue; // clear (legacy) as it is
      const key = `${context(column, row.id)}\u0000${value}`;
      let clear = opened.get(key);
      if (clear === undefined) {
        clear = secrets.open(value, context(column, row.id));
        if (opened.size >= MAX_OPENED) opened.clear();
        opened.set(key, clear);
      }
      (row as Record<SealedColumn, string>)[column] = clear;
    }
    return row;
  }
  /** The values to write for row `id`, with its secrets sealed. */
  function sealValues<T extends Partial<Record<SealedColumn, string>>>(id: string, values: T): T {
    if (!secrets) return values;
    const out = { ...values };
    for (const column of SEALED_COLUMNS) {
      const value = out[column];
      if (value !== undefined)
        (out as Record<SealedColumn, string>)[column] = secrets.seal(value, context(column, id));
    }
    return out;
  }
  const sealsAny = (patch: Partial<ProxyUserInsert>) => SEALED_COLUMNS.some((c) => patch[c] !== undefined);

  function scope(q: Pick<ProxyUserQuery, 'ownerId' | 'search' | 'status'>): SQL | undefined {
    const parts: (SQL | undefined)[] = [];
    if (q.ownerId !== null) parts.push(eq(proxyUsers.ownerId, q.ownerId));
    if (q.status) parts.push(eq(proxyUsers.status, q.status));
    if (q.search) {
      const like = `%${q.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      parts.push(or(ilike(proxyUsers.name, like), ilike(proxyUsers.note, like)));
    }
    return parts.length > 0 ? and(...parts) : undefined;
  }

  return {
    async list(q: ProxyUserQuery): Promise<{ rows: ProxyUserRow[]; total: number }> {
      const where = scope(q);
      const rows = await db
        .select()
        .from(proxyUsers)
        .where(where)
        .orderBy(asc(proxyUsers.name))
        .limit(q.limit)
        .offset(q.offset);
      const [total] = await db.select({ n: count() }).from(proxyUsers).where(where);
      return { rows: rows.map(openRow), total: total?.n ?? 0 };
    },

    async get(id: string): Promise<ProxyUserRow | null> {
      const [row] = await db.select().from(proxyUsers).where(eq(proxyUsers.id, id)).limit(1);
      return row ? openRow(row) : null;
    },

    async getMany(ids: readonly string[]): Promise<ProxyUserRow[]> {
      if (ids.length === 0) return [];
      return (
        await db
          .select()
          .from(proxyUsers)
          .where(inArray(proxyUsers.id, [...ids]))
      ).map(openRow);
    },

    async byToken(token: string): Promise<ProxyUserRow | null> {
      const [row] = await db
        .select()
        .from(proxyUsers)
        .where(eq(proxyUsers.subscriptionToken, token))
        .limit(1);
      return row ? openRow(row) : null;
    },

    async create(values: ProxyUserInsert): Promise<ProxyUserRow> {
      // The id is made here: the sealed values are bound to it.
      const id = values.id ?? randomUUID();
      const [row] = await db
        .insert(proxyUsers)
        .values(sealValues(id, { ...values, id }))
        .returning();
      return openRow(row!);
    },

    async update(id: string, patch: Partial<ProxyUserInsert>): Promise<ProxyUserRow | null> {
      const [row] = await db
        .update(proxyUsers)
        .set({ ...sealValues(id, patch), updatedAt: new Date() })
        .where(eq(proxyUsers.id, id))
        .returning();
      return row ? openRow(row) : null;
    },

    async updateMany(ids: readonly string[], patch: Partial<ProxyUserInsert>): Promise<ProxyUserRow[]> {
      if (ids.length === 0) return [];
      if (secrets && sealsAny(patch)) {
        // Each row's secrets are sealed for that row.
        const rows: ProxyUserRow[] = [];
        for (const id of ids) {
          const [row] = await db
            .update(proxyUsers)
            .set({ ...sealValues(id, patch), updatedAt: new Date() })
            .where(eq(proxyUsers.id, id))
            .returning();
          if (row) rows.push(openRow(row));
        }
        return rows;
      }
      return (
        await db
          .update(proxyUsers)
          .set({ ...patch, updatedAt: new Date() })
          .where(inArray(proxyUsers.id, [...ids]))
          .returning()
      ).map(openRow);
    },

    async remove(ids: readonly string[]): Promise<ProxyUserRow[]> {
      if (ids.length === 0) return [];
      return (
        await db
          .delete(proxyUsers)
          .where(inArray(proxyUsers.id, [...ids]))
          .returning()
      ).map(openRow);
    },

    /**
     * Seals secrets stored in clear or under a retired key (rows from before sealing, or after a
     * key rotation); returns how many rows changed. Run at controller start.
     */
    async sealStoredSecrets(): Promise<number> {
      if (!secrets) return 0;
      const rows = await db
        .select({
          id: proxyUsers.id,
          secret: proxyUsers.secret,
          uuid: proxyUsers.uuid,
          password: proxyUsers.password,
        })
        .from(proxyUsers);
      let changed = 0;
      for (const row of rows) {
        const stale = SEALED_COLUMNS.filter((c) => secrets.needsReseal(row[c]));
        if (stale.length === 0) continue;
        let clear: typeof row;
        try {
          clear = openRow({ ...row });
        } catch {
          continue; // sealed under a key this controller does not hold: left as is, reads say so
        }
        const patch = Object.fromEntries(stale.map((c) => [c, clear[c]])) as Partial<
          Record<SealedColumn, string>
        >;
        // Only if unchanged since read (a concurrent write sealed it already).
        const done = await db
          .update(proxyUsers)
          .set(sealValues(row.id, patch))
          .where(and(eq(proxyUsers.id, row.id), ...stale.map((c) => eq(proxyUsers[c], row[c]))))
          .returning({ id: proxyUsers.id });
        changed += done.length;
      }
      return changed;
    },

    /** The nodes of these users. */
    async nodesOf(userIds: readonly string[]): Promise<ProxyUserNodeRow[]> {
      if (userIds.length === 0) return [];
      return db
        .select()
        .from(proxyUserNodes)
        .where(inArray(proxyUserNodes.userId, [...userIds]))
        .orderBy(asc(proxyUserNodes.hostId), asc(proxyUserNodes.instance));
    },

    /**
     * Replaces a user's nodes. `portFor` gives a node that needs a per-user port its next free one
     * (an existing assignment keeps its port). Returns the nodes before and after.
     */
    async setNodes(
      userId: string,
      nodes: readonly { hostId: string; instance: string; inbounds: string[] | null }[],
      needsPort: (n: NodeKey) => boolean,
    ): Promise<{ before: ProxyUserNodeRow[]; after: ProxyUserNodeRow[] }> {
      return db.transaction(async (tx) => {
        const before = await tx.select().from(proxyUserNodes).where(eq(proxyUserNodes.userId, userId));
        const kept = new Map(before.map((b) => [nodeKey(b), b]));
        await tx.delete(proxyUserNodes).where(eq(proxyUserNodes.userId, userId));
        const rows: ProxyUserNodeRow[] = [];
        for (const n of nodes) {
          let port = kept.get(nodeKey(n))?.port ?? null;
          if (port === null && needsPort(n)) {
            // Serialize port allocation on this node (the advisory lock lasts the transaction).
            await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`proxy-port:${nodeKey(n)}`}))`);
            const [m] = await tx
              .select({ max: sql<number | null>`max(${proxyUserNodes.port})` })
              .from(proxyUserNodes)
              .where(and(eq(proxyUserNodes.hostId, n.hostId), eq(proxyUserNodes.instance, n.instance)));
            port = Math.max(PORT_BASE - 1, Number(m?.max ?? 0)) + 1;
          }
          rows.push({ userId, hostId: n.hostId, instance: n.instance, inbounds: n.inbounds, port });
        }
        if (rows.length > 0) await tx.insert(proxyUserNodes).values(rows);
        return { before, after: rows };
      });
    },

    /** Active users on each of these nodes, with their place there (one query for all nodes). */
    async activeOnNodes(
      nodes: readonly NodeKey[],
    ): Promise<Map<string, { user: ActiveProxyUser; place: ProxyUserPlace }[]>> {
      const out = new Map<string, { user: ActiveProxyUser; place: ProxyUserPlace }[]>();
      for (const n of nodes) out.set(nodeKey(n), []);
      if (nodes.length === 0) return out;
      // One OR of (host, instance) pairs: the planner uses the (host_id, instance) index for each.
      const onNodes = or(
        ...nodes.map((n) =>
          and(eq(proxyUserNodes.hostId, n.hostId), eq(proxyUserNodes.instance, n.instance)),
        ),
      )!;
      // Narrow rows, users once: 10,000 users on 20 nodes are 10,000 user rows and 200,000
      // placements of five columns, not 200,000 joined rows of every user column.
      const users = await db
        .select({
          id: proxyUsers.id,
          name: proxyUsers.name,
          secret: proxyUsers.secret,
          uuid: proxyUsers.uuid,
          password: proxyUsers.password,
          maxConnections: proxyUsers.maxConnections,
          maxUniqueIps: proxyUsers.maxUniqueIps,
          expiresAt: proxyUsers.expiresAt,
        })
        .from(proxyUsers)
        .where(
          and(
            eq(proxyUsers.status, 'active'),
            inArray(
              proxyUsers.id,
              db.selectDistinct({ id: proxyUserNodes.userId }).from(proxyUserNodes).where(onNodes),
            ),
          ),
        )
        .orderBy(asc(proxyUsers.name));
      if (users.length === 0) return out;
      for (const u of users) openRow(u);
      // Placements on all inbounds without a port (nearly all) come as one id list per node: 20
      // rows of comma-joined ids instead of 200,000 rows to parse. The rest come as rows.
      const plain = await db
        .select({
          hostId: proxyUserNodes.hostId,
          instance: proxyUserNodes.instance,
          ids: sql<string>`string_agg(${proxyUserNodes.userId}::text, ',')`,
        })
        .from(proxyUserNodes)
        .where(and(onNodes, isNull(proxyUserNodes.inbounds), isNull(proxyUserNodes.port)))
        .groupBy(proxyUserNodes.hostId, proxyUserNodes.instance);
      const places: ProxyUserNodeRow[] = await db
        .select()
        .from(proxyUserNodes)
        .where(and(onNodes, or(isNotNull(proxyUserNodes.inbounds), isNotNull(proxyUserNodes.port))));
      // Per node: the plain placements as a set of user ids (one shared place object), the rest by
      // user id; then each node's list in the users' (name) order, no sort.
      const placed = new Map<
        string,
        { plain: Set<string>; place: ProxyUserPlace; other: Map<string, ProxyUserPlace> }
      >();
      const at = (hostId: string, instance: string) => {
        const k = nodeKey({ hostId, instance });
        let m = placed.get(k);
        if (!m) {
          m = { plain: new Set(), place: { hostId, instance, inbounds: null, port: null }, other: new Map() };
          placed.set(k, m);
        }
        return m;
      };
      for (const p of plain) {
        const m = at(p.hostId, p.instance);
        for (const userId of p.ids.split(',')) m.plain.add(userId);
      }
      for (const place of places) at(place.hostId, place.instance).other.set(place.userId, place);
      for (const [k, m] of placed) {
        const list = out.get(k);
        if (!list) continue;
        for (const u of users) {
          if (m.plain.has(u.id)) list.push({ user: u, place: m.place });
          else {
            const place = m.other.get(u.id);
            if (place) list.push({ user: u, place });
          }
        }
      }
      return out;
    },

    /**
     * What links need of nodes: adapter, settings and the host's name (read from the proxy nodes
     * table, which the proxy nodes service owns). Absent nodes are left out.
     */
    async describeNodes(keys: readonly NodeKey[] | 'all'): Promise<NodeDescription[]> {
      const rows = await db
        .select({
          hostId: proxyNodes.hostId,
          instance: proxyNodes.instance,
          adapter: proxyNodes.adapter,
          settings: proxyNodes.settings,
          hostName: hosts.name,
          publicAddress: proxyNodes.publicAddress,
        })
        .from(proxyNodes)
        .innerJoin(hosts, eq(hosts.id, proxyNodes.hostId))
        .where(
          keys === 'all'
            ? undefined
            : keys.length === 0
              ? sql`false`
              : sql`(${proxyNodes.hostId}, ${proxyNodes.instance}) in (select * from jsonb_to_recordset(${JSON.stringify(keys)}::jsonb) as n("hostId" uuid, instance text))`,
        )
        .orderBy(asc(hosts.name), asc(proxyNodes.instance));
      return rows;
    },

    /** Every node some user is on (what the scraper reads). */
    async nodes(): Promise<NodeKey[]> {
      return db
        .selectDistinct({ hostId: proxyUserNodes.hostId, instance: proxyUserNodes.instance })
        .from(proxyUserNodes);
    },

    /**
     * Stores one node's counter reading and adds its deltas to the users and the hourly buckets,
     * in one transaction with the node's counter row locked. Returns the deltas counted.
     */
    async recordReading(
      node: NodeKey,
      epoch: string,
      reading: readonly { id: string; up: number; down: number }[],
      at: Date,
    ): Promise<TrafficDelta[]> {
      return db.transaction(async (tx) => {
        // Make sure the row exists, then lock it: a second scraper waits and then sees this reading.
        await tx
          .insert(proxyTraffic)
          .values({ hostId: node.hostId, instance: node.instance, counterEpoch: '', counters: {} })
          .onConflictDoNothing();
        const [last] = await tx
          .select()
          .from(proxyTraffic)
          .where(and(eq(proxyTraffic.hostId, node.hostId), eq(proxyTraffic.instance, node.instance)))
          .for('update');
        const { deltas, counters } = counterDeltas(
          last && last.counterEpoch !== '' ? { epoch: last.counterEpoch, counters: last.counters } : null,
          epoch,
          reading,
        );
        await tx
          .update(proxyTraffic)
          .set({ counterEpoch: epoch, counters, scrapedAt: at })
          .where(and(eq(proxyTraffic.hostId, node.hostId), eq(proxyTraffic.instance, node.instance)));
        if (deltas.size === 0) return [];
        const recs = [...deltas].map(([name, [up, down]]) => ({ name, up, down }));
        const updated = await tx
          .update(proxyUsers)
          .set({
            usedUpBytes: sql`${proxyUsers.usedUpBytes} + v.up`,
            usedDownBytes: sql`${proxyUsers.usedDownBytes} + v.down`,
            lifetimeBytes: sql`${proxyUsers.lifetimeBytes} + v.up + v.down`,
            lastSeenAt: at,
          })
          .from(
            sql`jsonb_to_recordset(${JSON.stringify(recs)}::jsonb) as v(name text, up bigint, down bigint)`,
          )
          .where(sql`${proxyUsers.name} = v.name`)
          .returning({ id: proxyUsers.id, name: proxyUsers.name });
        const idOf = new Map(updated.map((u) => [u.name, u.id]));
        const hour = hourOf(at);
        const out: TrafficDelta[] = [];
        for (const r of recs) {
          const id = idOf.get(r.name);
          if (id) out.push({ userId: id, up: r.up, down: r.down });
        }
        if (out.length > 0) {
          await tx
            .insert(proxyUserUsage)
            .values(out.map((d) => ({ userId: d.userId, hour, upBytes: d.up, downBytes: d.down })))
            .onConflictDoUpdate({
              target: [proxyUserUsage.userId, proxyUserUsage.hour],
              set: {
                upBytes: sql`${proxyUserUsage.upBytes} + excluded.up_bytes`,
                downBytes: sql`${proxyUserUsage.downBytes} + excluded.down_bytes`,
              },
            });
        }
        const up = recs.reduce((s, r) => s + r.up, 0);
        const down = recs.reduce((s, r) => s + r.down, 0);
        await tx
          .insert(proxyUserNodeUsage)
          .values({ hostId: node.hostId, instance: node.instance, hour, upBytes: up, downBytes: down })
          .onConflictDoUpdate({
            target: [proxyUserNodeUsage.hostId, proxyUserNodeUsage.instance, proxyUserNodeUsage.hour],
            set: {
              upBytes: sql`${proxyUserNodeUsage.upBytes} + excluded.up_bytes`,
              downBytes: sql`${proxyUserNodeUsage.downBytes} + excluded.down_bytes`,
            },
          });
        return out;
      });
    },

    /** Marks active users over their limit `limited` and past their expiry `expired`; returns them. */
    async enforceLimits(at: Date): Promise<{ id: string; status: ProxyUserStatus }[]> {
      const expired = await db
        .update(proxyUsers)
        .set({ status: 'expired', updatedAt: at })
        .where(
          and(
            inArray(proxyUsers.status, ['active', 'limited']),
            sql`${proxyUsers.expiresAt} is not null and ${proxyUsers.expiresAt} <= ${at.toISOString()}::timestamptz`,
          ),
        )
        .returning({ id: proxyUsers.id, status: proxyUsers.status });
      const limited = await db
        .update(proxyUsers)
        .set({ status: 'limited', updatedAt: at })
        .where(
          and(
            eq(proxyUsers.status, 'active'),
            sql`${proxyUsers.dataLimitBytes} is not null and ${proxyUsers.usedUpBytes} + ${proxyUsers.usedDownBytes} >= ${proxyUsers.dataLimitBytes}`,
          ),
        )
        .returning({ id: proxyUsers.id, status: proxyUsers.status });
      return [...expired, ...limited];
    },

    /**
     * Starts a new period for users whose reset period has passed since their last reset: usage
     * to zero, `limited` back to `active`. Returns them with the status they had.
     */
    async resetDue(at: Date): Promise<{ id: string; wasLimited: boolean }[]> {
      const iso = at.toISOString();
      return db.transaction(async (tx) => {
        const due = await tx
          .select({ id: proxyUsers.id, status: proxyUsers.status })
          .from(proxyUsers)
          .where(
            sql`(${proxyUsers.resetPeriod} = 'daily' and ${proxyUsers.lastResetAt} + interval '1 day' <= ${iso}::timestamptz)
             or (${proxyUsers.resetPeriod} = 'weekly' and ${proxyUsers.lastResetAt} + interval '7 days' <= ${iso}::timestamptz)
             or (${proxyUsers.resetPeriod} = 'monthly' and ${proxyUsers.lastResetAt} + interval '1 month' <= ${iso}::timestamptz)`,
          )
          .for('update');
        if (due.length === 0) return [];
        await tx
          .update(proxyUsers)
          .set({
            usedUpBytes: 0,
            usedDownBytes: 0,
            lastResetAt: at,
            status: sql`case when ${proxyUsers.status} = 'limited' then 'active' else ${proxyUsers.status} end`,
            updatedAt: at,
          })
          .where(
            inArray(
              proxyUsers.id,
              due.map((d) => d.id),
            ),
          );
        return due.map((d) => ({ id: d.id, wasLimited: d.status === 'limited' }));
      });
    },

    /** Hourly usage of one user between two times, oldest first. */
    async usage(userId: string, from: Date, to: Date) {
      return db
        .select({ hour: proxyUserUsage.hour, up: proxyUserUsage.upBytes, down: proxyUserUsage.downBytes })
        .from(proxyUserUsage)
        .where(
          and(
            eq(proxyUserUsage.userId, userId),
            sql`${proxyUserUsage.hour} >= ${from.toISOString()}::timestamptz and ${proxyUserUsage.hour} < ${to.toISOString()}::timestamptz`,
          ),
        )
        .orderBy(asc(proxyUserUsage.hour));
    },

    /** Hourly usage of one node between two times, oldest first. */
    async nodeUsage(node: NodeKey, from: Date, to: Date) {
      return db
        .select({
          hour: proxyUserNodeUsage.hour,
          up: proxyUserNodeUsage.upBytes,
          down: proxyUserNodeUsage.downBytes,
        })
        .from(proxyUserNodeUsage)
        .where(
          and(
            eq(proxyUserNodeUsage.hostId, node.hostId),
            eq(proxyUserNodeUsage.instance, node.instance),
            sql`${proxyUserNodeUsage.hour} >= ${from.toISOString()}::timestamptz and ${proxyUserNodeUsage.hour} < ${to.toISOString()}::timestamptz`,
          ),
        )
        .orderBy(asc(proxyUserNodeUsage.hour));
    },
  };
}

/** The first per-user port handed out on a one-port-per-user proxy (shadowsocks-libev). */
export const PORT_BASE = 20_000;

export type ProxyUsersRepository = ReturnType<typeof createProxyUsersRepository>;
