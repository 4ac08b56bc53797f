// Hosts: enrollment (which consumes a join token), presence, facts and revocation.
import { and, asc, eq, gt, inArray, isNull, sql } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import { KeelError, type HostFacts } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import { hosts, type HostRow } from '../db/schema/hosts.ts';
import { joinTokens } from '../db/schema/join-tokens.ts';
import type { HostView } from '../gateway/types.ts';
import { hashJoinTokenSecret } from './join-tokens.ts';

/** A host as stored; dates are Date objects (see {@link toHostView} for the API shape). */
export type Host = HostRow;

/** What an agent presents to enroll. */
export interface EnrollInput {
  /** The agent's ed25519 public key, raw 32 bytes as base64url. */
  publicKey: string;
  name: string;
  facts: HostFacts | null;
  /** The join token's plaintext secret (`kjt_...`). */
  tokenSecret: string;
  /** Enrollment time; also the instant the token's expiry is checked against. Default: now. */
  at?: Date;
}

export interface HostRepository {
  /** The host enrolled with this public key (revoked or not), or null. */
  findByPublicKey(publicKey: string): Promise<Host | null>;
  /** Which of these hosts are revoked (or gone), in one query. */
  revokedAmong(ids: readonly string[]): Promise<Set<string>>;
  /** The hosts enrolled with any of these keys, in one query. */
  findByPublicKeys(publicKeys: readonly string[]): Promise<Host[]>;
  /**
   * Consumes one use of the join token and creates the host, in one transaction. Throws KeelError
   * `enroll.token_invalid` (unknown or revoked token), `enroll.token_expired`, `enroll.token_used`
   * or `enroll.key_exists`; on any error the token is left untouched.
   */
  enroll(input: EnrollInput): Promise<Host>;
  /** Records a live session: online, connected and seen at `at`. Null when no such host. */
  markOnline(id: string, at: Date): Promise<Host | null>;
  /** Records the end of a session: offline, last seen at `at`. Null when no such host. */
  markOffline(id: string, at: Date): Promise<Host | null>;
  /** Marks every host offline (at controller start, when no session can be live); returns how many changed. */
  markAllOffline(): Promise<number>;
  /** Stores fresh facts (and the agent version they carry). Null when no such host. */
  updateFacts(id: string, facts: HostFacts, at?: Date): Promise<Host | null>;
  /** Revokes a host (idempotent: the first revocation time is kept) and marks it offline. Null when no such host. */
  revoke(id: string, at: Date): Promise<Host | null>;
  /**
   * Applies many hosts' presence and facts changes in one transaction (the gateway's group
   * commit) and returns the changed rows. A revoked host is never marked online.
   */
  applyPresence(changes: ReadonlyMap<string, PresenceChange>, at: Date): Promise<Host[]>;
  /** Every host, by name. */
  list(): Promise<Host[]>;
  get(id: string): Promise<Host | null>;
}

/** One host's pending presence/facts change. */
export interface PresenceChange {
  online?: boolean;
  facts?: HostFacts;
}

/** The API/console shape of a host (ISO dates, no key material). */
export function toHostView(host: Host): HostView {
  return {
    id: host.id,
    name: host.name,
    online: host.online,
    connectedAt: host.connectedAt?.toISOString() ?? null,
    lastSeenAt: host.lastSeenAt?.toISOString() ?? null,
    enrolledAt: host.enrolledAt.toISOString(),
    revokedAt: host.revokedAt?.toISOString() ?? null,
    agentVersion: host.agentVersion,
    facts: host.facts,
  };
}

const PUBLIC_KEY = /^[A-Za-z0-9_-]{43}$/;

/** Host storage over a drizzle database. */
export function createHostRepository(db: Db): HostRepository {
  async function updateOne(id: string, values: PgUpdateSetSource<typeof hosts>): Promise<Host | null> {
    if (!isUuid(id)) return null;
    const [row] = await db.update(hosts).set(values).where(eq(hosts.id, id)).returning();
    return row ?? null;
  }

  return {
    async findByPublicKey(publicKey) {
      const [row] = await db.select().from(hosts).where(eq(hosts.publicKey, publicKey)).limit(1);
      return row ?? null;
    },

    async revokedAmong(ids) {
      const valid = ids.filter(isUuid);
      const rows =
        valid.length === 0
          ? []
          : await db
              .select({ id: hosts.id, revokedAt: hosts.revokedAt })
              .from(hosts)
              .where(inArray(hosts.id, valid));
      const live = new Set(rows.filter((r) => r.revokedAt === null).map((r) => r.id));
      return new Set(ids.filter((id) => !live.has(id)));
    },

    async findByPublicKeys(publicKeys) {
      if (publicKeys.length === 0) return [];
      return db
        .select()
        .from(hosts)
        .where(inArray(hosts.publicKey, [...publicKeys]));
    },

    async enroll({ publicKey, name, facts, tokenSecret, at = new Date() }) {
      if (!PUBLIC_KEY.test(publicKey)) {
        throw new KeelError('request.invalid', 'The public key must be 32 bytes as unpadded base64url.');
      }
      const secretHash = hashJoinTokenSecret(tokenSecret);
      return db.transaction(async (tx) => {
        // One atomic statement decides who gets the last use: concurrent callers queue on the row
        // lock and re-check `uses_left > 0` after the winner commits (READ COMMITTED re-evaluation).
        const consumed = await tx
          .update(joinTokens)
          .set({ usesLeft: sql`${joinTokens.usesLeft} - 1`, lastUsedAt: at })
          .where(
            and(
              eq(joinTokens.secretHash, secretHash),
              gt(joinTokens.usesLeft, 0),
              gt(joinTokens.expiresAt, at),
              isNull(joinTokens.revokedAt),
            ),
          )
          .returning({ id: joinTokens.id });
        if (consumed.length === 0) {
          const [token] = await tx
            .select({
              expiresAt: joinTokens.expiresAt,
              usesLeft: joinTokens.usesLeft,
              revokedAt: joinTokens.revokedAt,
            })
            .from(joinTokens)
            .where(eq(joinTokens.secretHash, secretHash));
          if (!token || token.revokedAt) throw new KeelError('enroll.token_invalid');
          if (token.expiresAt <= at) throw new KeelError('enroll.token_expired');
          throw new KeelError('enroll.token_used');
        }
        const [host] = await tx
          .insert(hosts)
          .values({
            publicKey,
            name,
            facts,
            factsUpdatedAt: facts ? at : null,
            agentVersion: facts?.agentVersion ?? null,
            enrolledAt: at,
          })
          .onConflictDoNothing({ target: hosts.publicKey })
          .returning();
        // Throwing rolls the token use back: a key that is already enrolled costs no use.
        if (!host) throw new KeelError('enroll.key_exists');
        return host;
      });
    },

    markOnline(id, at) {
      return updateOne(id, { online: true, connectedAt: at, lastSeenAt: at });
    },

    markOffline(id, at) {
      return updateOne(id, { online: false, lastSeenAt: at });
    },

    async markAllOffline() {
      const rows = await db
        .update(hosts)
        .set({ online: false })
        .where(eq(hosts.online, true))
        .returning({ id: hosts.id });
      return rows.length;
    },

    updateFacts(id, facts, at = new Date()) {
      return updateOne(id, { facts, factsUpdatedAt: at, agentVersion: facts.agentVersion });
    },

    async applyPresence(changes, at) {
      const ids = [...changes.keys()].filter(isUuid);
      if (ids.length === 0) return [];
      const online = ids.filter((id) => changes.get(id)!.online === true);
      const offline = ids.filter((id) => changes.get(id)!.online === false);
      return db.transaction(async (tx) => {
        if (online.length > 0) {
          await tx
            .update(hosts)
            .set({ online: true, connectedAt: at, lastSeenAt: at })
            .where(and(inArray(hosts.id, online), isNull(hosts.revokedAt)));
        }
        if (offline.length > 0) {
          await tx.update(hosts).set({ online: false, lastSeenAt: at }).where(inArray(hosts.id, offline));
        }
        const withFacts = ids.flatMap((id) => {
          const facts = changes.get(id)!.facts;
          return facts ? [{ id, facts }] : [];
        });
        if (withFacts.length > 0) {
          // One statement for the whole batch: the facts travel as one JSON document.
          await tx.execute(sql`
            update ${hosts} set
              facts = v.facts,
              facts_updated_at = ${at.toISOString()}::timestamptz,
              agent_version = v.facts->>'agentVersion'
            from jsonb_to_recordset(${JSON.stringify(withFacts)}::jsonb) as v(id uuid, facts jsonb)
            where ${hosts.id} = v.id`);
        }
        return tx.select().from(hosts).where(inArray(hosts.id, ids));
      });
    },

    revoke(id, at) {
      return updateOne(id, {
        revokedAt: sql`coalesce(${hosts.revokedAt}, ${at.toISOString()}::timestamptz)`,
        online: false,
      });
    },

    list() {
      return db.select().from(hosts).orderBy(asc(hosts.name), asc(hosts.id));
    },

    async get(id) {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(hosts).where(eq(hosts.id, id)).limit(1);
      return row ?? null;
    },
  };
}
