// User accounts: creating them, and the first admin a fresh controller needs. There is never a
// fixed default password: the first admin's password is generated and shown once.
import { randomBytes } from 'node:crypto';
import { KeelError } from '@keel/shared';
import type { UserRole, UsersRepository } from '../repositories/users.ts';
import type { AuditService } from './audit.ts';
import { hashPassword, normalizeUsername, publicUser, type PublicUser } from './auth.ts';

/** Usernames: lower case letters, digits, `.`, `_`, `-`; 1-64 characters, starting alphanumeric. */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

/** A random 24-character password (144 bits) from the URL-safe base64 alphabet. */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

export interface UsersServiceDeps {
  users: UsersRepository;
  audit: AuditService;
}

/** Account management. */
export function createUsersService({ users, audit }: UsersServiceDeps) {
  async function create(input: {
    username: string;
    password: string;
    role: UserRole;
    actor: string;
    ip?: string | null;
  }): Promise<PublicUser> {
    const username = normalizeUsername(input.username);
    if (!USERNAME_PATTERN.test(username)) {
      throw new KeelError(
        'request.invalid',
        'A username is 1-64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit.',
      );
    }
    if (input.password.length < MIN_PASSWORD_LENGTH || input.password.length > MAX_PASSWORD_LENGTH) {
      throw new KeelError(
        'request.invalid',
        `A password is ${MIN_PASSWORD_LENGTH}-${MAX_PASSWORD_LENGTH} characters long.`,
      );
    }
    const row = await users.create({
      username,
      passwordHash: await hashPassword(input.password),
      role: input.role,
    });
    if (!row) throw new KeelError('user.exists', `The username "${username}" is taken.`);
    await audit.record(
      input.actor,
      'user.create',
      `user:${row.id}`,
      { username, role: row.role },
      input.ip ?? null,
    );
    return publicUser(row);
  }

  return {
    create,

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
