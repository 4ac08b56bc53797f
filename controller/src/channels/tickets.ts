// Channel tickets: what lets a browser open a channel WebSocket. A ticket is issued by
// `POST /api/v1/hosts/:id/channels` after the permission check, is bound to the user, the host, the
// kind and its params, works once, and expires after 30 s (KEEL_CHANNEL_TICKET_TTL_SECONDS). WebSocket URLs end up in proxy logs and
// browser history, so the ticket, not the session cookie, authorizes the socket: a leaked ticket
// is useless after one use or half a minute.
import { createHash, randomBytes } from 'node:crypto';

/** How long a ticket may wait to be used, by default (`KEEL_CHANNEL_TICKET_TTL_SECONDS`). */
export const TICKET_TTL_MS = 30_000;
/** Tickets outstanding at once; issuing more drops the oldest (each is good for 30 s by default anyway). */
const MAX_OUTSTANDING = 10_000;

/** What a ticket grants. */
export interface ChannelGrant {
  userId: string;
  hostId: string;
  kind: string;
  params: unknown;
  /** The API token the ticket was issued through (its scope is re-checked on long sessions). */
  tokenId?: string;
  /** Epoch ms after which the ticket no longer works. */
  expiresAt: number;
}

/** The outstanding tickets of this controller (in memory: a ticket lives 30 s by default). */
export class TicketBook {
  #byHash = new Map<string, ChannelGrant>();
  #now: () => number;
  #ttlMs: number;

  /** `ttlMs`: how long a ticket may wait to be used (default TICKET_TTL_MS). */
  constructor(opts: { now?: () => number; ttlMs?: number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#ttlMs = opts.ttlMs ?? TICKET_TTL_MS;
  }

  /** Issues a ticket for `grant`; returns the secret (only its hash is kept). */
  issue(grant: Omit<ChannelGrant, 'expiresAt'>): { ticket: string; expiresAt: Date } {
    this.#prune();
    if (this.#byHash.size >= MAX_OUTSTANDING) {
      const oldest = this.#byHash.keys().next().value;
      if (oldest !== undefined) this.#byHash.delete(oldest);
    }
    const ticket = randomBytes(32).toString('base64url');
    const expiresAt = this.#now() + this.#ttlMs;
    this.#byHash.set(hash(ticket), { ...grant, expiresAt });
    return { ticket, expiresAt: new Date(expiresAt) };
  }

  /** Uses a ticket: returns its grant once, or null when unknown, used or expired. */
  redeem(ticket: string | null | undefined): ChannelGrant | null {
    if (!ticket || ticket.length > 128) return null;
    const key = hash(ticket);
    const grant = this.#byHash.get(key);
    if (!grant) return null;
    this.#byHash.delete(key); // single use, whatever happens next
    return grant.expiresAt > this.#now() ? grant : null;
  }

  /** Tickets outstanding (for tests). */
  get size(): number {
    return this.#byHash.size;
  }

  #prune(): void {
    const now = this.#now();
    // Insertion order is expiry order (one TTL per book), so expired ones are at the front.
    for (const [key, grant] of this.#byHash) {
      if (grant.expiresAt > now) break;
      this.#byHash.delete(key);
    }
  }
}

function hash(ticket: string): string {
  return createHash('sha256').update(ticket).digest('base64url');
}
