// /api/v1/groups: host groups (members by hand or by tag) and who is granted what on them
// (`groups.manage`); /api/v1/host-tags/{id}: a host's tags (`host.manage` on that host to change).
import { createRoute, z } from '@hono/zod-openapi';
import type { GroupsService } from '../services/groups.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';
import { grantSchema } from './users.ts';

export const groupSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    description: z.string(),
    tags: z.array(z.string()).openapi({ description: 'Hosts carrying any of these tags are members.' }),
    hostIds: z.array(z.uuid()).openapi({ description: 'Members added by hand.' }),
    memberIds: z.array(z.uuid()).openapi({ description: 'Every member (by hand and by tag).' }),
    createdAt: z.iso.datetime(),
  })
  .openapi('HostGroup');

const tagList = z.array(z.string().min(1).max(64)).max(64);
const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});
const notFound = errorResponse('No such group (`group.not_found`).');
const common = {
  tags: ['groups'],
  security: cookieSecurity,
  middleware: permit('groups.manage'),
};

const listRoute = createRoute({
  ...common,
  method: 'get',
  path: '/',
  summary: 'Every host group (admin)',
  responses: { 200: json(z.object({ groups: z.array(groupSchema) })), ...authErrors },
});

const getRoute = createRoute({
  ...common,
  method: 'get',
  path: '/{id}',
  summary: 'One host group with its grants (admin)',
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ group: groupSchema, grants: z.array(grantSchema) })),
    ...authErrors,
    404: notFound,
  },
});

const groupBody = z
  .object({
    name: z.string().min(1).max(64),
    description: z.string().max(500).optional(),
    tags: tagList.optional(),
    hostIds: z.array(z.uuid()).max(10_000).optional(),
  })
  .strict();

const createGroupRoute = createRoute({
  ...common,
  method: 'post',
  path: '/',
  summary: 'Create a host group (admin)',
  request: body(groupBody),
  responses: {
    201: json(z.object({ group: groupSchema }), 'Created.'),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('A listed host does not exist (`host.not_found`).'),
    409: errorResponse('The name is taken (`group.exists`).'),
  },
});

const updateGroupRoute = createRoute({
  ...common,
  method: 'patch',
  path: '/{id}',
  summary: 'Rename a group, set its tags or its hand-picked members (admin)',
  request: { params: idParamSchema, ...body(groupBody.partial()) },
  responses: {
    200: json(z.object({ group: groupSchema })),
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: notFound,
    409: errorResponse('The name is taken (`group.exists`).'),
  },
});

const deleteGroupRoute = createRoute({
  ...common,
  method: 'delete',
  path: '/{id}',
  summary: 'Delete a host group and its grants (admin)',
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...authErrors, 404: notFound },
});

const getTagsRoute = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['groups'],
  security: cookieSecurity,
  middleware: [permit('host.view')] as const,
  summary: "A host's tags",
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ tags: z.array(z.string()) })),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const setTagsRoute = createRoute({
  method: 'put',
  path: '/{id}',
  tags: ['groups'],
  security: cookieSecurity,
  middleware: [permit('host.manage')] as const,
  summary: "Replace a host's tags (moves it in and out of tag-matched groups)",
  request: { params: idParamSchema, ...body(z.object({ tags: tagList }).strict()) },
  responses: {
    200: json(z.object({ tags: z.array(z.string()) })),
    400: errorResponse('Malformed tags (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

function grantView(g: { id: string; userId: string; groupId: string; role: string; createdAt: Date }) {
  return { ...g, role: g.role as z.infer<typeof grantSchema>['role'], createdAt: g.createdAt.toISOString() };
}

type Ctx = Parameters<typeof sessionOf>[0];
const who = (c: Ctx) => ({ id: sessionOf(c).user.id, ip: c.get('clientIp') });

/** Host group routes (behind the session and CSRF middleware). */
export function groupRoutes({ groups }: { groups: GroupsService }) {
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ groups: await groups.list() }, 200))
    .openapi(getRoute, async (c) => {
      const { id } = c.req.valid('param');
      const [group, grants] = await Promise.all([groups.get(id), groups.grantsOn(id)]);
      return c.json({ group, grants: grants.map(grantView) }, 200);
    })
    .openapi(createGroupRoute, async (c) =>
      c.json({ group: await groups.create(who(c), c.req.valid('json')) }, 201),
    )
    .openapi(updateGroupRoute, async (c) =>
      c.json({ group: await groups.update(who(c), c.req.valid('param').id, c.req.valid('json')) }, 200),
    )
    .openapi(deleteGroupRoute, async (c) => {
      await groups.remove(who(c), c.req.valid('param').id);
      return c.body(null, 204);
    });
}

/** Host tag routes (behind the session and CSRF middleware). */
export function hostTagRoutes({ groups }: { groups: GroupsService }) {
  return createRouter()
    .openapi(getTagsRoute, async (c) =>
      c.json({ tags: await groups.hostTags(sessionOf(c).actor, c.req.valid('param').id) }, 200),
    )
    .openapi(setTagsRoute, async (c) => {
      const actor = { ...sessionOf(c).actor, ip: c.get('clientIp') };
      return c.json(
        { tags: await groups.setHostTags(actor, c.req.valid('param').id, c.req.valid('json').tags) },
        200,
      );
    });
}
