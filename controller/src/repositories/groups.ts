// Host groups, their members (explicit and by tag), host tags and grants: the only file that reads
// or writes those tables.
import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import { unionAll } from 'drizzle-orm/pg-core';
import type { Db } from '../db/index.ts';
import {
  grants,
  hostGroupMembers,
  hostGroups,
  hostTags,
  type GrantRow,
  type HostGroupRow,
} from '../db/schema/groups.ts';
import type { UserRole } from '../db/schema/users.ts';

export type { GrantRow, HostGroupRow };

/** Host groups and grants table access. */
export function createGroupsRepository(db: Db) {
  /** Every (host, group) pair for `groupIds`, explicit or by tag. */
  function membersQuery(groupIds: readonly string[]) {
    const explicit = db
      .select({ groupId: hostGroupMembers.groupId, hostId: hostGroupMembers.hostId })
      .from(hostGroupMembers)
      .where(inArray(hostGroupMembers.groupId, [...groupIds]));
    const tagged = db
      .select({ groupId: hostGroups.id, hostId: hostTags.hostId })
      .from(hostGroups)
      .innerJoin(hostTags, sql`${hostTags.tag} = any(${hostGroups.tags})`)
      .where(inArray(hostGroups.id, [...groupIds]));
    return unionAll(explicit, tagged);
  }

  return {
    async list(): Promise<HostGroupRow[]> {
      return db.select().from(hostGroups).orderBy(asc(hostGroups.name));
    },

    async get(id: string): Promise<HostGroupRow | null> {
      const [row] = await db.select().from(hostGroups).where(eq(hostGroups.id, id)).limit(1);
      return row ?? null;
    },

    /** Inserts a group; null when the name is taken. */
    async create(input: { name: string; description: string; tags: string[] }): Promise<HostGroupRow | null> {
      const rows = await db
        .insert(hostGroups)
        .values(input)
        .onConflictDoNothing({ target: hostGroups.name })
        .returning();
      return rows[0] ?? null;
    },

    async update(
      id: string,
      input: { name?: string; description?: string; tags?: string[] },
    ): Promise<HostGroupRow | null> {
      const [row] = await db.update(hostGroups).set(input).where(eq(hostGroups.id, id)).returning();
      return row ?? null;
    },

    async delete(id: string): Promise<boolean> {
      const rows = await db.delete(hostGroups).where(eq(hostGroups.id, id)).returning({ id: hostGroups.id });
      return rows.length > 0;
    },

    /** Replaces a group's explicit members (unknown host ids are ignored by the caller's check). */
    async setMembers(groupId: string, hostIds: readonly string[]): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.delete(hostGroupMembers).where(eq(hostGroupMembers.groupId, groupId));
        if (hostIds.length > 0) {
          await tx.insert(hostGroupMembers).values(hostIds.map((hostId) => ({ groupId, hostId })));
        }
      });
    },

    async explicitMembers(groupId: string): Promise<string[]> {
      const rows = await db
        .select({ hostId: hostGroupMembers.hostId })
        .from(hostGroupMembers)
        .where(eq(hostGroupMembers.groupId, groupId));
      return rows.map((r) => r.hostId);
    },

    /** The hosts in any of `groupIds` (explicit members and hosts carrying a matching tag). */
    async hostsOf(groupIds: readonly string[]): Promise<string[]> {
      if (groupIds.length === 0) return [];
      const rows = await membersQuery(groupIds);
      return [...new Set(rows.map((r) => r.hostId))];
    },

    async setHostTags(hostId: string, tags: readonly string[]): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.delete(hostTags).where(eq(hostTags.hostId, hostId));
        if (tags.length > 0) await tx.insert(hostTags).values(tags.map((tag) => ({ hostId, tag })));
      });
    },

    async hostTags(hostId: string): Promise<string[]> {
      const rows = await db
        .select({ tag: hostTags.tag })
        .from(hostTags)
        .where(eq(hostTags.hostId, hostId))
        .orderBy(asc(hostTags.tag));
      return rows.map((r) => r.tag);
    },

    async grantsOf(userId: string): Promise<GrantRow[]> {
      return db.select().from(grants).where(eq(grants.userId, userId)).orderBy(asc(grants.createdAt));
    },

    async grantsOnGroup(groupId: string): Promise<GrantRow[]> {
      return db.select().from(grants).where(eq(grants.groupId, groupId)).orderBy(asc(grants.createdAt));
    },

    /**
     * The hosts a user's grants reach, one entry per (host, grant role): what `actorOf` needs. One
     * query (explicit members and tag matches in a union).
     */
    async grantedHosts(userId: string): Promise<{ hostId: string; role: UserRole }[]> {
      const explicit = db
        .select({ hostId: hostGroupMembers.hostId, role: grants.role })
        .from(grants)
        .innerJoin(hostGroupMembers, eq(hostGroupMembers.groupId, grants.groupId))
        .where(eq(grants.userId, userId));
      const tagged = db
        .select({ hostId: hostTags.hostId, role: grants.role })
        .from(grants)
        .innerJoin(hostGroups, eq(hostGroups.id, grants.groupId))
        .innerJoin(hostTags, sql`${hostTags.tag} = any(${hostGroups.tags})`)
        .where(eq(grants.userId, userId));
      return unionAll(explicit, tagged);
    },

    /** Grants `role` on a group to a user (replacing the role of an existing grant). */
    async grant(input: { userId: string; groupId: string; role: UserRole }): Promise<GrantRow> {
      const [row] = await db
        .insert(grants)
        .values(input)
        .onConflictDoUpdate({ target: [grants.userId, grants.groupId], set: { role: input.role } })
        .returning();
      if (!row) throw new Error('grant insert returned no row');
      return row;
    },

    async revokeGrant(userId: string, grantId: string): Promise<GrantRow | null> {
      const [row] = await db
        .delete(grants)
        .where(and(eq(grants.id, grantId), eq(grants.userId, userId)))
        .returning();
      return row ?? null;
    },
  };
}

export type GroupsRepository = ReturnType<typeof createGroupsRepository>;
