// Authorization: what a signed-in actor may do, named as permissions rather than roles. Today a
// role maps to a fixed permission set and applies to every host; host-group grants will narrow
// `requireHostAccess` later without touching the routes and services that call it.
import { KeelError } from '@keel/shared';
import type { UserRole } from '../repositories/users.ts';

/** Every permission Keel checks. */
export const permissions = [
  /** See hosts, their facts, events and presence. */
  'host.view',
  /** Ask a host's agent for something harmless (ping, refresh facts). */
  'host.operate',
  /** Revoke hosts (and, later, rename, move between groups). */
  'host.manage',
  /** Start, stop and restart supervised processes. */
  'process.control',
  /** Read process logs, live or stored. */
  'logs.read',
  /** Open a terminal on a host. */
  'terminal.open',
  /** Apply proxy and service configurations. */
  'config.apply',
  'files.read',
  'files.write',
  /** Read and verify the audit trail. */
  'audit.read',
  'users.manage',
  /** List join tokens (no secrets). */
  'tokens.view',
  /** Create and delete join tokens (enroll hosts). */
  'tokens.manage',
  /** Open diagnostic `echo` channels (measuring the channel primitive). */
  'channel.echo',
] as const;

/** One permission. */
export type Permission = (typeof permissions)[number];

const viewer: readonly Permission[] = ['host.view', 'logs.read', 'tokens.view'];
const operator: readonly Permission[] = [
  ...viewer,
  'host.operate',
  'process.control',
  'config.apply',
  'files.read',
];
const admin: readonly Permission[] = [
  ...operator,
  'host.manage',
  'terminal.open',
  'files.write',
  'audit.read',
  'users.manage',
  'tokens.manage',
  'channel.echo',
];

/**
 * What each of today's roles may do. The mapping keeps the behaviour the role checks had before
 * permissions (viewer reads, operator acts on hosts, admin manages) and places the new
 * capabilities: a terminal or writing files is as strong as a root shell, so admins only.
 */
export const rolePermissions: Readonly<Record<UserRole, ReadonlySet<Permission>>> = {
  viewer: new Set(viewer),
  operator: new Set(operator),
  admin: new Set(admin),
  owner: new Set(permissions),
};

/** Who is acting: a signed-in user (id and role are enough today). */
export interface Actor {
  id: string;
  role: UserRole;
}

/** True when `actor` holds `permission` (on every host, as long as there are no host groups). */
export function hasPermission(actor: Actor, permission: Permission): boolean {
  return rolePermissions[actor.role]?.has(permission) ?? false;
}

/**
 * Throws `auth.forbidden` unless `actor` holds `permission`. For actions not about a host
 * (audit, users, join tokens).
 */
export function requireAccess(actor: Actor | undefined, permission: Permission): void {
  if (!actor) throw new KeelError('auth.required');
  if (!hasPermission(actor, permission)) {
    throw new KeelError('auth.forbidden', `This needs the ${permission} permission.`);
  }
}

/**
 * Throws `auth.forbidden` unless `actor` holds `permission` on every host in `hostIds`. Today a
 * role's permissions cover all hosts; host-group grants will be checked here.
 *
 * @example requireHostAccess(actor, 'terminal.open', [hostId])
 */
export function requireHostAccess(
  actor: Actor | undefined,
  permission: Permission,
  hostIds: readonly string[],
): void {
  void hostIds; // every host, until host groups exist
  requireAccess(actor, permission);
}
