// /api/v1/audit: the audit trail, newest first, with keyset paging and filters (admin), and a
// walk of the hash chain that tells whether any row was changed or removed (admin).
import { createRoute, z } from '@hono/zod-openapi';
import type { AuditService } from '../services/audit.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf } from './env.ts';
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
  actor: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: 'Only entries by this actor: a user id, `system`, or `agent:<hostId>`.' }),
});

const exportQuerySchema = listQuerySchema.omit({ before: true, limit: true }).extend({
  format: z.enum(['jsonl', 'csv']).default('jsonl'),
});

const exportRoute = createRoute({
  method: 'get',
  path: '/export',
  tags: ['audit'],
  summary: 'Export the audit trail (admin): JSON lines or CSV, oldest first',
  description:
    'The same filters as the list. Each JSON line is one entry as the list shows it; the CSV has a header row, `detail` as JSON, and cells that a spreadsheet would run as a formula (starting with = + - @) prefixed with an apostrophe. Exporting is itself audited.',
  security: cookieSecurity,
  middleware: [permit('audit.read')] as const,
  request: { query: exportQuerySchema },
  responses: {
    200: {
      description: 'The file.',
      content: { 'application/x-ndjson': { schema: z.string() }, 'text/csv': { schema: z.string() } },
    },
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
  },
});

type ExportEntry = ReturnType<typeof entryView>;

function entryView(r: Awaited<ReturnType<AuditService['list']>>[number]) {
  return {
    id: r.id,
    at: r.at.toISOString(),
    actor: r.actor,
    actorName: r.actorName,
    action: r.action,
    target: r.target,
    detail: r.detail,
    ip: r.ip,
    hash: r.hash,
  };
}

/** Most rows one export holds (newest ones when there are more). */
const EXPORT_MAX_ROWS = 100_000;

const csvColumns = ['id', 'at', 'actor', 'actorName', 'action', 'target', 'ip', 'detail', 'hash'] as const;

/** One CSV cell: quoted when needed, and defused when a spreadsheet would run it as a formula. */
export function csvCell(value: unknown): string {
  let text =
    value === null || value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csvLine(e: ExportEntry): string {
  return csvColumns.map((c) => csvCell(e[c])).join(',') + '\r\n';
}

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
        actor: q.actor,
      });
      const entries = rows.map(entryView);
      const nextBefore = rows.length === q.limit ? (rows.at(-1)?.id ?? null) : null;
      return c.json({ entries, nextBefore }, 200);
    })
    .openapi(verifyRoute, async (c) => c.json(await audit.verify(), 200))
    .openapi(exportRoute, async (c) => {
      const q = c.req.valid('query');
      const session = sessionOf(c);
      await audit.record(
        session.user.id,
        'audit.export',
        null,
        { format: q.format, actor: q.actor, action: q.action, target: q.target },
        c.get('clientIp'),
      );
      // Read in pages of 1000 (newest first, as the index serves them), written oldest first;
      // at most EXPORT_MAX_ROWS, the newest.
      const pages: ExportEntry[][] = [];
      let before: number | undefined;
      for (let rows = 0; rows < EXPORT_MAX_ROWS;) {
        const page = await audit.list({
          beforeId: before,
          limit: 1000,
          target: q.target,
          action: q.action,
          actor: q.actor,
        });
        if (page.length === 0) break;
        pages.push(page.map(entryView));
        rows += page.length;
        before = page.at(-1)!.id;
        if (page.length < 1000) break;
      }
      const entries = pages.flat().reverse();
      const csv = q.format === 'csv';
      const body = csv
        ? csvColumns.join(',') + '\r\n' + entries.map(csvLine).join('')
        : entries.map((e) => JSON.stringify(e) + '\n').join('');
      const stamp = new Date().toISOString().slice(0, 10);
      return c.body(body, 200, {
        'content-type': csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
        'content-disposition': `attachment; filename="keel-audit-${stamp}.${csv ? 'csv' : 'jsonl'}"`,
      });
    });
}
