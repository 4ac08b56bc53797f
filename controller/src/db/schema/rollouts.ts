// Agent rollouts: a staged upgrade of the fleet's agents to one bundle the controller holds —
// canary hosts first, then batches, halted on the first failure. Rows are the rollout's whole
// state, so a controller that restarts picks every running rollout up where it was.
import { index, integer, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';

export const agentRollouts = pgTable('agent_rollouts', {
  id: uuid('id').primaryKey().defaultRandom(),
  /** The agent version the hosts move to, its bundle's SHA-256 and size when the rollout began. */
  version: text('version').notNull(),
  sha256: text('sha256').notNull(),
  size: integer('size').notNull(),
  /** running, paused, halted (a host failed), cancelled, done. */
  state: text('state').notNull(),
  /** Hosts upgraded alone first, then hosts per batch. */
  canary: integer('canary').notNull(),
  batchSize: integer('batch_size').notNull(),
  /** How long a host's new agent has to come back online (the agent's own watchdog bound too). */
  confirmSeconds: integer('confirm_seconds').notNull(),
  /** Starts a host's new agent gets (the first included) before its launcher switches it back. */
  maxStarts: integer('max_starts').notNull().default(3),
  /** Why it halted or was cancelled. */
  reason: text('reason'),
  createdBy: text('created_by').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
});

export const agentRolloutHosts = pgTable(
  'agent_rollout_hosts',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => agentRollouts.id, { onDelete: 'cascade' }),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    /** Order in the rollout: positions below `canary` are the canaries. */
    position: integer('position').notNull(),
    /** pending, upgrading, ok, failed, rolled-back, cancelled. */
    state: text('state').notNull(),
    /** The version the host ran when its upgrade began. */
    fromVersion: text('from_version'),
    reason: text('reason'),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.rolloutId, t.hostId] }), index('agent_rollout_hosts_host').on(t.hostId)],
);

export type AgentRolloutRow = typeof agentRollouts.$inferSelect;
export type AgentRolloutHostRow = typeof agentRolloutHosts.$inferSelect;
