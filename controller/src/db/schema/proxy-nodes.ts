// Proxy nodes (one proxy instance on one host, e.g. nginx `edge` on host A), every configuration
// generation pushed to them, and staged rollouts over many nodes. Generations are keyed by host and
// instance, not by node row: deleting a node and making it again keeps its history and keeps the
// numbers going up, so the agent (which refuses a generation <= the one it applied) never sees a
// number reused.
import { sql } from 'drizzle-orm';
import {
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';

/** A file as the agent rendered and applied it. */
export interface RenderedFile {
  path: string;
  sha256: string;
  content: string;
}

/** A file as a generation row holds it: the content by hash (inline only in rows from before 0.2). */
export interface StoredFile {
  path: string;
  /** As the agent reported it. */
  sha256: string;
  /** The config_contents key (SHA-256 of the content, computed by the controller); absent when empty. */
  ref?: string;
  /** Rows from before config_contents hold the content here. */
  content?: string;
}

/**
 * Rendered file contents by SHA-256, stored once however many generations and nodes share them (a
 * user change fanned out to 20 nodes renders 20 identical files). Rows no generation refers to are
 * deleted when generations are pruned, once unused for a while (`usedAt`: a push may be about to
 * refer to a row it found).
 */
export const configContents = pgTable('config_contents', {
  sha256: text('sha256').primaryKey(),
  content: text('content').notNull(),
  bytes: integer('bytes').notNull(),
  usedAt: timestamp('used_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * The sorted user ids rendered into generations, by the SHA-256 of the list: a generation names its
 * set instead of holding 10,000 ids, and nodes with the same users share one row.
 */
export const configUserSets = pgTable('config_user_sets', {
  sha256: text('sha256').primaryKey(),
  userIds: jsonb('user_ids').$type<string[]>().notNull(),
  count: integer('count').notNull(),
  usedAt: timestamp('used_at', { withTimezone: true }).notNull().defaultNow(),
});

/** A local edit of an applied file, as the agent reported it. */
export interface DriftEntry {
  path: string;
  /** Unified diff from the applied content to what is on the host (trimmed by the agent). */
  diff: string;
  /** When the controller learned of it (epoch ms). */
  at: number;
}

export const proxyNodes = pgTable(
  'proxy_nodes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    adapter: text('adapter').notNull(),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull(),
    /**
     * The DNS name or address users' share links and subscriptions point at (a node behind NAT or
     * a CDN is reached at another address than the host's name); null: the host's name.
     */
    publicAddress: text('public_address'),
    /** `pending` (settings not applied yet), `applied`, `failed` (the last push did not apply). */
    state: text('state').$type<'pending' | 'applied' | 'failed'>().notNull().default('pending'),
    /** The generation the agent runs (the last one applied or adopted), null before the first. */
    currentGeneration: integer('current_generation'),
    /** The highest generation number handed out for this host and instance. */
    lastGeneration: integer('last_generation').notNull().default(0),
    /** Local edits of applied files the agent reported and nobody resolved yet. */
    drift: jsonb('drift')
      .$type<DriftEntry[]>()
      .notNull()
      .default(sql`'[]'::jsonb`),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [unique('proxy_nodes_host_instance').on(t.hostId, t.instance)],
);

export type ProxyNodeRow = typeof proxyNodes.$inferSelect;

/** What became of a generation. */
export type GenerationOutcome = 'pending' | 'applied' | 'refused' | 'rolled-back' | 'failed';

export const configGenerations = pgTable(
  'config_generations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    generation: integer('generation').notNull(),
    adapter: text('adapter').notNull(),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull(),
    /**
     * The ids of the proxy users rendered into it (their secrets live with the users), for rows
     * written before user sets; `[]` when `userSet` names them.
     */
    userIds: jsonb('user_ids').$type<string[]>().notNull(),
    /** The user set (config_user_sets.sha256) rendered into it: 20 nodes with the same users share one. */
    userSet: text('user_set'),
    /**
     * The rendered files as the agent applied them (empty when it did not apply): path and sha256,
     * the content in config_contents by its hash (rows written before that carry it inline).
     */
    files: jsonb('files')
      .$type<StoredFile[]>()
      .notNull()
      .default(sql`'[]'::jsonb`),
    /** `apply`, `rollback`, `rollout`, `host-edit` (adopted drift), `overwrite` (drift undone). */
    origin: text('origin').notNull(),
    /** For a rollback: the generation whose settings it re-pushed. */
    rollbackOf: integer('rollback_of'),
    /** A user id, or `system` / `rollout:<id>` for pushes nobody clicked. */
    actor: text('actor').notNull(),
    reason: text('reason'),
    outcome: text('outcome').$type<GenerationOutcome>().notNull().default('pending'),
    /** How the agent applied it: unchanged, api, hot-reload, reload, restart. */
    method: text('method'),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    unique('config_generations_host_instance_generation').on(t.hostId, t.instance, t.generation),
    index('config_generations_user_set').on(t.userSet),
  ],
);

export type ConfigGenerationRow = typeof configGenerations.$inferSelect;

/** `running`, `halted` (a step failed, or the controller stopped mid-way), `completed`, `cancelled`. */
export type RolloutState = 'running' | 'halted' | 'completed' | 'cancelled';

export const configRollouts = pgTable('config_rollouts', {
  id: uuid('id').primaryKey().defaultRandom(),
  /** The settings pushed to every node (all of one adapter), or null to re-apply each node's own. */
  adapter: text('adapter'),
  settings: jsonb('settings').$type<Record<string, unknown>>(),
  /** Nodes in the canary stage (applied one by one before any batch). */
  canary: integer('canary').notNull(),
  batchSize: integer('batch_size').notNull(),
  state: text('state').$type<RolloutState>().notNull(),
  haltReason: text('halt_reason'),
  actor: text('actor').notNull(),
  reason: text('reason'),
  /**
   * Renewed every few seconds by the controller replica running it: a replica that starts (or
   * sweeps) halts only `running` rollouts whose heartbeat went stale, not one a live replica runs.
   */
  heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
});

export type ConfigRolloutRow = typeof configRollouts.$inferSelect;

/**
 * `pending` (not tried yet; a halted rollout leaves the rest pending), `running`, `applied`, `failed`,
 * `interrupted` (the controller stopped while it ran: whether it applied is read back on resume).
 */
export type RolloutStepState = 'pending' | 'running' | 'applied' | 'failed' | 'interrupted';

export const configRolloutSteps = pgTable(
  'config_rollout_steps',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => configRollouts.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    /** 0 for the canary stage, then 1, 2, … */
    stage: integer('stage').notNull(),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    instance: text('instance').notNull(),
    state: text('state').$type<RolloutStepState>().notNull().default('pending'),
    generation: integer('generation'),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.rolloutId, t.position] }),
    index('config_rollout_steps_host').on(t.hostId),
  ],
);

export type ConfigRolloutStepRow = typeof configRolloutSteps.$inferSelect;
