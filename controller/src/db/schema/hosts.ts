// Enrolled hosts: one row per agent identity (its ed25519 public key), with presence and facts.
import { boolean, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import type { HostFacts } from '@keel/shared';

export const hosts = pgTable('hosts', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  /** The agent's static ed25519 public key, raw 32 bytes as base64url (no padding). */
  publicKey: text('public_key').notNull().unique(),
  enrolledAt: timestamp('enrolled_at', { withTimezone: true }).notNull().defaultNow(),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
  online: boolean('online').notNull().default(false),
  connectedAt: timestamp('connected_at', { withTimezone: true }),
  lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
  /** The controller replica holding the host's live session (controller_replicas.id); null offline. */
  sessionReplica: uuid('session_replica'),
  agentVersion: text('agent_version'),
  facts: jsonb('facts').$type<HostFacts>(),
  factsUpdatedAt: timestamp('facts_updated_at', { withTimezone: true }),
});

export type HostRow = typeof hosts.$inferSelect;
