// Hosts: enrollment (which consumes a join token), presence, facts and revocation.
import { and, asc, eq, gt, inArray, isNull, sql } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import { KeelError, type HostFacts } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import { hosts, type HostRow } from '../db/schema/hosts.ts';
import { joinTokens } from '../db/schema/join-tokens.ts';
import { streamCursors } from '../db/schema/streams.ts';
import type { PresenceChange } from '../gateway/store.ts';
import type { HostView } from '../gateway/types.ts';
import { hashJoinTokenSecret } from './join-tokens.ts';

/** A host as stored; dates are Date objects (see {@link toHostView} for the API shape). */
export type Host = HostRow;

/** A host's identity as the agent gateway checks it. */
export interface HostKey {
  id: string;
  publicKey: string;
  revokedAt: Date | null;
}

const hostKeyColumns = { id: hosts.id, publicKey: hosts.publicKey, revokedAt: hosts.revokedAt };

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
  /**
   * What a starting agent session needs, in one query: whether each host is revoked (or gone)
   * and its stream cursors (acked sequence per stream).
   */
  sessionStates(
    ids: readonly string[],
  ): Promise<Map<string, { revoked: boolean; cursors: Record<string, number> }>>;
  /** The hosts enrolled with any of these keys (revoked or not), in one query. */
  findByPublicKeys(publicKeys: readonly string[]): Promise<HostKey[]>;
  /** Every host that is not revoked, as key -> id (the gateway's in-memory index at start). */
  activeKeys(): Promise<HostKey[]>;
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
   * commit) and returns the changed rows. A revoked host is never marked online. With `replica`
   * (the controller replica writing), online records it as the session's holder, and offline
   * applies only while the host's session is that replica's (or nobody's): a late offline from a
   * replica the agent has already left never hides its new session on another.
   */
  applyPresence(changes: ReadonlyMap<string, PresenceChange>, at: Date, replica?: string): Promise<Host[]>;
  /** Every host, by name. */
  list(): Promise<Host[]>;
  get(id: string): Promise<Host | null>;
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
    // Known only to the gateway holding the host's session (see HostsService / the gateway).
    capabilities: null,
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

    async sessionStates(ids) {
      // A host that does not exist (deleted) counts as revoked: no session may start for it.
      // Ids are matched case-insensitively (the database hands uuids back in lower case).
      const byId = new Map<string, { revoked: boolean; cursors: Record<string, number> }>();
      const valid = [...new Set(ids.filter(isUuid).map((id) => id.toLowerCase()))];
      if (valid.length > 0) {
        const rows = await db
          .select({
            id: hosts.id,
            revokedAt: hosts.revokedAt,
            stream: streamCursors.stream,
            ackedSeq: streamCursors.ackedSeq,
          })
          .from(hosts)
          .leftJoin(streamCursors, eq(streamCursors.hostId, hosts.id))
          // One array parameter, not one per id: the statement text stays the same whatever the
          // batch size, so the database prepares it once instead of once per size.
          .where(sql`${hosts.id} = any(${sql.param(valid)}::uuid[])`);
        for (const r of rows) {
          const state = byId.get(r.id) ?? { revoked: r.revokedAt !== null, cursors: {} };
          byId.set(r.id, state);
          if (r.stream !== null && r.ackedSeq !== null) state.cursors[r.stream] = r.ackedSeq;
        }
      }
      return new Map(ids.map((id) => [id, byId.get(id.toLowerCase()) ?? { revoked: true, cursors: {} }]));
    },

    async findByPublicKeys(publicKeys) {
      if (publicKeys.length === 0) return [];
      return db
        .select(hostKeyColumns)
        .from(hosts)
        .where(inArray(hosts.publicKey, [...publicKeys]));
    },

    async activeKeys() {
      return db.select(hostKeyColumns).from(hosts).where(isNull(hosts.revokedAt));
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

    async applyPresence(changes, at, replica) {
      const rows = [...changes].flatMap(([id, c]) =>
        isUuid(id)
          ? [{ id, online: c.online ?? null, facts: c.facts ?? null, version: c.agentVersion ?? null }]
          : [],
      );
      if (rows.length === 0) return [];
      // One statement for the whole batch (atomic without a transaction, one round trip): the
      // changes travel as one JSON document. A revoked host is never marked online.
      const at_ = sql`${at.toISOString()}::timestamptz`;
      const goesOnline = sql`(v.online is true and ${hosts.revokedAt} is null)`;
      const goesOffline =
        replica === undefined
          ? sql`(v.online is false)`
          : sql`(v.online is false and (${hosts.sessionReplica} is null or ${hosts.sessionReplica} = ${replica}::uuid))`;
      const holder = replica === undefined ? sql`null::uuid` : sql`${replica}::uuid`;
      return db
        .update(hosts)
        .set({
          online: sql`case when ${goesOnline} then true when ${goesOffline} then false else ${hosts.online} end`,
          sessionReplica: sql`case when ${goesOnline} then ${holder} when ${goesOffline} then null else ${hosts.sessionReplica} end`,
          connectedAt: sql`case when ${goesOnline} then ${at_} else ${hosts.connectedAt} end`,
          lastSeenAt: sql`case when ${goesOnline} or ${goesOffline} then ${at_} else ${hosts.lastSeenAt} end`,
          facts: sql`coalesce(v.facts, ${hosts.facts})`,
          factsUpdatedAt: sql`case when v.facts is null then ${hosts.factsUpdatedAt} else ${at_} end`,
          // Facts name the version; else the session going online announced it.
          agentVersion: sql`case when v.facts is not null then v.facts->>'agentVersion' when ${goesOnline} and v.version is not null then v.version else ${hosts.agentVersion} end`,
        })
        .from(
          sql`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as v(id uuid, online boolean, facts jsonb, version text)`,
        )
        .where(sql`${hosts.id} = v.id`)
        .returning();
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
