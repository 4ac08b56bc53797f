// The audit log table: appends that extend the hash chain, and ordered reads to verify it.
import { and, asc, count, desc, eq, gt, like, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { auditLog, type AuditRow } from '../db/schema/audit.ts';
import { users } from '../db/schema/users.ts';

export type { AuditRow };

/** What a caller supplies for a new audit row; the chain fields are filled in on append. */
export interface AuditEntry {
  at: Date;
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
  ip: string | null;
}

/** The hash of the row before the first one. */
export const AUDIT_GENESIS_HASH = '0'.repeat(64);

// Any fixed 64-bit key: the advisory lock that makes appends one-at-a-time across replicas.
const AUDIT_LOCK_KEY = 0x6b65656c_6175;

/** Audit log access. */
export function createAuditRepository(db: Db) {
  return {
    /**
     * Appends one row after the current tail, inside a transaction that holds an advisory lock, so
     * two writers (even on different controller replicas) can never link to the same tail.
     * `seal(prevHash)` computes the new row's hash. With `anchored` (the head this process last
     * anchored) it also says how many rows the chain now has, and whether that anchored row is
     * still there with its hash (false: rows were removed or changed behind our back).
     */
    async append(
      entry: AuditEntry,
      seal: (prevHash: string) => string,
      anchored: { id: number; hash: string; count: number } | null = null,
    ): Promise<{ row: AuditRow; count: number; anchoredIntact: boolean | null }> {
      return db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
        const [tail] = await tx
          .select({ id: auditLog.id, hash: auditLog.hash })
          .from(auditLog)
          .orderBy(desc(auditLog.id))
          .limit(1);
        const prevHash = tail?.hash ?? AUDIT_GENESIS_HASH;
        // The chain's length without counting the table each time: from our own anchored row on
        // (index range), and a full count only when there is no intact anchored row to start from.
        let anchoredIntact: boolean | null = null;
        let before: number;
        if (anchored) {
          const [still] = await tx
            .select({ hash: auditLog.hash })
            .from(auditLog)
            .where(eq(auditLog.id, anchored.id))
            .limit(1);
          anchoredIntact = still?.hash === anchored.hash;
        }
        if (anchored && anchoredIntact) {
          const [later] = await tx.select({ n: count() }).from(auditLog).where(gt(auditLog.id, anchored.id));
          before = anchored.count + (later?.n ?? 0);
        } else {
          const [all] = await tx.select({ n: count() }).from(auditLog);
          before = all?.n ?? 0;
        }
        const [row] = await tx
          .insert(auditLog)
          .values({ ...entry, prevHash, hash: seal(prevHash) })
          .returning();
        if (!row) throw new Error('audit insert returned no row');
        return { row, count: before + 1, anchoredIntact };
      });
    },

    /** The row with this id, if it exists. */
    async byId(id: number): Promise<AuditRow | null> {
      const [row] = await db.select().from(auditLog).where(eq(auditLog.id, id)).limit(1);
      return row ?? null;
    },

    /** Rows with id > afterId in chain order. */
    async page(afterId: number, limit: number): Promise<AuditRow[]> {
      return db
        .select()
        .from(auditLog)
        .where(gt(auditLog.id, afterId))
        .orderBy(asc(auditLog.id))
        .limit(limit);
    },

    /** The newest rows first. */
    async recent(limit: number): Promise<AuditRow[]> {
      return db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(limit);
    },

    /**
     * Rows newest first, older than `beforeId` when given, optionally only one actor's, one target's, one
     * action's, or one action family's (`host.` matches every `host.*` action); each with the
     * acting user's name.
     */
    async list(query: {
      beforeId?: number;
      limit: number;
      target?: string;
      action?: string;
      /** One actor: a user id, `system`, or `agent:<hostId>`. */
      actor?: string;
    }): Promise<(AuditRow & { actorName: string | null })[]> {
      const where: SQL[] = [];
      if (query.actor !== undefined) where.push(eq(auditLog.actor, query.actor));
      if (query.beforeId !== undefined) where.push(lt(auditLog.id, query.beforeId));
      if (query.target !== undefined) where.push(eq(auditLog.target, query.target));
      if (query.action !== undefined) {
        // `host.` is a family (every host.* action); anything else is one action exactly.
        where.push(
          query.action.endsWith('.')
            ? like(auditLog.action, `${query.action.replace(/[\\%_]/g, '\\$&')}%`)
            : eq(auditLog.action, query.action),
        );
      }
      const rows = await db
        .select({ row: auditLog, actorName: users.username })
        .from(auditLog)
        .leftJoin(users, sql`${users.id}::text = ${auditLog.actor}`)
        .where(where.length > 0 ? and(...where) : undefined)
        .orderBy(desc(auditLog.id))
        .limit(query.limit);
      return rows.map((r) => ({ ...r.row, actorName: r.actorName }));
    },
  };
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;
