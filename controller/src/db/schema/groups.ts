// Host groups and grants. A host belongs to a group explicitly (host_group_members) or by a tag
// the group matches (host_tags x host_groups.tags); a grant gives one user one role on one group.
import { index, pgTable, primaryKey, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';
import { userRole, users } from './users.ts';

export const hostGroups = pgTable('host_groups', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique(),
  description: text('description').notNull().default(''),
  /** A host carrying any of these tags is a member. */
  tags: text('tags').array().notNull().default([]),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const hostGroupMembers = pgTable(
  'host_group_members',
  {
    groupId: uuid('group_id')
      .notNull()
      .references(() => hostGroups.id, { onDelete: 'cascade' }),
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.hostId] }), index('host_group_members_host_idx').on(t.hostId)],
);

export const hostTags = pgTable(
  'host_tags',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    tag: text('tag').notNull(),
  },
  (t) => [primaryKey({ columns: [t.hostId, t.tag] }), index('host_tags_tag_idx').on(t.tag)],
);

export const grants = pgTable(
  'grants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    groupId: uuid('group_id')
      .notNull()
      .references(() => hostGroups.id, { onDelete: 'cascade' }),
    role: userRole('role').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [unique('grants_user_group_unique').on(t.userId, t.groupId)],
);

export type HostGroupRow = typeof hostGroups.$inferSelect;
export type GrantRow = typeof grants.$inferSelect;
