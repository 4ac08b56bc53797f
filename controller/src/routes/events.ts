// /api/v1/events: fleet changes as Server-Sent Events, fed by the fleet bus. Each client gets a
// bounded queue; a client that falls that far behind is dropped (EventSource reconnects and the
// console reloads its lists) instead of the controller buffering for it without bound.
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import type { Logger } from 'pino';
import type { FleetBus, FleetEvent } from '../bus/index.ts';
import type { AuthService } from '../services/auth.ts';
import { canSeeHost } from '../services/access.ts';
import { authErrors, cookieSecurity, createRouter, sessionOf } from './env.ts';
import { permit } from './permit.ts';

export interface EventStreamOptions {
  /** A comment line this often keeps proxies from closing an idle stream (and re-checks the session). */
  heartbeatMs: number;
  /** Events queued for one client before it is dropped. */
  maxQueuedEvents: number;
}

export const defaultEventStreamOptions: EventStreamOptions = { heartbeatMs: 15_000, maxQueuedEvents: 256 };

const eventsRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: [permit('host.view')] as const,
  tags: ['events'],
  summary: 'Fleet changes (Server-Sent Events)',
  description: [
    '`event: host` with `data: Host` when a host enrolls, goes online or offline, gets new facts or is revoked;',
    '`event: host.removed` with `data: {"id": "..."}` when a host is deleted.',
    'The first message is `event: ready` (the subscription is live).',
    'A `: heartbeat` comment every 15 s. A client that cannot keep up is disconnected; reconnect and reload.',
  ].join(' '),
  security: cookieSecurity,
  responses: {
    200: {
      description: 'An endless event stream.',
      content: { 'text/event-stream': { schema: z.string() } },
    },
    401: authErrors[401],
  },
});

/** The SSE message of a fleet event; null for events the fleet stream does not carry. */
function toMessage(event: FleetEvent): { event: string; data: string } | null {
  if (event.type === 'host') return { event: 'host', data: JSON.stringify(event.host) };
  if (event.type === 'host.removed')
    return { event: 'host.removed', data: JSON.stringify({ id: event.hostId }) };
  return null;
}

export interface EventRoutesDeps {
  bus: FleetBus;
  auth: AuthService;
  log: Logger;
  options?: Partial<EventStreamOptions>;
}

/** The SSE route (behind the session middleware). */
export function eventRoutes({ bus, auth, log, options }: EventRoutesDeps) {
  const opts = { ...defaultEventStreamOptions, ...options };
  return createRouter().openapi(eventsRoute, (c) => {
    const session = sessionOf(c);
    c.header('x-accel-buffering', 'no'); // nginx: do not buffer the stream
    return streamSSE(c, async (stream) => {
      const queue: { event: string; data: string }[] = [];
      let heartbeatDue = false;
      let done = false;
      let wake: (() => void) | undefined;
      const signal = () => {
        wake?.();
        wake = undefined;
      };
      const stop = (why: string) => {
        if (done) return;
        done = true;
        log.info({ userId: session.user.id, why }, 'event stream closed');
        signal();
      };

      // Subscribe before the first await so nothing published after the response starts is missed.
      const unsubscribe = bus.subscribe((event) => {
        const message = toMessage(event);
        if (done || !message) return;
        // Only hosts the user may see (their grants as of when the stream opened).
        const hostId =
          event.type === 'host' ? event.host.id : event.type === 'host.removed' ? event.hostId : null;
        if (hostId !== null && !canSeeHost(session.actor, hostId)) return;
        if (queue.length >= opts.maxQueuedEvents) {
          stop('client too slow');
          // Unblocks a write stuck on the slow client and ends the response.
          stream.abort();
          return;
        }
        queue.push(message);
        signal();
      });
      const heartbeat = setInterval(() => {
        heartbeatDue = true;
        signal();
      }, opts.heartbeatMs);
      stream.onAbort(() => stop('client went away'));

      try {
        await stream.writeSSE({ event: 'ready', data: '{}', retry: 3000 });
        while (!done) {
          if (queue.length === 0 && !heartbeatDue) {
            await new Promise<void>((resolve) => (wake = resolve));
            continue;
          }
          const next = queue.shift();
          if (next) {
            await stream.writeSSE(next);
          } else {
            heartbeatDue = false;
            // A signed-out or expired session stops receiving fleet changes.
            if (!(await auth.isLive(session.sessionId))) {
              stop('session ended');
              break;
            }
            await stream.write(': heartbeat\n\n');
          }
          if (stream.aborted || stream.closed) stop('stream closed');
        }
      } finally {
        unsubscribe();
        clearInterval(heartbeat);
      }
    });
  });
}
