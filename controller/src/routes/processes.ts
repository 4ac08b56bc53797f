// /api/v1/hosts/:id/processes: a host's supervised processes (list, create or replace, start,
// stop, restart, delete), console input (one audited line to stdin) and stored output (range,
// tail, substring search). Permissions: host.view to list, process.control to change or write,
// logs.read for output; the service checks them per host.
import { createRoute, z } from '@hono/zod-openapi';
import { PROCESS_NAME_PATTERN, processSpecSchema, processStatusSchema } from '@keel/shared';
import type { ProcessesService } from '../services/processes.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

// Shared schemas were built before zod-openapi extended zod: new objects over the same shapes
// validate identically and can be named in the OpenAPI document.
const processSpecApiSchema = z.object(processSpecSchema.shape).strict().openapi('ProcessSpec');
const processStatusApiSchema = z
  .object(processStatusSchema.omit({ name: true, spec: true }).shape)
  .openapi('ProcessStatus');
const processViewSchema = z
  .object({
    name: z.string(),
    spec: processSpecApiSchema,
    status: z.union([processStatusApiSchema, z.null()]),
    updatedAt: z.string().nullable(),
  })
  .openapi('Process', {
    description: 'A definition and, while the host is online, what its agent reports (state, pid, CPU, RSS).',
  });
const processBody = z.object({ process: processViewSchema });

const nameParams = idParamSchema.extend({
  name: z
    .string()
    .regex(PROCESS_NAME_PATTERN)
    .openapi({ param: { name: 'name', in: 'path' }, example: 'web' }),
});

const agentErrors = {
  404: errorResponse('No such host or process (`host.not_found`, `process.not_found`).'),
  409: errorResponse(
    'The host is offline or revoked, the process is not running, or the agent does not supervise processes (`host.offline`, `host.revoked`, `process.not_running`, `process.stdin_full`, `agent.unsupported`).',
  ),
  502: errorResponse('The agent failed or disconnected (`request.failed`, `request.disconnected`).'),
  504: errorResponse('No answer before the deadline (`request.deadline_exceeded`).'),
} as const;

const listRoute = createRoute({
  method: 'get',
  path: '/{id}/processes',
  middleware: [permit('host.view')] as const,
  tags: ['processes'],
  summary: "A host's processes",
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: {
      description: 'Definitions with live state.',
      content: { 'application/json': { schema: z.object({ processes: z.array(processViewSchema) }) } },
    },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const applyRoute = createRoute({
  method: 'post',
  path: '/{id}/processes',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Create or replace a process (operator)',
  description:
    'Stores the definition and applies it on the host. A new process with `autostart` starts; a running one keeps running on its old spec until restarted. argv is passed as is, never through a shell.',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: { content: { 'application/json': { schema: processSpecApiSchema } }, required: true },
  },
  responses: {
    200: { description: 'The process.', content: { 'application/json': { schema: processBody } } },
    400: errorResponse('Malformed spec (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const actionRoute = (action: 'start' | 'stop' | 'restart' | 'kill', summary: string) =>
  createRoute({
    method: 'post',
    path: `/{id}/processes/{name}/${action}`,
    middleware: [permit('process.control')] as const,
    tags: ['processes'],
    summary,
    security: cookieSecurity,
    request: { params: nameParams },
    responses: {
      200: {
        description: 'The process after the action.',
        content: { 'application/json': { schema: processBody } },
      },
      400: errorResponse('Malformed id or name (`request.invalid`).'),
      ...authErrors,
      ...agentErrors,
    },
  });

const removeRoute = createRoute({
  method: 'delete',
  path: '/{id}/processes/{name}',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Stop and delete a process (operator)',
  security: cookieSecurity,
  request: { params: nameParams },
  responses: {
    204: { description: 'Deleted.' },
    400: errorResponse('Malformed id or name (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const stdinRoute = createRoute({
  method: 'post',
  path: '/{id}/processes/{name}/stdin',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: "One line to a process's input (operator; audited)",
  security: cookieSecurity,
  request: {
    params: nameParams,
    body: {
      content: {
        'application/json': {
          schema: z.object({
            line: z
              .string()
              .max(4096)
              .refine((s) => !/[\r\n]/.test(s) && !s.includes('\u0000'), 'one line without NUL')
              .openapi({ description: 'Sent with a newline added.' }),
          }),
        },
      },
      required: true,
    },
  },
  responses: {
    200: {
      description: 'Written.',
      content: { 'application/json': { schema: z.object({ bytes: z.number().int() }) } },
    },
    400: errorResponse('Malformed line (`request.invalid`).'),
    ...authErrors,
    ...agentErrors,
  },
});

const logLineSchema = z
  .object({
    seq: z.number().int(),
    ts: z.number(),
    stream: z.enum(['stdout', 'stderr']),
    text: z.string(),
    continued: z.boolean(),
  })
  .openapi('LogLine');

const logsRoute = createRoute({
  method: 'get',
  path: '/{id}/processes/{name}/logs',
  middleware: [permit('logs.read')] as const,
  tags: ['processes'],
  summary: "A process's stored output",
  description:
    'Lines with `seq > after` (or the newest `tail` lines), oldest first, optionally only those containing `contains` and captured between `since` and `until`. `nextAfter` continues the read; `gaps` are lines the agent lost.',
  security: cookieSecurity,
  request: {
    params: nameParams,
    query: z.object({
      after: z.coerce.number().int().min(0).default(0).openapi({ type: 'integer', minimum: 0, default: 0 }),
      limit: z.coerce
        .number()
        .int()
        .min(1)
        .max(5000)
        .default(500)
        .openapi({ type: 'integer', minimum: 1, maximum: 5000, default: 500 }),
      tail: z.coerce
        .number()
        .int()
        .min(1)
        .max(5000)
        .optional()
        .openapi({ type: 'integer', minimum: 1, maximum: 5000 }),
      contains: z.string().min(1).max(1000).optional(),
      since: z.coerce.number().int().min(0).optional().openapi({
        type: 'integer',
        description: 'Only lines captured at or after this time (epoch ms).',
      }),
      until: z.coerce.number().int().min(0).optional().openapi({
        type: 'integer',
        description: 'Only lines captured before this time (epoch ms).',
      }),
    }),
  },
  responses: {
    200: {
      description: 'The lines.',
      content: {
        'application/json': {
          schema: z.object({
            lines: z.array(logLineSchema),
            gaps: z.array(
              z.object({
                fromSeq: z.number().int(),
                toSeq: z.number().int(),
                reason: z.string(),
                at: z.string(),
              }),
            ),
            nextAfter: z.number().int(),
            end: z.boolean(),
          }),
        },
      },
    },
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const downloadRoute = createRoute({
  method: 'get',
  path: '/{id}/processes/{name}/logs.txt',
  middleware: [permit('logs.read')] as const,
  tags: ['processes'],
  summary: "Download a process's stored output as text",
  description:
    'Every stored line (or those captured between `since` and `until`), one per line: ISO time, `out` or `err`, the text.',
  security: cookieSecurity,
  request: {
    params: nameParams,
    query: z.object({
      since: z.coerce.number().int().min(0).optional().openapi({ type: 'integer' }),
      until: z.coerce.number().int().min(0).optional().openapi({ type: 'integer' }),
    }),
  },
  responses: {
    200: { description: 'The lines.', content: { 'text/plain': { schema: z.string() } } },
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

/** Process routes (behind the session and CSRF middleware), mounted at /hosts. */
export function processRoutes({ processes }: { processes: ProcessesService }) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(listRoute, async (c) =>
      c.json({ processes: await processes.list(actor(c), c.req.valid('param').id) }, 200),
    )
    .openapi(applyRoute, async (c) =>
      c.json({ process: await processes.apply(actor(c), c.req.valid('param').id, c.req.valid('json')) }, 200),
    )
    .openapi(actionRoute('start', 'Start a process (operator)'), async (c) => {
      const { id, name } = c.req.valid('param');
      return c.json({ process: await processes.start(actor(c), id, name) }, 200);
    })
    .openapi(
      actionRoute('stop', 'Stop a process: stop signal or line, grace, then SIGKILL of its group (operator)'),
      async (c) => {
        const { id, name } = c.req.valid('param');
        return c.json({ process: await processes.stop(actor(c), id, name) }, 200);
      },
    )
    .openapi(actionRoute('restart', 'Restart a process (operator)'), async (c) => {
      const { id, name } = c.req.valid('param');
      return c.json({ process: await processes.restart(actor(c), id, name) }, 200);
    })
    .openapi(
      actionRoute('kill', 'Kill a process and its children at once: SIGKILL of its group (operator)'),
      async (c) => {
        const { id, name } = c.req.valid('param');
        return c.json({ process: await processes.kill(actor(c), id, name) }, 200);
      },
    )
    .openapi(removeRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      await processes.remove(actor(c), id, name);
      return c.body(null, 204);
    })
    .openapi(stdinRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      return c.json(await processes.stdin(actor(c), id, name, c.req.valid('json').line), 200);
    })
    .openapi(downloadRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      const lines = processes.logText(actor(c), id, name, c.req.valid('query'));
      // The first page is read before the answer starts, so a refusal is still a JSON error.
      const first = await lines.next();
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          if (!first.done) controller.enqueue(encoder.encode(first.value));
        },
        async pull(controller) {
          const next = await lines.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(next.value));
        },
        async cancel() {
          await lines.return(undefined);
        },
      });
      // A stream is a valid body; the route's typed answer is declared as text (what the client gets).
      return c.text(body as unknown as string, 200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-disposition': `attachment; filename="${name}.log"`,
      });
    })
    .openapi(logsRoute, async (c) => {
      const { id, name } = c.req.valid('param');
      const page = await processes.logs(actor(c), id, name, c.req.valid('query'));
      return c.json({ ...page, gaps: page.gaps.map((g) => ({ ...g, at: g.at.toISOString() })) }, 200);
    });
}
