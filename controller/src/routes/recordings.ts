// /api/v1/recordings: terminal session recordings (admins: audit.read). The list gives who, which
// host, when and how each session ended; `/{id}.cast` downloads the asciicast v2 file, which
// plays in `asciinema play` and in the console's player.
import { Readable } from 'node:stream';
import { createRoute, z } from '@hono/zod-openapi';
import type { RecordingsService } from '../services/recordings.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const recordingSchema = z
  .object({
    id: z.uuid(),
    hostId: z.uuid(),
    userId: z.uuid().nullable(),
    kind: z.string(),
    startedAt: z.iso.datetime(),
    endedAt: z.iso.datetime().nullable().openapi({ description: 'Null while the session runs.' }),
    exitCode: z.number().int().nullable(),
    endReason: z.string().nullable(),
    cols: z.number().int(),
    rows: z.number().int(),
    outputBytes: z.number().int(),
    inputRecorded: z.boolean(),
  })
  .openapi('Recording');

const listRoute = createRoute({
  method: 'get',
  path: '/',
  tags: ['recordings'],
  summary: 'Terminal session recordings, newest first (admin)',
  security: cookieSecurity,
  middleware: [permit('audit.read')] as const,
  request: {
    query: z.object({
      hostId: z.uuid().optional(),
      before: z.iso.datetime().optional().openapi({ description: 'Sessions started before this time.' }),
      limit: z.coerce.number().int().min(1).max(500).default(100),
    }),
  },
  responses: {
    200: {
      description: 'One page of recordings.',
      content: { 'application/json': { schema: z.object({ recordings: z.array(recordingSchema) }) } },
    },
    400: errorResponse('Malformed query (`request.invalid`).'),
    ...authErrors,
  },
});

const castRoute = createRoute({
  method: 'get',
  path: '/{file}',
  tags: ['recordings'],
  summary: 'Download a recording as asciicast v2 (admin)',
  description: '`GET /api/v1/recordings/<id>.cast`. Plays with `asciinema play <file>`.',
  security: cookieSecurity,
  middleware: [permit('audit.read')] as const,
  request: {
    params: z.object({
      file: z
        .string()
        .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.cast$/)
        .openapi({ param: { name: 'file', in: 'path' }, example: '0b6f…-….cast' }),
    }),
  },
  responses: {
    200: {
      description: 'The asciicast v2 file (one JSON value per line).',
      content: { 'application/x-asciicast': { schema: z.string() } },
    },
    400: errorResponse('Malformed name (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such recording (`recording.not_found`).'),
  },
});

/** Recording routes (behind the session middleware). */
export function recordingRoutes({ recordings }: { recordings: RecordingsService }) {
  return createRouter()
    .openapi(listRoute, async (c) => {
      const q = c.req.valid('query');
      const list = await recordings.list(sessionOf(c).actor, {
        hostId: q.hostId,
        before: q.before ? new Date(q.before) : undefined,
        limit: q.limit,
      });
      return c.json({ recordings: list }, 200);
    })
    .openapi(castRoute, async (c) => {
      const id = c.req.valid('param').file.slice(0, -'.cast'.length);
      const found = await recordings.open(sessionOf(c).actor, id);
      const body = Readable.toWeb(found.stream()) as ReadableStream<Uint8Array>;
      return c.body(body, 200, {
        'content-type': 'application/x-asciicast',
        'content-length': String(found.size),
        'content-disposition': `attachment; filename="keel-${id}.cast"`,
        'cache-control': 'no-store',
      }) as never;
    });
}
