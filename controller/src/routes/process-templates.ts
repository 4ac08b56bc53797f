// /api/v1/process-templates: the template catalogue (built-in and imported), import of a Keel
// template or a Pterodactyl egg (JSON or YAML), export, delete; and
// /api/v1/hosts/:id/processes/from-template: install a template on a host as a process.
// Permissions: host.view to read, process.control to import, delete and install (checked again per
// host by the processes service).
import { createRoute, z } from '@hono/zod-openapi';
import { PROCESS_NAME_PATTERN, processTemplateSchema } from '@keel/shared';
import type { ProcessTemplatesService } from '../services/process-templates.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const templateSchema = z.object(processTemplateSchema.shape).openapi('ProcessTemplate', {
  description:
    'A parameterised process definition (`keel-template/1`). `argv` words hold `{{VAR}}` placeholders, substituted inside each word: a value never becomes more than the one argument it is written in.',
});
const templateViewSchema = z
  .object({ template: templateSchema, builtIn: z.boolean(), updatedAt: z.string().nullable() })
  .openapi('ProcessTemplateView');

const templateIdParams = z.object({
  templateId: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/)
    .openapi({ param: { name: 'templateId', in: 'path' }, example: 'minecraft-java' }),
});

const listRoute = createRoute({
  method: 'get',
  path: '/process-templates',
  middleware: [permit('host.view')] as const,
  tags: ['processes'],
  summary: 'Process templates (built-in and imported)',
  security: cookieSecurity,
  responses: {
    200: {
      description: 'Built-in templates first, then imported ones by name.',
      content: { 'application/json': { schema: z.object({ templates: z.array(templateViewSchema) }) } },
    },
    ...authErrors,
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/process-templates/{templateId}',
  middleware: [permit('host.view')] as const,
  tags: ['processes'],
  summary: 'One process template',
  security: cookieSecurity,
  request: { params: templateIdParams },
  responses: {
    200: { description: 'The template.', content: { 'application/json': { schema: templateViewSchema } } },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such template (`template.not_found`).'),
  },
});

const exportRoute = createRoute({
  method: 'get',
  path: '/process-templates/{templateId}/export',
  middleware: [permit('host.view')] as const,
  tags: ['processes'],
  summary: 'Download a process template as JSON or YAML',
  security: cookieSecurity,
  request: {
    params: templateIdParams,
    query: z.object({ format: z.enum(['json', 'yaml']).default('json') }),
  },
  responses: {
    200: {
      description: 'The `keel-template/1` document.',
      content: { 'application/json': { schema: templateSchema }, 'application/yaml': { schema: z.string() } },
    },
    400: errorResponse('Malformed id or format (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such template (`template.not_found`).'),
  },
});

const importRoute = createRoute({
  method: 'post',
  path: '/process-templates/import',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Import a Keel template or a Pterodactyl egg (operator)',
  description:
    'The document is JSON or YAML text (or a JSON object). A Pterodactyl egg (`meta.version` PTDL_v2) is converted: variables, startup (split into argv once, without a shell), stop command, done line; what only makes sense under Wings/Docker is listed in `template.source.notApplied`.',
  security: cookieSecurity,
  request: {
    body: {
      content: {
        'application/json': {
          schema: z.object({
            document: z.union([
              z
                .string()
                .min(1)
                .max(512 * 1024),
              z.record(z.string(), z.unknown()),
            ]),
            id: z
              .string()
              .regex(/^[a-z0-9][a-z0-9-]{0,62}$/)
              .optional(),
            replace: z.boolean().default(false),
          }),
        },
      },
      required: true,
    },
  },
  responses: {
    201: { description: 'Imported.', content: { 'application/json': { schema: templateViewSchema } } },
    400: errorResponse('Not a template or an egg, or not valid (`request.invalid`, `template.invalid`).'),
    ...authErrors,
    409: errorResponse('The id exists or is a built-in (`template.exists`, `template.built_in`).'),
  },
});

const removeRoute = createRoute({
  method: 'delete',
  path: '/process-templates/{templateId}',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Delete an imported template (operator)',
  security: cookieSecurity,
  request: { params: templateIdParams },
  responses: {
    204: { description: 'Deleted. Processes installed from it keep running as they are.' },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such template (`template.not_found`).'),
    409: errorResponse('A built-in template (`template.built_in`).'),
  },
});

const installRoute = createRoute({
  method: 'post',
  path: '/hosts/{id}/processes/from-template',
  middleware: [permit('process.control')] as const,
  tags: ['processes'],
  summary: 'Create a process on a host from a template (operator)',
  description:
    "Checks the values against the template's variables, renders the process spec (placeholders substituted inside each argv word, after the command was split into words — a value can never add an argument), and applies it as POST /hosts/{id}/processes does.",
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: {
      content: {
        'application/json': {
          schema: z.object({
            template: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
            name: z.string().regex(PROCESS_NAME_PATTERN),
            values: z
              .record(
                z.string(),
                z.union([
                  z.string().max(4096),
                  z.number(),
                  z.boolean(),
                  z.array(z.string().max(4096)).max(200),
                ]),
              )
              .default({}),
            cwd: z.string().max(4096).optional(),
            user: z.string().max(32).optional(),
            autostart: z.boolean().optional(),
          }),
        },
      },
      required: true,
    },
  },
  responses: {
    200: {
      description: 'The process, and the ports the template gave it.',
      content: {
        'application/json': {
          schema: z.object({
            process: z.record(z.string(), z.unknown()),
            template: z.object({ id: z.string(), name: z.string() }),
            ports: z.array(
              z.object({ name: z.string(), port: z.number().int(), protocol: z.enum(['tcp', 'udp']) }),
            ),
          }),
        },
      },
    },
    400: errorResponse('Malformed request or values (`request.invalid`, `template.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host or template (`host.not_found`, `template.not_found`).'),
    409: errorResponse('The host is offline or revoked (`host.offline`, `host.revoked`).'),
    502: errorResponse('The agent failed (`request.failed`).'),
    504: errorResponse('No answer before the deadline (`request.deadline_exceeded`).'),
  },
});

/** Template routes (behind the session and CSRF middleware), mounted at the API root. */
export function processTemplateRoutes({ templates }: { templates: ProcessTemplatesService }) {
  const actor = (c: Parameters<typeof sessionOf>[0]) => ({ ...sessionOf(c).actor, ip: c.get('clientIp') });
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ templates: await templates.list(actor(c)) }, 200))
    .openapi(importRoute, async (c) => c.json(await templates.import(actor(c), c.req.valid('json')), 201))
    .openapi(getRoute, async (c) =>
      c.json(await templates.get(actor(c), c.req.valid('param').templateId), 200),
    )
    .openapi(exportRoute, async (c) => {
      const { templateId } = c.req.valid('param');
      const { format } = c.req.valid('query');
      const text = await templates.export(actor(c), templateId, format);
      return c.text(text, 200, {
        'content-type':
          format === 'yaml' ? 'application/yaml; charset=utf-8' : 'application/json; charset=utf-8',
        'content-disposition': `attachment; filename="${templateId}.${format === 'yaml' ? 'yaml' : 'json'}"`,
      });
    })
    .openapi(removeRoute, async (c) => {
      await templates.remove(actor(c), c.req.valid('param').templateId);
      return c.body(null, 204);
    })
    .openapi(installRoute, async (c) => {
      const result = await templates.install(actor(c), c.req.valid('param').id, c.req.valid('json'));
      return c.json(result as unknown as { process: Record<string, unknown> } & typeof result, 200);
    });
}
