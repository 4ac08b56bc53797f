// /api/v1/proxy-users: Marzban-style proxy users — list (paging, search, status), create, read,
// change, delete, regenerate secrets, rotate the subscription, bulk actions, share links with QR
// codes, hourly usage. Permission: proxy.users.manage (one's own users; proxy.users.all for
// everyone's, decided in the service); placing a user on a node needs config.apply on its host.
import { createRoute, z } from '@hono/zod-openapi';
import QRCode from 'qrcode';
import { PROCESS_NAME_PATTERN, PROXY_USER_ID_PATTERN } from '@keel/shared';
import { proxyUserStatuses, resetPeriods, type ProxyUsersService } from '../services/proxy-users.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';
import type { Context } from 'hono';
import type { AppEnv } from './env.ts';

const nodeRefSchema = z.object({
  hostId: z.uuid(),
  instance: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/),
  inbounds: z
    .array(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/))
    .max(64)
    .nullable()
    .optional()
    .openapi({ description: 'v2ray inbound tags the user is on; all when absent or null.' }),
});

const limitsShape = {
  status: z.enum(['active', 'disabled']).optional().openapi({
    description: '`limited` and `expired` are set by Keel from the limits, never by hand.',
  }),
  dataLimitBytes: z
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .nullable()
    .optional()
    .openapi({ description: 'Bytes (up + down, all nodes) per period; null: unlimited.' }),
  resetPeriod: z.enum(resetPeriods).optional(),
  expiresAt: z.iso.datetime({ offset: true }).nullable().optional(),
  maxConnections: z.number().int().min(1).max(1_000_000).nullable().optional(),
  maxUniqueIps: z.number().int().min(1).max(1_000_000).nullable().optional(),
  note: z.string().max(2000).optional(),
  nodes: z.array(nodeRefSchema).max(200).optional(),
  ownerId: z.uuid().nullable().optional().openapi({ description: 'Needs proxy.users.all.' }),
};

const createSchema = z
  .object({
    name: z.string().regex(PROXY_USER_ID_PATTERN).openapi({ example: 'alice' }),
    ...limitsShape,
  })
  .strict()
  .openapi('ProxyUserCreate');
const updateSchema = z.object(limitsShape).strict().openapi('ProxyUserUpdate');

const proxyUserSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    ownerId: z.uuid().nullable(),
    status: z.enum(proxyUserStatuses),
    secret: z.string().openapi({ description: 'MTProxy secret (32 hex).' }),
    uuid: z.string().openapi({ description: 'VLESS/VMess id.' }),
    password: z.string().openapi({ description: 'Trojan/Shadowsocks password.' }),
    dataLimitBytes: z.number().nullable(),
    resetPeriod: z.enum(resetPeriods),
    lastResetAt: z.string(),
    expiresAt: z.string().nullable(),
    maxConnections: z.number().nullable(),
    maxUniqueIps: z.number().nullable(),
    note: z.string(),
    usedUpBytes: z.number(),
    usedDownBytes: z.number(),
    usedBytes: z.number(),
    lifetimeBytes: z.number(),
    lastSeenAt: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    nodes: z.array(
      z.object({
        hostId: z.uuid(),
        instance: z.string(),
        inbounds: z.array(z.string()).nullable(),
        port: z.number().nullable(),
      }),
    ),
    subscriptionUrl: z.string(),
  })
  .openapi('ProxyUser');
const userBody = z.object({ user: proxyUserSchema });

const errors = {
  400: errorResponse('Malformed input (`request.invalid`).'),
  ...authErrors,
  404: errorResponse('No such proxy user or node (`proxy.user_not_found`, `proxy.node_not_found`).'),
} as const;

const tags = ['proxy users'];

const listRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Proxy users (yours; everyone’s with proxy.users.all)',
  security: cookieSecurity,
  request: {
    query: z.object({
      search: z.string().max(200).optional(),
      status: z.enum(proxyUserStatuses).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(50).openapi({ type: 'integer', default: 50 }),
      offset: z.coerce.number().int().min(0).default(0).openapi({ type: 'integer', default: 0 }),
    }),
  },
  responses: {
    200: {
      description: 'A page, by name.',
      content: {
        'application/json': {
          schema: z.object({ users: z.array(proxyUserSchema), total: z.number().int() }),
        },
      },
    },
    ...errors,
  },
});

const nodesRoute = createRoute({
  method: 'get',
  path: '/nodes',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Nodes proxy users can be placed on (those on hosts you may apply configs to)',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'User-serving proxy nodes.',
      content: {
        'application/json': {
          schema: z.object({
            nodes: z.array(
              z.object({
                hostId: z.uuid(),
                hostName: z.string(),
                instance: z.string(),
                adapter: z.string(),
                inbounds: z.array(z.object({ tag: z.string(), protocol: z.string() })),
              }),
            ),
          }),
        },
      },
    },
    ...errors,
  },
});

const createUserRoute = createRoute({
  method: 'post',
  path: '/',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Create a proxy user (secrets generated)',
  security: cookieSecurity,
  request: { body: { content: { 'application/json': { schema: createSchema } }, required: true } },
  responses: {
    201: { description: 'Created.', content: { 'application/json': { schema: userBody } } },
    ...errors,
    409: errorResponse('The name is taken (`proxy.user_exists`).'),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/{id}',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'One proxy user',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: { description: 'The user.', content: { 'application/json': { schema: userBody } } },
    ...errors,
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/{id}',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Change limits, status, note, owner or nodes (the nodes are re-applied)',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: { content: { 'application/json': { schema: updateSchema } }, required: true },
  },
  responses: {
    200: { description: 'The user.', content: { 'application/json': { schema: userBody } } },
    ...errors,
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/{id}',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Delete a proxy user (taken off its nodes)',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...errors },
});

const regenerateRoute = createRoute({
  method: 'post',
  path: '/{id}/regenerate',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'New secret, UUID, password or all (the old ones stop working)',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: {
      content: {
        'application/json': { schema: z.object({ which: z.enum(['secret', 'uuid', 'password', 'all']) }) },
      },
      required: true,
    },
  },
  responses: {
    200: { description: 'The user.', content: { 'application/json': { schema: userBody } } },
    ...errors,
  },
});

const rotateRoute = createRoute({
  method: 'post',
  path: '/{id}/rotate-subscription',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'A new subscription URL (the old one stops answering)',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: { description: 'The user.', content: { 'application/json': { schema: userBody } } },
    ...errors,
  },
});

const bulkRoute = createRoute({
  method: 'post',
  path: '/bulk',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Disable, enable, delete or reset the usage of many users',
  description: 'Users the caller may not manage are skipped; `count` says how many were acted on.',
  security: cookieSecurity,
  request: {
    body: {
      content: {
        'application/json': {
          schema: z.object({
            ids: z.array(z.uuid()).min(1).max(10_000),
            action: z.enum(['disable', 'enable', 'delete', 'reset-usage']),
          }),
        },
      },
      required: true,
    },
  },
  responses: {
    200: {
      description: 'Done.',
      content: { 'application/json': { schema: z.object({ count: z.number().int() }) } },
    },
    ...errors,
  },
});

const linkSchema = z
  .object({
    hostId: z.uuid(),
    hostName: z.string(),
    instance: z.string(),
    protocol: z.enum(['mtproto', 'vless', 'vmess', 'trojan', 'shadowsocks']),
    inbound: z.string().nullable(),
    name: z.string(),
    link: z.string(),
    webLink: z.string().nullable(),
    qr: z.string().openapi({ description: 'The link as a QR code (SVG data URL).' }),
  })
  .openapi('ProxyUserLink');

const linksRoute = createRoute({
  method: 'get',
  path: '/{id}/links',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary:
    'Share links (tg://, vless://, vmess://, trojan://, ss://) with QR codes, and the subscription URL',
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: {
      description: 'One link per node and inbound.',
      content: {
        'application/json': {
          schema: z.object({
            links: z.array(linkSchema),
            subscriptionUrl: z.string(),
            subscriptionQr: z.string(),
          }),
        },
      },
    },
    ...errors,
  },
});

const nodeUsageRoute = createRoute({
  method: 'get',
  path: '/nodes/{hostId}/{instance}/usage',
  middleware: [permit('host.view')] as const,
  tags,
  summary: "Hourly traffic of one proxy node (all its users), as Keel's scraper counted it",
  security: cookieSecurity,
  request: {
    params: z.object({
      hostId: z.uuid().openapi({ param: { name: 'hostId', in: 'path' } }),
      instance: z
        .string()
        .regex(PROCESS_NAME_PATTERN)
        .openapi({ param: { name: 'instance', in: 'path' }, example: 'vpn' }),
    }),
    query: z.object({
      hours: z.coerce.number().int().min(1).max(2160).default(24).openapi({ type: 'integer', default: 24 }),
    }),
  },
  responses: {
    200: {
      description: 'Hours with traffic, oldest first (`at` epoch ms of the hour).',
      content: {
        'application/json': {
          schema: z.object({
            points: z.array(z.object({ at: z.number(), up: z.number(), down: z.number() })),
          }),
        },
      },
    },
    ...errors,
  },
});

const usageRoute = createRoute({
  method: 'get',
  path: '/{id}/usage',
  middleware: [permit('proxy.users.manage')] as const,
  tags,
  summary: 'Hourly traffic of a user over all nodes',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    query: z.object({
      hours: z.coerce.number().int().min(1).max(2160).default(24).openapi({ type: 'integer', default: 24 }),
    }),
  },
  responses: {
    200: {
      description: 'Hours with traffic, oldest first (`at` epoch ms of the hour).',
      content: {
        'application/json': {
          schema: z.object({
            points: z.array(z.object({ at: z.number(), up: z.number(), down: z.number() })),
          }),
        },
      },
    },
    ...errors,
  },
});

const qr = async (text: string) =>
  `data:image/svg+xml;base64,${Buffer.from(
    await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }),
  ).toString('base64')}`;

function actorOf(c: Context<AppEnv>) {
  return { ...sessionOf(c).actor, ip: c.get('clientIp') };
}

/** The proxy users API (mounted at /api/v1/proxy-users). */
export function proxyUserRoutes({ proxyUsers }: { proxyUsers: ProxyUsersService }) {
  return createRouter()
    .openapi(listRoute, async (c) => c.json(await proxyUsers.list(actorOf(c), c.req.valid('query')), 200))
    .openapi(nodesRoute, async (c) => c.json({ nodes: await proxyUsers.assignableNodes(actorOf(c)) }, 200))
    .openapi(createUserRoute, async (c) =>
      c.json({ user: await proxyUsers.create(actorOf(c), c.req.valid('json')) }, 201),
    )
    .openapi(bulkRoute, async (c) => {
      const { ids, action } = c.req.valid('json');
      return c.json(await proxyUsers.bulk(actorOf(c), ids, action), 200);
    })
    .openapi(getRoute, async (c) =>
      c.json({ user: await proxyUsers.get(actorOf(c), c.req.valid('param').id) }, 200),
    )
    .openapi(patchRoute, async (c) =>
      c.json(
        { user: await proxyUsers.update(actorOf(c), c.req.valid('param').id, c.req.valid('json')) },
        200,
      ),
    )
    .openapi(deleteRoute, async (c) => {
      await proxyUsers.remove(actorOf(c), c.req.valid('param').id);
      return c.body(null, 204);
    })
    .openapi(regenerateRoute, async (c) =>
      c.json(
        { user: await proxyUsers.regenerate(actorOf(c), c.req.valid('param').id, c.req.valid('json').which) },
        200,
      ),
    )
    .openapi(rotateRoute, async (c) =>
      c.json({ user: await proxyUsers.rotateSubscription(actorOf(c), c.req.valid('param').id) }, 200),
    )
    .openapi(linksRoute, async (c) => {
      const { links, subscriptionUrl } = await proxyUsers.links(actorOf(c), c.req.valid('param').id);
      return c.json(
        {
          links: await Promise.all(links.map(async (l) => ({ ...l, qr: await qr(l.link) }))),
          subscriptionUrl,
          subscriptionQr: await qr(subscriptionUrl),
        },
        200,
      );
    })
    .openapi(nodeUsageRoute, async (c) =>
      c.json(await proxyUsers.nodeUsage(actorOf(c), c.req.valid('param'), c.req.valid('query').hours), 200),
    )
    .openapi(usageRoute, async (c) =>
      c.json(await proxyUsers.usage(actorOf(c), c.req.valid('param').id, c.req.valid('query').hours), 200),
    );
}
