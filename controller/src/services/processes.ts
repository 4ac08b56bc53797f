// Supervised processes as a rule: who may see, change and talk to them (process.control for every
// change and each stdin line, logs.read for output, host.view for the list), every change audited,
// the definition kept on the controller and applied to the agent, which keeps its own copy and
// the live state. Reads of stored output go through the repository.
import {
  KeelError,
  processSpecSchema,
  type ProcessSpec,
  type ProcessSpecInput,
  type ProcessStatus,
} from '@keel/shared';
import type { AgentGateway } from '../gateway/types.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type { LogPage, ProcessRepository } from '../repositories/processes.ts';
import { requireHostAccess, type Actor, type Permission } from './access.ts';
import type { AuditService } from './audit.ts';
import { processEventsAuditor } from './process-audit.ts';

/** Who asks, with the address for the audit trail. */
export type ProcessActor = Actor & { ip: string | null };

/** A process as the API shows it: the definition, and the agent's live view when the host is online. */
export interface ProcessView {
  name: string;
  spec: ProcessSpec;
  /** The agent's view; null while the host is offline or the agent does not know it yet. */
  status: Omit<ProcessStatus, 'spec' | 'name'> | null;
  updatedAt: string | null;
}

export interface ProcessesServiceDeps {
  hosts: HostRepository;
  processes: ProcessRepository;
  gateway: AgentGateway;
  audit: AuditService;
}

/** Processes on hosts: list, define, control, console input, stored output. */
export function createProcessesService({ hosts, processes, gateway, audit }: ProcessesServiceDeps) {
  async function usable(actor: ProcessActor, permission: Permission, hostId: string): Promise<void> {
    requireHostAccess(actor, permission, [hostId]);
    const host = await hosts.get(hostId);
    if (!host) throw new KeelError('host.not_found');
    if (host.revokedAt) throw new KeelError('host.revoked');
  }

  /** Here, or held by another replica that answers for it. */
  async function reachable(hostId: string): Promise<boolean> {
    return (await gateway.isReachable?.(hostId)) ?? gateway.isOnline(hostId);
  }

  async function online(hostId: string): Promise<void> {
    if (!(await reachable(hostId))) throw new KeelError('host.offline');
  }

  const strip = ({ spec: _spec, name: _name, ...status }: ProcessStatus) => status;

  async function control(
    actor: ProcessActor,
    hostId: string,
    name: string,
    action: 'start' | 'stop' | 'restart' | 'kill',
  ): Promise<ProcessView> {
    await usable(actor, 'process.control', hostId);
    await online(hostId);
    const { process } = await gateway.request(hostId, `process.${action}`, { name });
    await audit.record(actor.id, `process.${action}`, `host:${hostId}`, { process: name }, actor.ip);
    return { name, spec: process.spec, status: strip(process), updatedAt: null };
  }

  return {
    /**
     * The `events` stream's stored hook that puts agents' process events into the audit trail
     * before their batch is acked (process-audit.ts); the server registers it on the gateway.
     */
    auditEvents: processEventsAuditor({ audit }),

    /** The host's processes: stored definitions joined with the agent's live list. */
    async list(actor: ProcessActor, hostId: string): Promise<ProcessView[]> {
      await usable(actor, 'host.view', hostId);
      const defs = await processes.list(hostId);
      let live: ProcessStatus[] = [];
      if (await reachable(hostId)) {
        try {
          live = (await gateway.request(hostId, 'process.list', {})).processes;
        } catch (err) {
          // An agent from before the supervisor: show the stored definitions without live state.
          if (!(err instanceof KeelError && err.code === 'agent.unsupported')) throw err;
        }
      }
      const byName = new Map<string, ProcessView>();
      for (const d of defs) {
        byName.set(d.name, {
          name: d.name,
          spec: d.spec,
          status: null,
          updatedAt: d.updatedAt.toISOString(),
        });
      }
      for (const p of live) {
        const known = byName.get(p.name);
        // The agent's copy is what runs; one made on the host without the controller shows too.
        byName.set(p.name, {
          name: p.name,
          spec: p.spec,
          status: strip(p),
          updatedAt: known?.updatedAt ?? null,
        });
      }
      return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
    },

    /** Creates or replaces a definition and applies it on the host (a new one with autostart starts). */
    async apply(actor: ProcessActor, hostId: string, input: ProcessSpecInput): Promise<ProcessView> {
      await usable(actor, 'process.control', hostId);
      const parsed = processSpecSchema.safeParse(input);
      if (!parsed.success)
        throw new KeelError('request.invalid', parsed.error.issues[0]?.message ?? 'invalid');
      const spec = parsed.data;
      await online(hostId);
      const { process } = await gateway.request(hostId, 'process.apply', { spec });
      const row = await processes.upsert(hostId, spec);
      await audit.record(
        actor.id,
        'process.apply',
        `host:${hostId}`,
        // The env may hold secrets: the audit keeps its keys, not its values.
        { process: spec.name, argv: spec.argv, cwd: spec.cwd ?? null, envKeys: Object.keys(spec.env) },
        actor.ip,
      );
      return { name: spec.name, spec, status: strip(process), updatedAt: row.updatedAt.toISOString() };
    },

    start: (actor: ProcessActor, hostId: string, name: string) => control(actor, hostId, name, 'start'),
    stop: (actor: ProcessActor, hostId: string, name: string) => control(actor, hostId, name, 'stop'),
    restart: (actor: ProcessActor, hostId: string, name: string) => control(actor, hostId, name, 'restart'),
    kill: (actor: ProcessActor, hostId: string, name: string) => control(actor, hostId, name, 'kill'),

    /** Stops the process, removes it from the agent and forgets its definition. */
    async remove(actor: ProcessActor, hostId: string, name: string): Promise<void> {
      await usable(actor, 'process.control', hostId);
      await online(hostId);
      try {
        await gateway.request(hostId, 'process.remove', { name });
      } catch (err) {
        if (!(err instanceof KeelError && err.code === 'process.not_found')) throw err;
      }
      const had = await processes.remove(hostId, name);
      await audit.record(
        actor.id,
        'process.remove',
        `host:${hostId}`,
        { process: name, stored: had },
        actor.ip,
      );
    },

    /** Sends one line to the process's stdin; every line is audited (it is a command to the program). */
    async stdin(actor: ProcessActor, hostId: string, name: string, line: string): Promise<{ bytes: number }> {
      await usable(actor, 'process.control', hostId);
      await online(hostId);
      const result = await gateway.request(hostId, 'process.stdin', { name, line });
      await audit.record(actor.id, 'process.stdin', `host:${hostId}`, { process: name, line }, actor.ip);
      return result;
    },

    /**
     * Stored output of a process. `tail`: the last lines (scanning the newest records of the host's
     * logs stream); otherwise lines after `after`, optionally containing `contains`.
     */
    async logs(
      actor: ProcessActor,
      hostId: string,
      name: string,
      q: { after: number; limit: number; contains?: string; tail?: number; since?: number; until?: number },
    ): Promise<LogPage> {
      await usable(actor, 'logs.read', hostId);
      if (q.tail) {
        const cursor = await processes.logsCursor(hostId);
        const window = Math.max(q.tail * 20, 20_000);
        const page = await processes.readLogs(hostId, name, {
          afterSeq: Math.max(0, cursor - window),
          limit: Number.MAX_SAFE_INTEGER,
          contains: q.contains,
          since: q.since,
          until: q.until,
          scanLimit: window,
        });
        return { ...page, lines: page.lines.slice(-q.tail) };
      }
      return processes.readLogs(hostId, name, {
        afterSeq: q.after,
        limit: q.limit,
        contains: q.contains,
        since: q.since,
        until: q.until,
      });
    },

    /**
     * Every stored line of a process as text (`<ISO time> <out|err> <line>\n`), page by page, for
     * a download: memory holds one page, whatever the process printed.
     */
    async *logText(
      actor: ProcessActor,
      hostId: string,
      name: string,
      q: { since?: number; until?: number } = {},
    ): AsyncGenerator<string> {
      await usable(actor, 'logs.read', hostId);
      let after = 0;
      for (;;) {
        const page = await processes.readLogs(hostId, name, { afterSeq: after, limit: 5_000, ...q });
        if (page.lines.length > 0) {
          yield page.lines
            .map(
              (l) => `${new Date(l.ts).toISOString()} ${l.stream === 'stderr' ? 'err' : 'out'} ${l.text}\n`,
            )
            .join('');
        }
        if (page.end) return;
        after = page.nextAfter;
      }
    },
  };
}

export type ProcessesService = ReturnType<typeof createProcessesService>;
