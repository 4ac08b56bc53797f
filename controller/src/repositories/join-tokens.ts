// Join tokens: created with a random secret that is shown once and stored only as its SHA-256.
import { createHash, randomBytes } from 'node:crypto';
import { desc, eq } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import { joinTokens, type JoinTokenRow } from '../db/schema/join-tokens.ts';

/** A join token as listed: everything but the secret's hash. */
export type JoinToken = Omit<JoinTokenRow, 'secretHash'>;

export interface CreateJoinTokenInput {
  /** Lifetime in seconds from `now`. */
  ttlSeconds: number;
  /** How many enrollments it allows (default 1). */
  uses?: number;
  note?: string | null;
  /** The user who created it. */
  createdBy?: string | null;
  /** Creation time (default: now). */
  now?: Date;
}

export interface JoinTokenRepository {
  /** Creates a token; the plaintext `secret` is returned here and never again. */
  create(input: CreateJoinTokenInput): Promise<{ token: JoinToken; secret: string }>;
  /** Every token (expired and used ones too), newest first. */
  list(): Promise<JoinToken[]>;
  get(id: string): Promise<JoinToken | null>;
  /** Deletes a token; false when there was none with this id. Hosts enrolled with it stay. */
  delete(id: string): Promise<boolean>;
}

/** Prefix of every join token secret, so leaked tokens are easy to recognise (and to scan for). */
export const JOIN_TOKEN_PREFIX = 'kjt_';

/** A fresh join token secret: `kjt_` + 32 random bytes as base64url. */
export function generateJoinTokenSecret(): string {
  return JOIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

const listed = {
  id: joinTokens.id,
  note: joinTokens.note,
  createdBy: joinTokens.createdBy,
  createdAt: joinTokens.createdAt,
  expiresAt: joinTokens.expiresAt,
  usesLeft: joinTokens.usesLeft,
  lastUsedAt: joinTokens.lastUsedAt,
  revokedAt: joinTokens.revokedAt,
};

/** sha256 hex of a join token secret: the only form in which secrets are stored or looked up. */
export function hashJoinTokenSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Join token storage over a drizzle database. */
export function createJoinTokenRepository(db: Db): JoinTokenRepository {
  return {
    async create({ ttlSeconds, uses = 1, note = null, createdBy = null, now = new Date() }) {
      if (!Number.isInteger(uses) || uses < 1) throw new RangeError('uses must be a positive integer');
      if (!Number.isFinite(ttlSeconds)) throw new RangeError('ttlSeconds must be a finite number');
      const secret = generateJoinTokenSecret();
      const [token] = await db
        .insert(joinTokens)
        .values({
          secretHash: hashJoinTokenSecret(secret),
          note,
          createdBy,
          createdAt: now,
          expiresAt: new Date(now.getTime() + ttlSeconds * 1000),
          usesLeft: uses,
        })
        .returning(listed);
      if (!token) throw new Error('join token insert returned no row');
      return { token, secret };
    },

    list() {
      return db.select(listed).from(joinTokens).orderBy(desc(joinTokens.createdAt), desc(joinTokens.id));
    },

    async get(id) {
      if (!isUuid(id)) return null;
      const [row] = await db.select(listed).from(joinTokens).where(eq(joinTokens.id, id));
      return row ?? null;
    },

    async delete(id) {
      if (!isUuid(id)) return false;
      const rows = await db.delete(joinTokens).where(eq(joinTokens.id, id)).returning({ id: joinTokens.id });
      return rows.length > 0;
    },
  };
}
