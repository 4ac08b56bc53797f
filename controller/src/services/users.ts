// User accounts: creating them, and the first admin a fresh controller needs. There is never a
// fixed default password: the first admin's password is generated and shown once.
import { randomBytes } from 'node:crypto';
import { KeelError } from '@keel/shared';
import type { GroupsRepository } from '../repositories/groups.ts';
import type { SessionsRepository } from '../repositories/sessions.ts';
import type { UserRole, UserRow, UsersRepository } from '../repositories/users.ts';
import { grantRoles, scopedRoles } from './access.ts';
import type { AuditService } from './audit.ts';
import {
  hashPassword as hashProductionPassword,
  normalizeUsername,
  publicUser,
  type PublicUser,
} from './auth.ts';
import { commonPasswords } from './users-common-passwords.ts';

/** Usernames: lower case letters, digits, `.`, `_`, `-`; 1-64 characters, starting alphanumeric. */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

/** A random 24-character password (144 bits) from the URL-safe base64 alphabet. */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * The password policy: 12-1024 characters, not one of the common passwords shipped with Keel
 * (`users-common-passwords.ts`, compared case-insensitively), and not the username. Throws
 * `user.weak_password` (400) saying which rule.
 */
export function checkPasswordPolicy(password: string, username?: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new KeelError(
      'user.weak_password',
      `A password is ${MIN_PASSWORD_LENGTH}-${MAX_PASSWORD_LENGTH} characters long.`,
    );
  }
  const lower = password.toLowerCase();
  if (commonPasswords.has(lower)) {
    throw new KeelError('user.weak_password', 'This password is on the list of common passwords.');
  }
  if (username && lower.includes(username.toLowerCase()) && username.length >= 4) {
    throw new KeelError('user.weak_password', 'A password must not contain the username.');
  }
}

/** A user as admins see them. */
export interface UserView extends PublicUser {
  scoped: boolean;
  twoFactor: boolean;
  createdAt: string;
  lastLoginAt: string | null;
}

function userView(row: UserRow): UserView {
  return {
    ...publicUser(row),
    scoped: row.scoped,
    twoFactor: row.totpEnabledAt !== null,
    createdAt: row.createdAt.toISOString(),
    lastLoginAt: row.lastLoginAt?.toISOString() ?? null,
  };
}

/** Who is managing users: their id and role (an admin cannot touch owners), and address. */
export interface Manager {
  id: string;
  role: UserRole;
  ip: string | null;
}

export interface UsersServiceDeps {
  users: UsersRepository;
  audit: AuditService;
  /** Grants live with the groups; without them the grant methods are unavailable (CLI). */
  groups?: GroupsRepository;
  sessions?: SessionsRepository;
  now?: () => Date;
  /** How new passwords are hashed (auth.ts `hashPassword`: argon2id at the production cost). */
  hashPassword?: (password: string) => Promise<string>;
}

/** Account management. */
export function createUsersService({
  users,
  audit,
  groups,
  sessions,
  now = () => new Date(),
  hashPassword = hashProductionPassword,
}: UsersServiceDeps) {
  /** Admins manage admins, operators and viewers; only an owner touches owners. */
  function mayManage(manager: Manager, role: UserRole): void {
    if (role === 'owner' && manager.role !== 'owner') {
      throw new KeelError('auth.forbidden', 'Only an owner can create, change or remove owners.');
    }
  }

  async function found(id: string): Promise<UserRow> {
    const row = await users.findById(id);
    if (!row) throw new KeelError('user.not_found');
    return row;
  }

  function requireGroups(): GroupsRepository {
    if (!groups) throw new Error('users service built without the groups repository');
    return groups;
  }

  async function create(input: {
    username: string;
    password: string;
    role: UserRole;
    actor: string;
    ip?: string | null;
    scoped?: boolean;
  }): Promise<PublicUser> {
    const username = normalizeUsername(input.username);
    if (!USERNAME_PATTERN.test(username)) {
      throw new KeelError(
        'request.invalid',
        'A username is 1-64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit.',
      );
    }
    checkPasswordPolicy(input.password, username);
    if (input.scoped && !scopedRoles.includes(input.role)) {
      throw new KeelError('request.invalid', 'Only operators and viewers can be limited to host groups.');
    }
    const row = await users.create({
      username,
      passwordHash: await hashPassword(input.password),
      role: input.role,
      scoped: input.scoped ?? false,
    });
    if (!row) throw new KeelError('user.exists', `The username "${username}" is taken.`);
    await audit.record(
      input.actor,
      'user.create',
      `user:${row.id}`,
      { username, role: row.role, scoped: row.scoped },
      input.ip ?? null,
    );
    return publicUser(row);
  }

  return {
    create,

    /** Throws unless `manager` may manage user `id` (exists; owners only by owners). */
    async checkManageable(manager: Manager, id: string): Promise<void> {
      mayManage(manager, (await found(id)).role);
    },

    async list(): Promise<UserView[]> {
      return (await users.list()).map(userView);
    },

    async get(id: string): Promise<UserView> {
      return userView(await found(id));
    },

    /**
     * Creates a user for an admin. Without a password, one is generated and returned once (the
     * caller hands it over; it is never stored or logged).
     */
    async createBy(
      manager: Manager,
      input: { username: string; password?: string; role: UserRole; scoped?: boolean },
    ): Promise<{ user: UserView; password: string | null }> {
      mayManage(manager, input.role);
      const password = input.password ?? generatePassword();
      const made = await create({ ...input, password, actor: manager.id, ip: manager.ip });
      return { user: await this.get(made.id), password: input.password === undefined ? password : null };
    },

    /** Changes a user's role or scope. The last owner cannot be demoted; no one changes their own role. */
    async update(
      manager: Manager,
      id: string,
      input: { role?: UserRole; scoped?: boolean },
    ): Promise<UserView> {
      const before = await found(id);
      mayManage(manager, before.role);
      if (input.role) mayManage(manager, input.role);
      if (id === manager.id && input.role !== undefined && input.role !== before.role) {
        throw new KeelError('auth.forbidden', 'You cannot change your own role.');
      }
      const role = input.role ?? before.role;
      const scoped = input.scoped ?? before.scoped;
      if (scoped && !scopedRoles.includes(role)) {
        throw new KeelError('request.invalid', 'Only operators and viewers can be limited to host groups.');
      }
      if (before.role === 'owner' && role !== 'owner' && (await users.countOwners()) <= 1) {
        throw new KeelError('user.last_owner');
      }
      const row = await users.update(id, { role, scoped });
      if (!row) throw new KeelError('user.not_found');
      await audit.record(
        manager.id,
        'user.update',
        `user:${id}`,
        { from: { role: before.role, scoped: before.scoped }, to: { role, scoped } },
        manager.ip,
      );
      return userView(row);
    },

    /** Deletes a user (their sessions, tokens and grants go with them). */
    async remove(manager: Manager, id: string): Promise<void> {
      const before = await found(id);
      mayManage(manager, before.role);
      if (id === manager.id) throw new KeelError('auth.forbidden', 'You cannot delete your own account.');
      if (before.role === 'owner' && (await users.countOwners()) <= 1) throw new KeelError('user.last_owner');
      if (!(await users.delete(id))) throw new KeelError('user.not_found');
      await audit.record(manager.id, 'user.delete', `user:${id}`, { username: before.username }, manager.ip);
    },

    /**
     * Sets a new password for a user (admin reset, or the CLI with `manager` null): generated when
     * not given and returned once; every session of the user ends.
     */
    async resetPassword(
      manager: Manager | null,
      id: string,
      password?: string,
    ): Promise<{ password: string; generated: boolean }> {
      const before = await found(id);
      if (manager) mayManage(manager, before.role);
      const next = password ?? generatePassword();
      checkPasswordPolicy(next, before.username);
      await users.setPasswordHash(id, await hashPassword(next), now());
      await sessions?.deleteForUser(id);
      await audit.record(
        manager?.id ?? 'system',
        'user.password_reset',
        `user:${id}`,
        { username: before.username, by: manager ? 'admin' : 'cli' },
        manager?.ip ?? null,
      );
      return { password: next, generated: password === undefined };
    },

    /** The CLI's reset (`keel-controller reset-password`): by username, audited as `system`. */
    async resetPasswordByName(username: string, password?: string) {
      const row = await users.findByUsername(normalizeUsername(username));
      if (!row) throw new KeelError('user.not_found', `No user "${username}".`);
      return this.resetPassword(null, row.id, password);
    },

    /** A user's grants. */
    async grants(id: string) {
      await found(id);
      return requireGroups().grantsOf(id);
    },

    /** Grants `role` on a group to a user (replacing an earlier grant on that group). */
    async grant(manager: Manager, userId: string, input: { groupId: string; role: UserRole }) {
      const target = await found(userId);
      mayManage(manager, target.role);
      if (!grantRoles.includes(input.role)) {
        throw new KeelError(
          'request.invalid',
          `A grant gives ${grantRoles.join(', ')}; owner is fleet-wide.`,
        );
      }
      // An admin cannot hand out more than an admin holds (grants carry host permissions only).
      const repo = requireGroups();
      const group = await repo.get(input.groupId);
      if (!group) throw new KeelError('group.not_found');
      const row = await repo.grant({ userId, groupId: input.groupId, role: input.role });
      await audit.record(
        manager.id,
        'grant.create',
        `user:${userId}`,
        { group: group.name, groupId: group.id, role: input.role },
        manager.ip,
      );
      return row;
    },

    async revokeGrant(manager: Manager, userId: string, grantId: string): Promise<void> {
      const target = await found(userId);
      mayManage(manager, target.role);
      const row = await requireGroups().revokeGrant(userId, grantId);
      if (!row) throw new KeelError('grant.not_found');
      await audit.record(
        manager.id,
        'grant.delete',
        `user:${userId}`,
        { groupId: row.groupId, role: row.role },
        manager.ip,
      );
    },

    /**
     * Creates an admin account (the `keel-controller create-admin` command). Without a password,
     * one is generated and returned so the caller can print it once.
     */
    async createAdmin(input: {
      username: string;
      password?: string;
      role?: 'owner' | 'admin';
    }): Promise<{ user: PublicUser; password: string; generated: boolean }> {
      const generated = input.password === undefined;
      const password = input.password ?? generatePassword();
      const user = await create({
        username: input.username,
        password,
        role: input.role ?? 'admin',
        actor: 'system',
      });
      return { user, password, generated };
    },

    /**
     * On a controller with no users yet, creates `admin` (role owner) with a generated password and
     * returns it so the process prints it once; returns null when any user exists.
     */
    async ensureFirstAdmin(): Promise<{ user: PublicUser; password: string } | null> {
      if ((await users.count()) > 0) return null;
      const password = generatePassword();
      try {
        const user = await create({ username: 'admin', password, role: 'owner', actor: 'system' });
        return { user, password };
      } catch (err) {
        // Another replica bootstrapped first.
        if (err instanceof KeelError && err.code === 'user.exists') return null;
        throw err;
      }
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
