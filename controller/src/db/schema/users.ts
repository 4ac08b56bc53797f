// Console users and their sessions. A session row is keyed by the SHA-256 of the cookie secret,
// so a database dump does not hand out live sessions.
import {
  boolean,
  index,
  integer,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

/** Roles, from most to least powerful. */
export const userRole = pgEnum('user_role', ['owner', 'admin', 'operator', 'viewer']);

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  username: text('username').notNull().unique(),
  passwordHash: text('password_hash').notNull(),
  role: userRole('role').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  failedLogins: integer('failed_logins').notNull().default(0),
  lockedUntil: timestamp('locked_until', { withTimezone: true }),
  lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
  /**
   * True: the user reaches hosts only through grants on host groups (their role then gives no
   * host permission of its own). Only operators and viewers can be scoped.
   */
  scoped: boolean('scoped').notNull().default(false),
  /** Base32 TOTP secret; set at enrollment, in force once `totp_enabled_at` is set. */
  totpSecret: text('totp_secret'),
  totpEnabledAt: timestamp('totp_enabled_at', { withTimezone: true }),
  /** The last TOTP time step accepted: a code is never accepted twice (replay within its window). */
  totpLastStep: integer('totp_last_step'),
  passwordChangedAt: timestamp('password_changed_at', { withTimezone: true }),
});

/** Single-use 2FA recovery codes, stored as SHA-256 (they are 80-bit random strings). */
export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text('code_hash').notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.userId, t.codeHash] })],
);

/** Controller-wide access settings (one row, id 1): which roles must use two-factor sign-in, wallet sign-in. */
export const accessSettings = pgTable('access_settings', {
  id: integer('id').primaryKey(),
  /** Roles that must enroll TOTP before they can do anything but enroll. */
  twoFactorRoles: text('two_factor_roles').array().notNull().default([]),
  /** Wallet sign-in (EIP-4361) on: linked wallets may sign in. Off by default. */
  walletSignIn: boolean('wallet_sign_in').notNull().default(false),
  /** EIP-155 chain ids a sign-in message may name (1: Ethereum mainnet). */
  walletChainIds: integer('wallet_chain_ids').array().notNull().default([1]),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const sessions = pgTable(
  'sessions',
  {
    /** Hex SHA-256 of the secret in the `keel_session` cookie; the secret itself is never stored. */
    id: text('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    csrfToken: text('csrf_token').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull().defaultNow(),
    ip: text('ip'),
    userAgent: text('user_agent'),
    /** False between a correct password and the second factor: the session can only finish sign-in. */
    verified: boolean('verified').notNull().default(true),
  },
  (t) => [index('sessions_user_id_idx').on(t.userId), index('sessions_expires_at_idx').on(t.expiresAt)],
);

export type UserRow = typeof users.$inferSelect;
export type SessionRow = typeof sessions.$inferSelect;
export type UserRole = (typeof userRole.enumValues)[number];
