// Wallet sign-in (EIP-4361, Sign-In with Ethereum): Ethereum addresses linked to console users, and
// the single-use nonces a signed message must carry. Off unless an admin turns it on
// (access_settings.wallet_sign_in).
import { index, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { users } from './users.ts';

export const wallets = pgTable(
  'wallets',
  {
    /** The address in lower case (`0x` + 40 hex digits): one user per address. */
    address: text('address').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** The chain the linking message was signed for. */
    chainId: integer('chain_id').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  },
  (t) => [index('wallets_user_idx').on(t.userId)],
);

/**
 * Nonces handed out for a message to sign: deleted when used (so a message is accepted once) or
 * when expired. A `link` nonce belongs to the signed-in user who asked for it.
 */
export const walletNonces = pgTable(
  'wallet_nonces',
  {
    nonce: text('nonce').primaryKey(),
    purpose: text('purpose', { enum: ['login', 'link'] }).notNull(),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'cascade' }),
    /** The address that asked (bounds how many one address may hold at once). */
    ip: text('ip'),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('wallet_nonces_expires_idx').on(t.expiresAt), index('wallet_nonces_ip_idx').on(t.ip)],
);

export type WalletRow = typeof wallets.$inferSelect;
