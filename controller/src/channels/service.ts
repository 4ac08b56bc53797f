// Opening a channel, as a rule: the kind exists, the actor holds its permission on the host, the
// params fit the kind, the host is enrolled, not revoked and online (here, or on another replica
// the channel is then routed through); then the opening is audited and a ticket issued for the
// client's WebSocket.
import { KeelError } from '@keel/shared';
import { requireHostAccess, type Actor } from '../services/access.ts';
import type { AuditService } from '../services/audit.ts';
import { channelKinds } from './kinds.ts';
import { CHANNEL_SOCKET_PATH } from './socket.ts';
import { TicketBook } from './tickets.ts';

export interface ChannelsServiceDeps {
  /** The host repository (or anything that finds a host by id). */
  hosts: { get(id: string): Promise<{ revokedAt: Date | null; online?: boolean } | null> };
  /** isReachable (replicas): a host another replica holds is reached through it (bus/channels.ts). */
  gateway: {
    isOnline(hostId: string): boolean;
    isReachable?(hostId: string): Promise<boolean>;
    unreachableReason?(hostId: string): Promise<string | null>;
  };
  audit: AuditService;
  tickets?: TicketBook;
  /** How long a ticket may wait to be used, in seconds (when `tickets` is not given; default 30). */
  ticketTtlSeconds?: number;
}

/** A ticket for a channel WebSocket. */
export interface ChannelTicket {
  ticket: string;
  /** Where to connect, relative to the controller: `/api/v1/channels/ws?ticket=…`. */
  url: string;
  kind: string;
  expiresAt: string;
}

export function createChannelsService({
  hosts,
  gateway,
  audit,
  ticketTtlSeconds,
  tickets = new TicketBook(ticketTtlSeconds ? { ttlMs: ticketTtlSeconds * 1000 } : {}),
}: ChannelsServiceDeps) {
  return {
    tickets,
    /**
     * Checks and audits opening a `kind` channel on a host and returns the single-use ticket.
     * @example const { url } = await channels.open(actor, hostId, 'echo', { mode: 'echo' })
     */
    async open(
      actor: Actor & { ip: string | null; tokenId?: string },
      hostId: string,
      kind: string,
      params: unknown,
    ): Promise<ChannelTicket> {
      const def = Object.hasOwn(channelKinds, kind) ? channelKinds[kind] : undefined;
      if (!def) throw new KeelError('channel.unknown_kind', `No channel kind "${kind.slice(0, 64)}".`);
      requireHostAccess(actor, def.permission, [hostId]);
      const parsed = def.params.safeParse(params);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new KeelError(
          'request.invalid',
          `body.params${issue?.path.length ? `.${issue.path.join('.')}` : ''}: ${issue?.message ?? 'invalid'}`,
        );
      }
      const host = await hosts.get(hostId);
      if (!host) throw new KeelError('host.not_found');
      if (host.revokedAt) throw new KeelError('host.revoked');
      if (!((await gateway.isReachable?.(hostId)) ?? gateway.isOnline(hostId))) {
        // Replicas: online in the database, so held by a replica this one cannot reach now (this
        // one lost the bus, or that one is gone from it).
        const why = host.online ? await gateway.unreachableReason?.(hostId) : null;
        throw new KeelError(
          'host.offline',
          why ? `${why.charAt(0).toUpperCase()}${why.slice(1)}.` : undefined,
        );
      }
      await audit.record(actor.id, 'channel.open', `host:${hostId}`, { kind }, actor.ip);
      const issued = tickets.issue({
        userId: actor.id,
        hostId,
        kind,
        // As given (checked above), not parsed.data: the agent parses them again and applies the
        // defaults itself, and an agent of an earlier version refuses a key it does not know, so a
        // parameter added since (with a default) must reach it only when someone asked for it.
        params: (params ?? {}) as Record<string, unknown>,
        ...(actor.tokenId ? { tokenId: actor.tokenId } : {}),
      });
      return {
        ticket: issued.ticket,
        url: `${CHANNEL_SOCKET_PATH}?ticket=${issued.ticket}`,
        kind,
        expiresAt: issued.expiresAt.toISOString(),
      };
    },
  };
}

export type ChannelsService = ReturnType<typeof createChannelsService>;
