// The audit trail: every mutating action becomes one hash-chained row. Appends go through one
// queue per process and an advisory lock in the database, so the chain never forks. After each
// append the new head is anchored outside the database (audit-anchor.ts), so verify also finds the
// newest rows removed, which the chain alone cannot show.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditAnchor, AuditAnchorState } from './audit-anchor.ts';
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

/**
 * The outcome of walking the chain. `anchored` says whether the chain's head was checked against
 * the anchor (false: no anchor yet, e.g. a controller without a data dir or before its first append).
 */
export type AuditVerification =
  | { ok: true; rows: number; anchored: boolean }
  | { ok: false; rows: number; brokenAt: number; reason: string; anchored: boolean };

export interface AuditServiceDeps {
  audit: AuditRepository;
  log: Logger;
  now?: () => Date;
  /** Where the chain's head is kept outside the database (the controller's data dir). */
  anchor?: AuditAnchor;
}

function short(hash: string): string {
  return `${hash.slice(0, 12)}…`;
}

/** Records and verifies the audit trail. */
export function createAuditService({ audit, log, now = () => new Date(), anchor }: AuditServiceDeps) {
  // One append at a time in this process: callers queue here rather than all waiting on the
  // database lock (PGlite has a single connection, so that would also serialize every query).
  let tail: Promise<unknown> = Promise.resolve();
  const watchers = new Set<(entry: AuditEntry) => void>();
  let anchorState: AuditAnchorState | null | undefined; // undefined: not read yet
  let anchorProblem: string | null = null;

  function readAnchor(): AuditAnchorState | null {
    if (anchorState === undefined) {
      try {
        anchorState = anchor?.read() ?? null;
      } catch (err) {
        // Appends go on (they must not stop because of it), verify reports it.
        anchorProblem = `the anchor ${anchor?.where} could not be read: ${(err as Error).message}`;
        log.error({ err }, 'audit anchor unreadable');
        anchorState = null;
      }
    }
    return anchorState;
  }

  // Anchor writes go one at a time, and while one is in progress only the newest state waits: a
  // burst of appends costs one or two file syncs, not one each. Until a write lands the anchor
  // lags the table, which verify accepts (it checks the anchored row, not the newest one).
  let anchorWriting: Promise<void> | null = null;
  let anchorNext: AuditAnchorState | null = null;
  function persistAnchor(state: AuditAnchorState): void {
    anchorNext = state;
    if (anchorWriting || !anchor) return;
    const drain = async () => {
      while (anchorNext) {
        const write = anchorNext;
        anchorNext = null;
        try {
          await anchor.write(write);
        } catch (err) {
          log.error({ err }, 'audit anchor not written');
        }
      }
      anchorWriting = null;
    };
    anchorWriting = drain();
  }

  async function appendAnchored(entry: AuditEntry): Promise<AuditRow> {
    const state = anchor ? readAnchor() : null;
    const { row, count, anchoredIntact } = await audit.append(
      entry,
      (prevHash) => auditRowHash(prevHash, entry),
      state?.head ?? null,
    );
    if (anchor) {
      const next: AuditAnchorState = { head: { id: row.id, hash: row.hash, count } };
      // The anchored head is gone or changed: rows were removed behind our back. Keep the first
      // such head in the anchor so verify goes on saying so after new rows are appended.
      const missing =
        state?.missing ??
        (state && anchoredIntact === false
          ? { ...state.head, detectedAt: entry.at.toISOString() }
          : undefined);
      if (missing) {
        next.missing = missing;
        if (!state?.missing)
          log.error({ missing }, 'audit rows anchored earlier are missing from the database');
      }
      anchorState = next;
      persistAnchor(next);
    }
    return row;
  }

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
      const appended = tail.then(async () => {
        const row = await appendAnchored(entry);
        for (const watch of watchers) {
          try {
            watch(entry);
          } catch (err) {
            log.error({ err, action }, 'audit watcher failed');
          }
        }
        return row;
      });
      tail = appended.catch(() => undefined);
      appended.catch((err: unknown) => log.error({ err, action, target }, 'audit append failed'));
      return appended;
    },

    /**
     * Calls `listener` with each entry once it is stored (so what it records is already in the
     * database). Returns the function that stops it. Live views use it to follow access changes.
     */
    watch(listener: (entry: AuditEntry) => void): () => void {
      watchers.add(listener);
      return () => watchers.delete(listener);
    },

    /** Resolves once the anchor file holds the latest head (tests, and shutdown). */
    async flushAnchor(): Promise<void> {
      while (anchorWriting) await anchorWriting;
    },

    /** One page of the trail, newest first (see AuditRepository.list). */
    list: audit.list,

    /**
     * Walks the whole chain in order; reports the first row whose link or hash is wrong, then checks
     * the head against the anchor: the anchored row must still be there, with its hash, at its
     * position, so removing the newest rows (or all of them) is found too.
     */
    async verify(): Promise<AuditVerification> {
      const state = anchor ? readAnchor() : null;
      const anchored = state !== null;
      const head = state?.head;
      let prevHash = AUDIT_GENESIS_HASH;
      let afterId = 0;
      let rows = 0;
      let headSeen = false;
      for (;;) {
        const page = await audit.page(afterId, 1000);
        for (const row of page) {
          if (row.prevHash !== prevHash) {
            return {
              ok: false,
              rows,
              brokenAt: row.id,
              reason: 'prev_hash does not match the previous row',
              anchored,
            };
          }
          if (auditRowHash(row.prevHash, row) !== row.hash) {
            return {
              ok: false,
              rows,
              brokenAt: row.id,
              reason: 'hash does not match the row content',
              anchored,
            };
          }
          prevHash = row.hash;
          afterId = row.id;
          rows++;
          if (head && row.id === head.id) {
            if (row.hash !== head.hash || rows !== head.count) {
              return {
                ok: false,
                rows,
                brokenAt: row.id,
                reason: `row ${row.id} is not the head anchored in ${anchor!.where} (hash ${short(head.hash)}, row ${head.count} of the chain)`,
                anchored,
              };
            }
            headSeen = true;
          }
        }
        if (page.length < 1000) break;
      }
      if (anchorProblem) return { ok: false, rows, brokenAt: afterId, reason: anchorProblem, anchored };
      if (state?.missing) {
        const m = state.missing;
        return {
          ok: false,
          rows,
          brokenAt: m.id,
          reason: `rows were removed: row ${m.id} (hash ${short(m.hash)}, row ${m.count} of the chain), anchored in ${anchor!.where}, was gone when the next row was appended (${m.detectedAt})`,
          anchored,
        };
      }
      if (head && !headSeen) {
        return {
          ok: false,
          rows,
          brokenAt: head.id,
          reason:
            rows === 0
              ? `every row was removed: the anchor in ${anchor!.where} names row ${head.id} (row ${head.count} of the chain), the table is empty`
              : `the newest rows were removed: the anchor in ${anchor!.where} names row ${head.id} (hash ${short(head.hash)}, row ${head.count} of the chain), the chain ends at row ${afterId} after ${rows} rows`,
          anchored,
        };
      }
      return { ok: true, rows, anchored };
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
