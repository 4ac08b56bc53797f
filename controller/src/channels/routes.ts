// POST /api/v1/hosts/{id}/channels: the ticket for a live channel to a host's agent. The
// permission the kind needs is checked in the service (it depends on the kind in the body), so the
// route declares the least any kind needs: seeing the host.
import { createRoute, z } from '@hono/zod-openapi';
import {
  authErrors,
  cookieSecurity,
  createRouter,
  errorResponse,
  idParamSchema,
  sessionOf,
} from '../routes/env.ts';
import { permit } from '../routes/permit.ts';
import type { ChannelsService } from './service.ts';

const openBodySchema = z
  .object({
    kind: z.string().min(1).max(64).openapi({ example: 'echo' }),
    params: z.unknown().optional().openapi({ description: 'Kind-specific, e.g. `{ "mode": "echo" }`.' }),
  })
  .openapi('OpenChannelRequest');

const ticketSchema = z
  .object({
    ticket: z.string(),
    url: z.string().openapi({ example: '/api/v1/channels/ws?ticket=…' }),
    kind: z.string(),
    expiresAt: z.iso.datetime(),
  })
  .openapi('ChannelTicket');

const openRoute = createRoute({
  method: 'post',
  path: '/{id}/channels',
  middleware: [permit('host.view')] as const,
  tags: ['channels'],
  summary: 'Open a live channel (ticket for its WebSocket)',
  description:
    'Checks the permission of the kind (`echo`: admins), audits the opening and returns a ticket. Connect a WebSocket to `url` within 30 s; the ticket works once. Binary messages are the channel bytes both ways; the controller sends text `{"type":"opened"}` when the agent accepted and `{"type":"close","reason","code?","exitCode?"}` before it closes the socket.',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: { content: { 'application/json': { schema: openBodySchema } }, required: true },
  },
  responses: {
    201: { description: 'The ticket.', content: { 'application/json': { schema: ticketSchema } } },
    400: errorResponse(
      'Malformed body or params, or an unknown kind (`request.invalid`, `channel.unknown_kind`).',
    ),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
    409: errorResponse('The host is offline or revoked (`host.offline`, `host.revoked`).'),
  },
});

/** Channel routes (mounted beside the host routes, behind the session and CSRF middleware). */
export function channelRoutes({ channels }: { channels: ChannelsService }) {
  return createRouter().openapi(openRoute, async (c) => {
    const session = sessionOf(c);
    const { kind, params } = c.req.valid('json');
    // Through an API token, the ticket remembers it: its narrower scope is re-checked while open.
    const tokenId = session.via === 'token' ? session.sessionId.replace(/^token:/, '') : undefined;
    const actor = { ...session.actor, ip: c.get('clientIp'), ...(tokenId ? { tokenId } : {}) };
    return c.json(await channels.open(actor, c.req.valid('param').id, kind, params), 201);
  });
}
