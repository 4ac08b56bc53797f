// Proxy users (Marzban-style): one person's credentials for every protocol, their limits and
// status, the nodes (proxy instances) they are on, and their traffic. Usage is summed over all
// nodes: each node's last counter reading is kept as one block row (proxy_traffic: the counter
// epoch and every user's cumulative up/down), so a scrape of 10,000 users writes one row per node,
// not one per user; the period usage lives on the user row; charts read hourly buckets (one row
// per user per hour with traffic, one per node per hour). See docs/proxies.md.
import { sql } from 'drizzle-orm';
import {
  bigint,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';
import { users } from './users.ts';

/** active: on its nodes; disabled: by an admin; limited: over its data limit; expired: past expiry. */
export type ProxyUserStatus = 'active' | 'disabled' | 'limited' | 'expired';
export type ProxyUserResetPeriod = 'none' | 'daily' | 'weekly' | 'monthly';

export const proxyUsers = pgTable(
  'proxy_users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The stable id rendered into configs (telemt [access.users] key, v2ray client email). */
    name: text('name').notNull().unique(),
    /** The console user who owns it; a user without `proxy.users.all` sees only their own. */
    ownerId: uuid('owner_id').references(() => users.id, { onDelete: 'set null' }),
    status: text('status').$type<ProxyUserStatus>().notNull().default('active'),
    /** MTProxy secret: 32 lower-case hex. */
    secret: text('secret').notNull(),
    /** VLESS / VMess id (sealed at rest, like secret and password: repositories/proxy-users.ts). */
    uuid: text('uuid').notNull(),
    /** Trojan / Shadowsocks password. */
    password: text('password').notNull(),
    /** Bytes (up + down) allowed per period; null: unlimited. */
    dataLimitBytes: bigint('data_limit_bytes', { mode: 'number' }),
    resetPeriod: text('reset_period').$type<ProxyUserResetPeriod>().notNull().default('none'),
    lastResetAt: timestamp('last_reset_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    maxConnections: integer('max_connections'),
    maxUniqueIps: integer('max_unique_ips'),
    note: text('note').notNull().default(''),
    /**
     * The subscription URL's credential: 32 random bytes, base64url. Stored as is (not hashed),
     * because the console shows the URL again whenever it is asked (the protocol secrets it
     * unlocks are stored as is too, as they must go into configs); rotating it ends the old URL.
     */
    subscriptionToken: text('subscription_token').notNull().unique(),
    /** Usage in the current period, summed over every node. */
    usedUpBytes: bigint('used_up_bytes', { mode: 'number' }).notNull().default(0),
    usedDownBytes: bigint('used_down_bytes', { mode: 'number' }).notNull().default(0),
    /** Usage since the user was made (never reset). */
    lifetimeBytes: bigint('lifetime_bytes', { mode: 'number' }).notNull().default(0),
    /** The last time traffic was seen. */
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('proxy_users_owner').on(t.ownerId, t.name), index('proxy_users_status').on(t.status)],
);

export type ProxyUserRow = typeof proxyUsers.$inferSelect;

/** Which nodes (host + instance) a user is on, and on which inbounds (null: all). */
export const proxyUserNodes = pgTable(
  'proxy_user_nodes',
  {
    userId: uuid('user_id')
      .notNull()
      .references(() => proxyUsers.id, { onDelete: 'cascade' }),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    inbounds: jsonb('inbounds').$type<string[] | null>(),
    /** The user's own port on a one-user-per-port proxy (shadowsocks-libev), allocated here. */
    port: integer('port'),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.hostId, t.instance] }),
    index('proxy_user_nodes_node').on(t.hostId, t.instance),
  ],
);

/**
 * The last counter reading of one node: its counter epoch and each user's cumulative bytes, as
 * `{ [userName]: [up, down] }`. A scrape computes deltas against it inside one transaction (row
 * locked), so two controllers scraping at once never count a byte twice.
 */
export const proxyTraffic = pgTable(
  'proxy_traffic',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    counterEpoch: text('counter_epoch').notNull(),
    counters: jsonb('counters')
      .$type<Record<string, [number, number]>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    scrapedAt: timestamp('scraped_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.hostId, t.instance] })],
);

/** Traffic per user per hour (all nodes together), for the user's chart. */
export const proxyUserUsage = pgTable(
  'proxy_user_usage',
  {
    userId: uuid('user_id')
      .notNull()
      .references(() => proxyUsers.id, { onDelete: 'cascade' }),
    hour: timestamp('hour', { withTimezone: true }).notNull(),
    upBytes: bigint('up_bytes', { mode: 'number' }).notNull().default(0),
    downBytes: bigint('down_bytes', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.userId, t.hour] })],
);

/** Users' traffic per node per hour, for the node's chart. */
export const proxyUserNodeUsage = pgTable(
  'proxy_user_node_usage',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    hour: timestamp('hour', { withTimezone: true }).notNull(),
    upBytes: bigint('up_bytes', { mode: 'number' }).notNull().default(0),
    downBytes: bigint('down_bytes', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.hostId, t.instance, t.hour] })],
);
