// /api/v1/events: fleet changes as Server-Sent Events, fed by the fleet bus. Each client gets a
// bounded queue; a client that falls that far behind is dropped (EventSource reconnects and the
// console reloads its lists) instead of the controller buffering for it without bound.
//
// The stream follows its user's access while it is open: when an access change is audited (grants,
// groups, host tags, role or scope, the user deleted, a session or token ended, ...) and at every
// heartbeat, it re-reads what the session may see. From then on it carries only hosts the user
// sees now, says `event: access` when that set changed (clients reload their lists), and ends
// with `event: closed` and a reason when the session ended or the user may no longer see hosts.
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import type { Logger } from 'pino';
import type { FleetBus, FleetEvent } from '../bus/index.ts';
import type { AuthService } from '../services/auth.ts';
import { canSeeHost, hasPermission, visibilityOf, type Actor } from '../services/access.ts';
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
    'The stream follows the user\'s access while open: `event: access` with `data: {"reason": "access.changed"}` when the hosts they may see changed (reload the lists; events of hosts no longer visible stop at once);',
    '`event: closed` with `data: {"reason": "session.ended" | "access.revoked", "message": "..."}` right before the server ends the stream because the session or token ended, or the user may no longer see any host (do not reconnect without signing in again).',
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
  /**
   * Calls the listener whenever something that can change a user's access was recorded (from the
   * audit trail; see access.ts changesAccess); returns the function that stops it. Without it the
   * stream re-reads access at each heartbeat only.
   */
  accessChanges?: (listener: () => void) => () => void;
  log: Logger;
  options?: Partial<EventStreamOptions>;
}

/** The SSE route (behind the session middleware). */
export function eventRoutes({ bus, auth, log, options, accessChanges }: EventRoutesDeps) {
  const opts = { ...defaultEventStreamOptions, ...options };
  return createRouter().openapi(eventsRoute, (c) => {
    const session = sessionOf(c);
    c.header('x-accel-buffering', 'no'); // nginx: do not buffer the stream
    return streamSSE(c, async (stream) => {
      const queue: { event: string; data: string }[] = [];
      let heartbeatDue = false;
      let accessDue = false;
      let done = false;
      let wake: (() => void) | undefined;
      // What the session may do: as it was at the request, then as last re-read.
      let actor: Actor = session.actor;
      let visible = visibilityOf(actor);
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
        // Only hosts the user may see (as of the last access check).
        const hostId =
          event.type === 'host' ? event.host.id : event.type === 'host.removed' ? event.hostId : null;
        if (hostId !== null && !canSeeHost(actor, hostId)) return;
        if (queue.length >= opts.maxQueuedEvents) {
          stop('client too slow');
          // Unblocks a write stuck on the slow client and ends the response.
          stream.abort();
          return;
        }
        queue.push(message);
        signal();
      });
      const unwatch = accessChanges?.(() => {
        accessDue = true;
        signal();
      });
      const heartbeat = setInterval(() => {
        heartbeatDue = true;
        signal();
      }, opts.heartbeatMs);
      stream.onAbort(() => stop('client went away'));

      /**
       * Re-reads the session's access. Events queued under the old access are filtered again, so
       * nothing the user may no longer see goes out after the change was recorded. False: the
       * stream must end (the `closed` event is written).
       */
      const recheck = async (): Promise<boolean> => {
        const now = await auth.currentActor(session.sessionId);
        const reason = !now ? 'session.ended' : hasPermission(now, 'host.view') ? null : 'access.revoked';
        if (!now || reason) {
          const message =
            reason === 'session.ended'
              ? 'The session or API token ended; sign in again.'
              : 'You may no longer see any host.';
          await stream.writeSSE({ event: 'closed', data: JSON.stringify({ reason, message }) });
          stop(reason ?? 'session.ended');
          return false;
        }
        actor = now;
        for (let i = queue.length - 1; i >= 0; i--) {
          const m = queue[i]!;
          const id = (JSON.parse(m.data) as { id?: string }).id;
          if (id !== undefined && !canSeeHost(actor, id)) queue.splice(i, 1);
        }
        const next = visibilityOf(now);
        if (next !== visible) {
          visible = next;
          queue.unshift({ event: 'access', data: JSON.stringify({ reason: 'access.changed' }) });
        }
        return true;
      };

      try {
        await stream.writeSSE({ event: 'ready', data: '{}', retry: 3000 });
        while (!done) {
          if (accessDue || heartbeatDue) {
            // Before anything else queued: events recorded after a change follow the new access.
            const beat = heartbeatDue;
            accessDue = false;
            heartbeatDue = false;
            if (!(await recheck())) break;
            if (beat) await stream.write(': heartbeat\n\n');
          } else if (queue.length === 0) {
            await new Promise<void>((resolve) => (wake = resolve));
            continue;
          } else {
            await stream.writeSSE(queue.shift()!);
          }
          if (stream.aborted || stream.closed) stop('stream closed');
        }
      } finally {
        unsubscribe();
        unwatch?.();
        clearInterval(heartbeat);
      }
    });
  });
}
