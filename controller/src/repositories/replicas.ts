// Controller replicas and the presence they hold: each running controller has a row it renews, and
// a host's live session names its replica (hosts.session_replica). Hosts whose replica is gone
// (stopped, crashed, or silent past the lease) are the only ones another replica marks offline.
import { inArray, sql } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { hosts } from '../db/schema/hosts.ts';
import { isUuid } from '../db/errors.ts';
import { controllerReplicas } from '../db/schema/replicas.ts';
import type { Host } from './hosts.ts';

export interface ReplicaRepository {
  /** Records a replica as alive now (database time). */
  register(id: string): Promise<void>;
  /** Renews a replica's heartbeat; false when its row is gone (another replica judged it dead). */
  renew(id: string): Promise<boolean>;
  /** Removes a replica (at a clean stop). */
  remove(id: string): Promise<void>;
  /**
   * Forgets replicas other than `self` whose heartbeat is older than `staleMs` (every other one
   * with 0), then marks offline every online host whose session replica is not a live replica
   * (none recorded counts as gone). Returns the hosts it marked offline.
   */
  releaseOrphans(self: string, staleMs: number): Promise<Host[]>;
  /** Which of `ids` are recorded replicas (a lease releaseOrphans has not forgotten yet). */
  live(ids: string[]): Promise<string[]>;
}

export function createReplicaRepository(db: Db): ReplicaRepository {
  return {
    async register(id) {
      await db
        .insert(controllerReplicas)
        .values({ id })
        .onConflictDoUpdate({ target: controllerReplicas.id, set: { heartbeatAt: sql`now()` } });
    },

    async renew(id) {
      const rows = await db
        .update(controllerReplicas)
        .set({ heartbeatAt: sql`now()` })
        .where(sql`${controllerReplicas.id} = ${id}`)
        .returning({ id: controllerReplicas.id });
      return rows.length > 0;
    },

    async remove(id) {
      await db.delete(controllerReplicas).where(sql`${controllerReplicas.id} = ${id}`);
    },

    async releaseOrphans(self, staleMs) {
      await db
        .delete(controllerReplicas)
        .where(
          sql`${controllerReplicas.id} <> ${self} and ${controllerReplicas.heartbeatAt} <= now() - ${staleMs} * interval '1 millisecond'`,
        );
      // A host going online in the same moment names a live replica (its own, registered before it
      // accepts agents), so it is never caught here.
      return db
        .update(hosts)
        .set({ online: false, sessionReplica: null })
        .where(
          sql`${hosts.online} and (${hosts.sessionReplica} is null or ${hosts.sessionReplica} not in (select ${controllerReplicas.id} from ${controllerReplicas}))`,
        )
        .returning();
    },

    async live(ids) {
      // Lease ids are UUIDs (the column's type); anything else names no replica.
      ids = ids.filter(isUuid);
      if (ids.length === 0) return [];
      const rows = await db
        .select({ id: controllerReplicas.id })
        .from(controllerReplicas)
        .where(inArray(controllerReplicas.id, ids));
      return rows.map((r) => r.id);
    },
  };
}
