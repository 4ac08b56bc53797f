// Traffic accounting (issue 9 item 4): bytes each host's interfaces moved, per UTC day, so a billing
// cycle of any reset day is a sum of whole days. Bytes come from the interface counters in each
// stored metrics tick, turned into deltas against the last reading kept per host and interface
// (robust to counter resets, reboots and 32-bit wraps: repositories/traffic.ts), in the same
// transaction that stores the tick, so a resent tick is never counted twice. See docs/metrics.md.
import {
  bigint,
  date,
  pgTable,
  primaryKey,
  real,
  smallint,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';

/** Bytes received and sent per host, interface and UTC day. */
export const trafficDaily = pgTable(
  'traffic_daily',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    iface: text('iface').notNull(),
    /** The UTC day the bytes were moved in (a delta belongs to the day of its end minus 1 ms). */
    day: date('day', { mode: 'string' }).notNull(),
    rxBytes: bigint('rx_bytes', { mode: 'number' }).notNull(),
    txBytes: bigint('tx_bytes', { mode: 'number' }).notNull(),
  },
  (t) => [primaryKey({ name: 'traffic_daily_pk', columns: [t.hostId, t.iface, t.day] })],
);

/** The last counter reading per host and interface: what the next tick's delta is taken against. */
export const trafficCounters = pgTable(
  'traffic_counters',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    iface: text('iface').notNull(),
    /** The tick the reading is from. */
    ts: timestamp('ts', { withTimezone: true, precision: 3 }).notNull(),
    rxBytes: bigint('rx_bytes', { mode: 'number' }).notNull(),
    txBytes: bigint('tx_bytes', { mode: 'number' }).notNull(),
    /** The host's uptime at that tick, seconds (a smaller one later means a reboot); null if unknown. */
    uptime: real('uptime'),
  },
  (t) => [primaryKey({ name: 'traffic_counters_pk', columns: [t.hostId, t.iface] })],
);

/** A host's billing cycle: the day of the month it resets on (UTC) and an optional quota. */
export const trafficPlans = pgTable('traffic_plans', {
  hostId: uuid('host_id')
    .primaryKey()
    .references(() => hosts.id, { onDelete: 'cascade' }),
  /** 1-31; in a shorter month the cycle starts on its last day. */
  resetDay: smallint('reset_day').notNull(),
  /** Bytes (received + sent) the provider includes per cycle; null = no quota. */
  quotaBytes: bigint('quota_bytes', { mode: 'number' }),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
