// The audit trail: every mutating action becomes one hash-chained row. Appends go through one
// queue per process and an advisory lock in the database, so the chain never forks.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  AUDIT_GENESIS_HASH,
  type AuditEntry,
  type AuditRepository,
  type AuditRow,
} from '../repositories/audit.ts';

/** Who did something: a user id, `system`, or `agent:<hostId>`. */
export type AuditActor = string;

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** The hash of one row: sha256(prevHash || canonical JSON of the row's content), hex. */
export function auditRowHash(prevHash: string, entry: AuditEntry): string {
  const content = canonicalJson({
    at: entry.at.toISOString(),
    actor: entry.actor,
    action: entry.action,
    target: entry.target,
    detail: entry.detail,
    ip: entry.ip,
  });
  return createHash('sha256').update(prevHash).update(content).digest('hex');
}

/** The outcome of walking the chain. */
export type AuditVerification =
  { ok: true; rows: number } | { ok: false; rows: number; brokenAt: number; reason: string };

export interface AuditServiceDeps {
  audit: AuditRepository;
  log: Logger;
  now?: () => Date;
}

/** Records and verifies the audit trail. */
export function createAuditService({ audit, log, now = () => new Date() }: AuditServiceDeps) {
  // One append at a time in this process: callers queue here rather than all waiting on the
  // database lock (PGlite has a single connection, so that would also serialize every query).
  let tail: Promise<unknown> = Promise.resolve();

  return {
    /**
     * Appends one row to the chain and resolves when it is stored.
     * @example await audit.record(user.id, 'host.revoke', `host:${id}`, { name }, ip)
     */
    record(
      actor: AuditActor,
      action: string,
      target: string | null,
      detail: Record<string, unknown> = {},
      ip: string | null = null,
    ): Promise<AuditRow> {
      // Round-trip detail through JSON now so the hash covers exactly what jsonb will store.
      const entry: AuditEntry = {
        at: now(),
        actor,
        action,
        target,
        detail: JSON.parse(canonicalJson(detail)) as Record<string, unknown>,
        ip,
      };
      const appended = tail.then(() => audit.append(entry, (prevHash) => auditRowHash(prevHash, entry)));
      tail = appended.catch(() => undefined);
      appended.catch((err: unknown) => log.error({ err, action, target }, 'audit append failed'));
      return appended;
    },

    /** One page of the trail, newest first (see AuditRepository.list). */
    list: audit.list,

    /** Walks the whole chain in order; reports the first row whose link or hash is wrong. */
    async verify(): Promise<AuditVerification> {
      let prevHash = AUDIT_GENESIS_HASH;
      let afterId = 0;
      let rows = 0;
      for (;;) {
        const page = await audit.page(afterId, 1000);
        for (const row of page) {
          if (row.prevHash !== prevHash) {
            return { ok: false, rows, brokenAt: row.id, reason: 'prev_hash does not match the previous row' };
          }
          if (auditRowHash(row.prevHash, row) !== row.hash) {
            return { ok: false, rows, brokenAt: row.id, reason: 'hash does not match the row content' };
          }
          prevHash = row.hash;
          afterId = row.id;
          rows++;
        }
        if (page.length < 1000) return { ok: true, rows };
      }
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
