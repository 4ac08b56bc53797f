// Hosts as the console sees them, and what an operator can do to one: ping it, refresh its facts,
// revoke it. Revocation cuts the live session at once and is announced on the fleet bus.
import { performance } from 'node:perf_hooks';
import { KeelError } from '@keel/shared';
import type { FleetBus } from '../bus/index.ts';
import type { AgentGateway, HostView } from '../gateway/types.ts';
import { toHostView, type Host, type HostRepository } from '../repositories/hosts.ts';
import { canSeeHost, requireHostAccess, type Actor as AccessActor, type Permission } from './access.ts';
import type { AuditService } from './audit.ts';

/** How long an API call waits for an agent to answer. */
export const AGENT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * Who asked: for the audit log, and (`access`) for the per-host check. Calls made by the
 * controller itself (install routes, CLI) pass no `access` and are not checked.
 */
export interface Actor {
  id: string;
  ip: string | null;
  access?: AccessActor;
}

function check(actor: Actor | undefined, permission: Permission, hostId: string): void {
  if (actor?.access) requireHostAccess(actor.access, permission, [hostId]);
}

export interface HostsServiceDeps {
  hosts: HostRepository;
  gateway: AgentGateway;
  bus: FleetBus;
  audit: AuditService;
  now?: () => Date;
}

/** Host reads and operator actions. */
export function createHostsService({ hosts, gateway, bus, audit, now = () => new Date() }: HostsServiceDeps) {
  /** The API view of a stored host, with what its live session announced. */
  function view(host: Host): HostView {
    return { ...toHostView(host), capabilities: gateway.capabilitiesOf?.(host.id) ?? null };
  }

  async function found(id: string): Promise<Host> {
    const host = await hosts.get(id);
    if (!host) throw new KeelError('host.not_found');
    return host;
  }

  /** A host that may be asked things: exists and is not revoked. */
  async function usable(id: string): Promise<Host> {
    const host = await found(id);
    if (host.revokedAt) throw new KeelError('host.revoked');
    return host;
  }

  return {
    /** Every host, or with an actor the hosts it may see. */
    async list(actor?: Actor): Promise<HostView[]> {
      const all = await hosts.list();
      const access = actor?.access;
      return (access ? all.filter((h) => canSeeHost(access, h.id)) : all).map(view);
    },

    async get(id: string, actor?: Actor): Promise<HostView> {
      check(actor, 'host.view', id);
      return view(await found(id));
    },

    /**
     * Revokes a host: its key can no longer connect, the live session (if any) is closed now, and
     * the change goes out on the bus. Revoking twice keeps the first revocation time.
     */
    async revoke(id: string, actor: Actor): Promise<HostView> {
      check(actor, 'host.manage', id);
      const before = await found(id);
      const revoked = await hosts.revoke(id, now());
      if (!revoked) throw new KeelError('host.not_found');
      const hadSession = gateway.disconnect(id, 'revoked');
      const revokedView = view(revoked);
      bus.publish({ type: 'host', host: revokedView });
      await audit.record(
        actor.id,
        'host.revoke',
        `host:${id}`,
        { name: revoked.name, alreadyRevoked: before.revokedAt !== null, hadSession },
        actor.ip,
      );
      return revokedView;
    },

    /** Round trip to the agent; `agentTime` is the agent's clock (epoch ms) when it answered. */
    async ping(id: string, actor: Actor): Promise<{ rttMs: number; agentTime: number }> {
      check(actor, 'host.operate', id);
      await usable(id);
      const started = performance.now();
      const { agentTime } = await gateway.request(id, 'ping', {}, { timeoutMs: AGENT_REQUEST_TIMEOUT_MS });
      const rttMs = Math.round((performance.now() - started) * 100) / 100;
      await audit.record(actor.id, 'host.ping', `host:${id}`, { rttMs }, actor.ip);
      return { rttMs, agentTime };
    },

    /** Asks the agent for fresh facts, stores them and announces the change. */
    async refreshFacts(id: string, actor: Actor): Promise<HostView> {
      check(actor, 'host.operate', id);
      await usable(id);
      const { facts } = await gateway.request(
        id,
        'facts.refresh',
        {},
        { timeoutMs: AGENT_REQUEST_TIMEOUT_MS },
      );
      const updated = await hosts.updateFacts(id, facts, now());
      if (!updated) throw new KeelError('host.not_found');
      const updatedView = view(updated);
      bus.publish({ type: 'host', host: updatedView });
      await audit.record(actor.id, 'host.refresh_facts', `host:${id}`, {}, actor.ip);
      return updatedView;
    },
  };
}

export type HostsService = ReturnType<typeof createHostsService>;
