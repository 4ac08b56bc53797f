// /api/v1/audit: the audit trail, newest first, with keyset paging and filters (admin), and a
// walk of the hash chain that tells whether any row was changed or removed (admin).
import { createRoute, z } from '@hono/zod-openapi';
import type { AuditService } from '../services/audit.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse } from './env.ts';
import { permit } from './permit.ts';

const MAX_PAGE = 200;

export const auditEntrySchema = z
  .object({
    id: z.number().int(),
    at: z.iso.datetime(),
    actor: z.string().openapi({ description: 'A user id, `system`, or `agent:<hostId>`.' }),
    actorName: z.string().nullable().openapi({ description: 'The username, when the actor is a user.' }),
    action: z.string().openapi({ example: 'host.revoke' }),
    target: z.string().nullable().openapi({ example: 'host:0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33' }),
    detail: z.record(z.string(), z.unknown()),
    ip: z.string().nullable(),
    hash: z.string().openapi({ description: 'SHA-256 of the previous hash and this row (hex).' }),
  })
  .openapi('AuditEntry');

const listQuerySchema = z.object({
  before: z.coerce
    .number()
    .int()
    .positive()
    .optional()
    .openapi({ description: 'Only entries older than this id (the previous page’s `nextBefore`).' }),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(50),
  target: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: 'Only entries about this target, e.g. `host:<id>`.' }),
  action: z
    .string()
    .regex(/^[a-z_]+(\.[a-z_]*)*$/, 'an action name or prefix such as host. or auth.login')
    .max(100)
    .optional()
    .openapi({
      description: 'One action (`auth.login`), or a family ending in a dot (`host.` for every host action).',
    }),
});

const listRoute = createRoute({
  method: 'get',
  path: '/',
  tags: ['audit'],
  summary: 'The audit trail, newest first (admin)',
  security: cookieSecurity,
  middleware: [permit('audit.read')] as const,
  request: { query: listQuerySchema },
  responses: {
    200: {
      description: 'One page; `nextBefore` fetches the next (older) page, null at the end.',
      content: {
        'application/json': {
          schema: z
            .object({ entries: z.array(auditEntrySchema), nextBefore: z.number().int().nullable() })
            .openapi('AuditPage'),
        },
      },
    },
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
  },
});

const verifyRoute = createRoute({
  method: 'get',
  path: '/verify',
  tags: ['audit'],
  summary: 'Check the hash chain (admin)',
  description:
    'Walks every row in order. A row edited, inserted or deleted in the database breaks the chain ' +
    'at that row; the answer names the first such row. The head is checked against the anchor in ' +
    "the controller's data dir, so removing the newest rows, or all of them, is found too.",
  security: cookieSecurity,
  middleware: [permit('audit.read')] as const,
  responses: {
    200: {
      description: 'The verdict.',
      content: {
        'application/json': {
          schema: z
            .object({
              ok: z.boolean(),
              rows: z.number().int().openapi({ description: 'Rows checked (up to the first broken one).' }),
              brokenAt: z.number().int().optional(),
              reason: z.string().optional(),
              anchored: z.boolean().openapi({
                description:
                  'Whether the chain head was also checked against the anchor kept outside the database (so the newest rows removed, or all of them, are found too).',
              }),
            })
            .openapi('AuditVerification'),
        },
      },
    },
    ...authErrors,
  },
});

/** Audit routes (behind the session middleware). */
export function auditRoutes({ audit }: { audit: AuditService }) {
  return createRouter()
    .openapi(listRoute, async (c) => {
      const q = c.req.valid('query');
      const rows = await audit.list({
        beforeId: q.before,
        limit: q.limit,
        target: q.target,
        action: q.action,
      });
      const entries = rows.map((r) => ({
        id: r.id,
        at: r.at.toISOString(),
        actor: r.actor,
        actorName: r.actorName,
        action: r.action,
        target: r.target,
        detail: r.detail,
        ip: r.ip,
        hash: r.hash,
      }));
      const nextBefore = rows.length === q.limit ? (rows.at(-1)?.id ?? null) : null;
      return c.json({ entries, nextBefore }, 200);
    })
    .openapi(verifyRoute, async (c) => c.json(await audit.verify(), 200));
}
