// Processes across the fleet: one list of every supervised process on every host the caller may
// see (filtered by host, state and name), and one action (start, stop, restart, kill) on many
// processes of many hosts at once. Each target goes through the processes service, so per-host
// permission, audit and agent errors are exactly those of the one-host routes; one failing target
// never stops the others, and each answers for itself.
import { KeelError } from '@keel/shared';
import type { HostRepository } from '../repositories/hosts.ts';
import { canSeeHost, requireAccess } from './access.ts';
import type { ProcessActor, ProcessesService, ProcessView } from './processes.ts';

/** One process in the fleet list. */
export interface FleetProcessView extends ProcessView {
  hostId: string;
  hostName: string;
  online: boolean;
}

/** One host's part of the fleet list: why its processes may be missing or without live state. */
export interface FleetHostView {
  id: string;
  name: string;
  online: boolean;
  /** Set when the host's processes could not be read (offline hosts show stored definitions). */
  error: { code: string; message: string } | null;
}

export interface FleetProcessFilter {
  /** Only these hosts. */
  hostIds?: readonly string[];
  /** Only processes in this state (`unknown`: no live state, e.g. the host is offline). */
  state?: string;
  /** Only names containing this text. */
  name?: string;
}

export type FleetAction = 'start' | 'stop' | 'restart' | 'kill';

/** What one target of a bulk action came to. */
export interface FleetActionResult {
  hostId: string;
  name: string;
  ok: boolean;
  state: string | null;
  error: { code: string; message: string } | null;
}

/** Most targets one bulk action takes. */
export const MAX_BULK_TARGETS = 500;
/** Hosts asked at once (for the list and for actions). */
const HOST_CONCURRENCY = 16;

/** Runs `fn` over `items`, at most `limit` at a time, keeping the order of results. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const errorOf = (err: unknown) =>
  err instanceof KeelError
    ? { code: err.code, message: err.message }
    : { code: 'request.failed', message: err instanceof Error ? err.message : String(err) };

/** Fleet-wide process list and bulk actions. */
export function createFleetProcessesService(deps: {
  hosts: HostRepository;
  processes: ProcessesService;
  isOnline: (hostId: string) => boolean;
}) {
  const { hosts, processes, isOnline } = deps;
  return {
    /** Every process on every host the actor sees (revoked hosts left out), filtered. */
    async list(
      actor: ProcessActor,
      filter: FleetProcessFilter = {},
    ): Promise<{ processes: FleetProcessView[]; hosts: FleetHostView[] }> {
      requireAccess(actor, 'host.view');
      const wanted = filter.hostIds ? new Set(filter.hostIds) : null;
      const visible = (await hosts.list()).filter(
        (h) => !h.revokedAt && canSeeHost(actor, h.id) && (!wanted || wanted.has(h.id)),
      );
      const perHost = await pool(visible, HOST_CONCURRENCY, async (h) => {
        const online = isOnline(h.id);
        try {
          const list = await processes.list(actor, h.id);
          return { host: { id: h.id, name: h.name, online, error: null }, list };
        } catch (err) {
          return { host: { id: h.id, name: h.name, online, error: errorOf(err) }, list: [] };
        }
      });
      const name = filter.name?.toLowerCase();
      const out: FleetProcessView[] = [];
      for (const { host, list } of perHost) {
        for (const p of list) {
          const state = p.status?.state ?? 'unknown';
          if (filter.state && filter.state !== state) continue;
          if (name && !p.name.toLowerCase().includes(name)) continue;
          out.push({ ...p, hostId: host.id, hostName: host.name, online: host.online });
        }
      }
      out.sort((a, b) => a.hostName.localeCompare(b.hostName) || a.name.localeCompare(b.name));
      return { processes: out, hosts: perHost.map((r) => r.host) };
    },

    /**
     * One action on many processes: `targets` (host + name pairs), each carried out through the
     * processes service (its permission check, agent request and audit entry), hosts in parallel,
     * one host's targets one after another.
     */
    async act(
      actor: ProcessActor,
      action: FleetAction,
      targets: readonly { hostId: string; name: string }[],
    ): Promise<FleetActionResult[]> {
      requireAccess(actor, 'process.control');
      if (targets.length === 0 || targets.length > MAX_BULK_TARGETS) {
        throw new KeelError('request.invalid', `Give between 1 and ${MAX_BULK_TARGETS} targets.`);
      }
      const seen = new Set<string>();
      const unique = targets.filter((t) => {
        const key = `${t.hostId}\u0000${t.name}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      const byHost = new Map<string, { hostId: string; name: string }[]>();
      for (const t of unique) byHost.set(t.hostId, [...(byHost.get(t.hostId) ?? []), t]);
      const results = new Map<string, FleetActionResult>();
      await pool([...byHost.values()], HOST_CONCURRENCY, async (list) => {
        for (const t of list) {
          try {
            const view = await processes[action](actor, t.hostId, t.name);
            results.set(`${t.hostId}\u0000${t.name}`, {
              ...t,
              ok: true,
              state: view.status?.state ?? null,
              error: null,
            });
          } catch (err) {
            results.set(`${t.hostId}\u0000${t.name}`, { ...t, ok: false, state: null, error: errorOf(err) });
          }
        }
      });
      return unique.map((t) => results.get(`${t.hostId}\u0000${t.name}`)!);
    },
  };
}

export type FleetProcessesService = ReturnType<typeof createFleetProcessesService>;
