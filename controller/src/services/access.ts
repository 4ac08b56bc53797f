// Authorization: what a signed-in actor may do, named as permissions rather than roles. A user's
// role gives its permissions on every host (unless the user is scoped); grants of a role on a host
// group add that role's host permissions on the group's hosts. `requireHostAccess` is the one place
// that decides per host: a host the actor may not even see answers 404 (its existence is not
// told), a host it sees but may not act on answers 403. The matrix is written in docs/security.md
// (Permission matrix) and test/access-matrix.test.ts checks this file against it.
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
  /** Run commands on hosts (run-on-many jobs and schedules); as strong as a terminal. */
  'job.run',
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
  /** Create host groups, set their members and host tags. */
  'groups.manage',
  /** Create, change and delete one's own proxy users (secrets, limits, nodes); read their links. */
  'proxy.users.manage',
  /** The same for every owner's proxy users (without it, only the proxy users one owns). */
  'proxy.users.all',
  /** See service checks, alert rules, firing alerts and their history. */
  'monitoring.view',
  /** Silence alerts and set maintenance windows. */
  'monitoring.silence',
  /** Create and change checks, alert rules and notification channels (secrets included). */
  'monitoring.manage',
  /** Upgrade the fleet's agents: start, pause, resume and cancel agent rollouts. */
  'fleet.upgrade',
  /**
   * Scrape `/metrics` (Prometheus): the latest figures of the hosts one sees, plus the controller's
   * own. Its own permission so a scraper's API token can hold it and nothing else.
   */
  'metrics.read',
] as const;

/** One permission. */
export type Permission = (typeof permissions)[number];

const viewer: readonly Permission[] = [
  'host.view',
  'logs.read',
  'tokens.view',
  'monitoring.view',
  'metrics.read',
];
const operator: readonly Permission[] = [
  ...viewer,
  'host.operate',
  'process.control',
  'config.apply',
  'proxy.users.manage',
  'files.read',
  'monitoring.silence',
];
const admin: readonly Permission[] = [
  ...operator,
  'host.manage',
  'terminal.open',
  'job.run',
  'files.write',
  'audit.read',
  'users.manage',
  'tokens.manage',
  'proxy.users.all',
  'channel.echo',
  'groups.manage',
  'monitoring.manage',
  'fleet.upgrade',
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

/**
 * Permissions about one host: a grant on a group gives these (from its role) on the group's hosts,
 * and a scoped user holds them only through grants. The rest (audit, users, groups, join tokens)
 * are about the controller and come from the user's own role alone.
 */
export const hostPermissions: ReadonlySet<Permission> = new Set<Permission>([
  'host.view',
  'host.operate',
  'host.manage',
  'process.control',
  'logs.read',
  'terminal.open',
  'job.run',
  'config.apply',
  'files.read',
  'files.write',
  'channel.echo',
  'metrics.read',
]);

/** Roles a scoped user may have, and roles a grant may give (owner is fleet-wide by definition). */
export const scopedRoles: readonly UserRole[] = ['operator', 'viewer'];
export const grantRoles: readonly UserRole[] = ['admin', 'operator', 'viewer'];

/** Who is acting: a signed-in user, or an API token acting for one. */
export interface Actor {
  id: string;
  role: UserRole;
  /**
   * Permissions held on every host, and the controller-level ones. Absent: the role's set (an
   * unscoped user without grants).
   */
  fleet?: ReadonlySet<Permission>;
  /** Extra permissions per host id, from grants on groups. */
  hosts?: ReadonlyMap<string, ReadonlySet<Permission>>;
  /**
   * The host permissions the user's grants give (whether or not their groups hold hosts now), so a
   * route answers the same for an empty group as for a full one and the host decides 404 or 403.
   */
  granted?: ReadonlySet<Permission>;
}

function fleetOf(actor: Actor): ReadonlySet<Permission> {
  return actor.fleet ?? rolePermissions[actor.role] ?? new Set();
}

/**
 * The actor a user is, from their role, whether they are scoped, and the hosts their grants
 * reach (`grantsOnHosts`: one entry per host a grant covers, with the grant's role).
 */
export function actorOf(
  user: { id: string; role: UserRole; scoped?: boolean },
  grantsOnHosts: readonly { hostId: string; role: UserRole }[] = [],
  grantRolesHeld: readonly UserRole[] = [],
): Actor {
  const own = rolePermissions[user.role] ?? new Set<Permission>();
  const granted = new Set<Permission>();
  for (const r of [...grantRolesHeld, ...grantsOnHosts.map((g) => g.role)]) {
    for (const p of rolePermissions[r] ?? []) if (hostPermissions.has(p)) granted.add(p);
  }
  const fleet = user.scoped ? new Set([...own].filter((p) => !hostPermissions.has(p))) : own;
  const hosts = new Map<string, Set<Permission>>();
  for (const g of grantsOnHosts) {
    let set = hosts.get(g.hostId);
    if (!set) hosts.set(g.hostId, (set = new Set()));
    for (const p of rolePermissions[g.role] ?? []) if (hostPermissions.has(p)) set.add(p);
  }
  return { id: user.id, role: user.role, fleet, hosts, granted };
}

/**
 * Narrows an actor to what an API token allows: only `allowed` permissions, and with `hostIds`
 * (the hosts of the token's groups) only those hosts. Never more than the actor held.
 */
export function narrowActor(
  actor: Actor,
  allowed: ReadonlySet<string>,
  hostIds: ReadonlySet<string> | null,
): Actor {
  const fleet = fleetOf(actor);
  if (hostIds === null) {
    const hosts = new Map<string, Set<Permission>>();
    for (const [h, set] of actor.hosts ?? []) hosts.set(h, new Set([...set].filter((p) => allowed.has(p))));
    return {
      ...actor,
      fleet: new Set([...fleet].filter((p) => allowed.has(p))),
      hosts,
      granted: new Set([...(actor.granted ?? [])].filter((p) => allowed.has(p))),
    };
  }
  const hosts = new Map<string, Set<Permission>>();
  for (const h of hostIds) {
    const on = new Set<Permission>();
    for (const p of [...fleet, ...(actor.hosts?.get(h) ?? [])]) {
      if (hostPermissions.has(p) && allowed.has(p)) on.add(p);
    }
    if (on.size > 0) hosts.set(h, on);
  }
  return {
    ...actor,
    fleet: new Set([...fleet].filter((p) => allowed.has(p) && !hostPermissions.has(p))),
    hosts,
    granted: new Set(
      [...fleet, ...(actor.granted ?? [])].filter((p) => hostPermissions.has(p) && allowed.has(p)),
    ),
  };
}

/** True when `actor` holds `permission` on `hostId`. */
export function hasHostPermission(actor: Actor, permission: Permission, hostId: string): boolean {
  return fleetOf(actor).has(permission) || (actor.hosts?.get(hostId)?.has(permission) ?? false);
}

/** True when `actor` may see `hostId` at all (lists filter on this). */
export function canSeeHost(actor: Actor, hostId: string): boolean {
  return hasHostPermission(actor, 'host.view', hostId);
}

/**
 * True when `actor` holds `permission` somewhere: fleet-wide, or (for a host permission) through a
 * grant. Routes check this; services then check the host itself.
 */
export function hasPermission(actor: Actor, permission: Permission): boolean {
  if (fleetOf(actor).has(permission)) return true;
  if (!hostPermissions.has(permission)) return false;
  if (actor.granted?.has(permission)) return true;
  for (const set of actor.hosts?.values() ?? []) if (set.has(permission)) return true;
  return false;
}

/**
 * Throws `auth.forbidden` unless `actor` holds `permission` (somewhere, for a host permission).
 * For actions not about a host (audit, users, join tokens) this is the whole check.
 */
export function requireAccess(actor: Actor | undefined, permission: Permission): void {
  if (!actor) throw new KeelError('auth.required');
  if (!hasPermission(actor, permission)) {
    throw new KeelError('auth.forbidden', `This needs the ${permission} permission.`);
  }
}

/**
 * Throws unless `actor` holds `permission` on every host in `hostIds`: `host.not_found` (404) for
 * a host the actor may not see (so probing ids tells nothing), `auth.forbidden` (403) for one it
 * sees but may not act on.
 *
 * @example requireHostAccess(actor, 'terminal.open', [hostId])
 */
export function requireHostAccess(
  actor: Actor | undefined,
  permission: Permission,
  hostIds: readonly string[],
): void {
  if (!actor) throw new KeelError('auth.required');
  for (const hostId of hostIds) {
    if (!canSeeHost(actor, hostId)) throw new KeelError('host.not_found');
    if (!hasHostPermission(actor, permission, hostId)) {
      throw new KeelError('auth.forbidden', `This needs the ${permission} permission on this host.`);
    }
  }
}

/**
 * Audit actions after which what a signed-in user may see can have changed: roles, scope and
 * grants, group membership and host tags, sessions and tokens ended, passwords and 2FA reset, the
 * 2FA policy. Live streams re-read their user's access when one is recorded.
 */
const accessChangeActions = new Set([
  'auth.logout',
  'session.revoke',
  'api_token.revoke',
  'user.update',
  'user.delete',
  'user.password_change',
  'user.password_reset',
  'grant.create',
  'grant.delete',
  'group.create',
  'group.update',
  'group.delete',
  'host.tags',
  'host.revoke',
  'two_factor.disable',
  'two_factor.reset',
  'two_factor.policy',
]);

/** True when an audited action can change what some user may see (see accessChangeActions). */
export function changesAccess(action: string): boolean {
  return accessChangeActions.has(action);
}

/**
 * What an actor may see of the fleet, as a comparable key: `*` for every host, or the sorted ids
 * of the hosts it sees (`''`: none). Two actors with the same key see the same hosts.
 */
export function visibilityOf(actor: Actor): string {
  if (fleetOf(actor).has('host.view')) return '*';
  return [...(actor.hosts ?? [])]
    .filter(([, set]) => set.has('host.view'))
    .map(([h]) => h)
    .sort()
    .join(',');
}
