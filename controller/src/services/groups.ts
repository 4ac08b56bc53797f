// Host groups: named sets of hosts, by explicit membership or by tag, that grants give roles on.
// Managing them needs `groups.manage`; tagging a host needs `host.manage` on that host.
import { KeelError } from '@keel/shared';
import type { GroupsRepository, HostGroupRow } from '../repositories/groups.ts';
import type { UserRow } from '../repositories/users.ts';
import { actorOf, requireHostAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';

/** Group and tag names: 1-64 characters, letters, digits, `.`, `_`, `-`, `:`, spaces inside. */
export const GROUP_NAME_PATTERN = /^[\p{L}\p{N}][\p{L}\p{N} ._:-]{0,63}$/u;
export const TAG_PATTERN = /^[a-z0-9][a-z0-9._:-]{0,63}$/;

/** A group as the API shows it. */
export interface GroupView {
  id: string;
  name: string;
  description: string;
  tags: string[];
  /** Hosts added by hand. */
  hostIds: string[];
  /** Every member: the explicit ones and those carrying one of the tags. */
  memberIds: string[];
  createdAt: string;
}

export interface GroupsServiceDeps {
  groups: GroupsRepository;
  hosts: { get(id: string): Promise<unknown> };
  audit: AuditService;
}

function checkTags(tags: readonly string[]): string[] {
  const out = [...new Set(tags.map((t) => t.trim().toLowerCase()))];
  for (const t of out) {
    if (!TAG_PATTERN.test(t)) {
      throw new KeelError('request.invalid', `Tag "${t.slice(0, 64)}": letters, digits, ".", "_", ":", "-".`);
    }
  }
  return out;
}

function checkName(name: string): string {
  const n = name.trim();
  if (!GROUP_NAME_PATTERN.test(n)) {
    throw new KeelError(
      'request.invalid',
      'A group name is 1-64 letters, digits, spaces, ".", "_", ":" or "-".',
    );
  }
  return n;
}

/** The resolver that turns a signed-in user into the actor `requireHostAccess` checks. */
export function createActorResolver(groups: GroupsRepository) {
  return async (user: UserRow): Promise<Actor> => {
    const [onHosts, held] = await Promise.all([groups.grantedHosts(user.id), groups.grantsOf(user.id)]);
    return actorOf(
      user,
      onHosts,
      held.map((g) => g.role),
    );
  };
}

/** Host groups and host tags. */
export function createGroupsService({ groups, hosts, audit }: GroupsServiceDeps) {
  async function view(row: HostGroupRow): Promise<GroupView> {
    const [hostIds, memberIds] = await Promise.all([
      groups.explicitMembers(row.id),
      groups.hostsOf([row.id]),
    ]);
    return {
      id: row.id,
      name: row.name,
      description: row.description,
      tags: row.tags,
      hostIds: hostIds.sort(),
      memberIds: memberIds.sort(),
      createdAt: row.createdAt.toISOString(),
    };
  }

  async function found(id: string): Promise<HostGroupRow> {
    const row = await groups.get(id);
    if (!row) throw new KeelError('group.not_found');
    return row;
  }

  async function checkHosts(hostIds: readonly string[]): Promise<string[]> {
    const unique = [...new Set(hostIds)];
    for (const id of unique)
      if (!(await hosts.get(id))) throw new KeelError('host.not_found', `No host ${id}.`);
    return unique;
  }

  return {
    async list(): Promise<GroupView[]> {
      return Promise.all((await groups.list()).map(view));
    },

    async get(id: string): Promise<GroupView> {
      return view(await found(id));
    },

    async create(
      actor: { id: string; ip: string | null },
      input: { name: string; description?: string; tags?: string[]; hostIds?: string[] },
    ): Promise<GroupView> {
      const name = checkName(input.name);
      const tags = checkTags(input.tags ?? []);
      const hostIds = await checkHosts(input.hostIds ?? []);
      const row = await groups.create({ name, description: input.description ?? '', tags });
      if (!row) throw new KeelError('group.exists', `A group named "${name}" exists.`);
      if (hostIds.length > 0) await groups.setMembers(row.id, hostIds);
      await audit.record(actor.id, 'group.create', `group:${row.id}`, { name, tags, hostIds }, actor.ip);
      return view(row);
    },

    async update(
      actor: { id: string; ip: string | null },
      id: string,
      input: { name?: string; description?: string; tags?: string[]; hostIds?: string[] },
    ): Promise<GroupView> {
      await found(id);
      const patch = {
        ...(input.name !== undefined ? { name: checkName(input.name) } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.tags !== undefined ? { tags: checkTags(input.tags) } : {}),
      };
      const hostIds = input.hostIds !== undefined ? await checkHosts(input.hostIds) : undefined;
      let row: HostGroupRow | null;
      try {
        row = Object.keys(patch).length > 0 ? await groups.update(id, patch) : await found(id);
      } catch (err) {
        if (patch.name && /unique|duplicate/i.test(String((err as Error).message))) {
          throw new KeelError('group.exists', `A group named "${patch.name}" exists.`);
        }
        throw err;
      }
      if (!row) throw new KeelError('group.not_found');
      if (hostIds) await groups.setMembers(id, hostIds);
      await audit.record(
        actor.id,
        'group.update',
        `group:${id}`,
        { ...patch, ...(hostIds ? { hostIds } : {}) },
        actor.ip,
      );
      return view(row);
    },

    async remove(actor: { id: string; ip: string | null }, id: string): Promise<void> {
      const row = await found(id);
      if (!(await groups.delete(id))) throw new KeelError('group.not_found');
      await audit.record(actor.id, 'group.delete', `group:${id}`, { name: row.name }, actor.ip);
    },

    /** Grants on a group (who holds which role there). */
    async grantsOn(id: string) {
      await found(id);
      return groups.grantsOnGroup(id);
    },

    async hostTags(actor: Actor, hostId: string): Promise<string[]> {
      requireHostAccess(actor, 'host.view', [hostId]);
      if (!(await hosts.get(hostId))) throw new KeelError('host.not_found');
      return groups.hostTags(hostId);
    },

    /** Replaces a host's tags (which moves it in and out of tag-matched groups). */
    async setHostTags(
      actor: Actor & { ip: string | null },
      hostId: string,
      tags: string[],
    ): Promise<string[]> {
      requireHostAccess(actor, 'host.manage', [hostId]);
      if (!(await hosts.get(hostId))) throw new KeelError('host.not_found');
      const clean = checkTags(tags);
      await groups.setHostTags(hostId, clean);
      await audit.record(actor.id, 'host.tags', `host:${hostId}`, { tags: clean }, actor.ip);
      return clean;
    },
  };
}

export type GroupsService = ReturnType<typeof createGroupsService>;
