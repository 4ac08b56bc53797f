// Controller replicas sharing the database: one row per running controller process, renewed while
// it runs. A host's live session names the replica holding it (hosts.session_replica), so a replica
// that starts or sweeps resets the presence of hosts whose replica is gone, never another live one's.
import { pgTable, timestamp, uuid } from 'drizzle-orm/pg-core';

export const controllerReplicas = pgTable('controller_replicas', {
  /** Random per process start: a restarted controller is a new replica. */
  id: uuid('id').primaryKey(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  /** Renewed every few seconds by the replica itself (database time, so clocks need not agree). */
  heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }).notNull().defaultNow(),
});
