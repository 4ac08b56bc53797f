// /api/v1/join-tokens: create (admin), list, delete (admin). The secret appears only in the
// creation response.
import { createRoute, z } from '@hono/zod-openapi';
import type { JoinTokensService } from '../services/join-tokens.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const MAX_TTL_SECONDS = 30 * 24 * 60 * 60;

export const joinTokenSchema = z
  .object({
    id: z.uuid(),
    note: z.string().nullable(),
    createdAt: z.iso.datetime(),
    expiresAt: z.iso.datetime(),
    usesLeft: z.number().int(),
    lastUsedAt: z.iso.datetime().nullable(),
    createdBy: z.uuid().nullable().openapi({ description: 'The user who created it.' }),
  })
  .openapi('JoinToken');

const createBodySchema = z
  .object({
    ttlSeconds: z.number().int().min(60).max(MAX_TTL_SECONDS).optional().openapi({
      description: 'Lifetime in seconds (60 s to 30 days); default 3600 or KEEL_JOIN_TOKEN_TTL.',
    }),
    uses: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .optional()
      .openapi({ description: 'Enrollments it allows; default 1.' }),
    note: z.string().trim().max(200).optional(),
  })
  .strict()
  .openapi('CreateJoinToken');

const createTokenRoute = createRoute({
  method: 'post',
  path: '/',
  tags: ['join tokens'],
  summary: 'Create a join token (admin)',
  description: 'Returns the secret and the enroll command once; only a hash of the secret is stored.',
  security: cookieSecurity,
  middleware: [permit('tokens.manage')] as const,
  request: { body: { content: { 'application/json': { schema: createBodySchema } }, required: false } },
  responses: {
    201: {
      description: 'Created.',
      content: {
        'application/json': {
          schema: z
            .object({
              token: joinTokenSchema,
              secret: z.string().openapi({ example: 'kjt_…' }),
              command: z.string().openapi({
                description:
                  'Installs the agent from this controller (install.sh), enrolls the host and starts it.',
                example:
                  'curl -fsSL https://keel.example.com/install.sh | KEEL_JOIN_TOKEN=kjt_… sh -s -- agent --controller https://keel.example.com --pin sha256:…',
              }),
              enrollCommand: z.string().openapi({
                description: 'Enrolls a host that already has the keel-agent program.',
                example:
                  'KEEL_JOIN_TOKEN=kjt_… keel-agent enroll --controller https://keel.example.com --pin sha256:… && keel-agent run',
              }),
              requirements: z.string().openapi({
                description: 'What the host needs before the command works (runtime, how to get the agent).',
              }),
            })
            .openapi('CreatedJoinToken'),
        },
      },
    },
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
  },
});

const listTokensRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('tokens.view')] as const,
  tags: ['join tokens'],
  summary: 'Every join token (no secrets)',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'Newest first, expired and used ones included.',
      content: { 'application/json': { schema: z.object({ tokens: z.array(joinTokenSchema) }) } },
    },
    401: authErrors[401],
  },
});

const deleteTokenRoute = createRoute({
  method: 'delete',
  path: '/{id}',
  tags: ['join tokens'],
  summary: 'Delete a join token (admin)',
  description: 'Hosts already enrolled with it stay enrolled.',
  security: cookieSecurity,
  middleware: [permit('tokens.manage')] as const,
  request: { params: idParamSchema },
  responses: {
    204: { description: 'Deleted.' },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such token (`join_token.not_found`).'),
  },
});

/** Join token routes (behind the session and CSRF middleware). */
export function joinTokenRoutes({ joinTokens }: { joinTokens: JoinTokensService }) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ id: sessionOf(c).user.id, ip: c.get('clientIp') });
  return createRouter()
    .openapi(createTokenRoute, async (c) => {
      // Without a JSON body the validator hands over {}: all defaults.
      const created = await joinTokens.create(c.req.valid('json'), actor(c));
      c.header('cache-control', 'no-store');
      return c.json(created, 201);
    })
    .openapi(listTokensRoute, async (c) => c.json({ tokens: await joinTokens.list() }, 200))
    .openapi(deleteTokenRoute, async (c) => {
      await joinTokens.delete(c.req.valid('param').id, actor(c));
      return c.body(null, 204);
    });
}
