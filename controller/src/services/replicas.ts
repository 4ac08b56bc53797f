// The replica lease: how controllers sharing one database tell a live replica from a gone one. Each
// registers a random id at start and renews its heartbeat every few seconds; a host's live session
// names the replica holding it. At start, and at every renewal, a replica marks offline only the
// hosts whose replica is gone — never those another running replica holds. The embedded database
// (PGlite) is one process's alone, so there every other recorded replica is gone at start.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Host } from '../repositories/hosts.ts';
import type { ReplicaRepository } from '../repositories/replicas.ts';

/** How often a replica renews its heartbeat and sweeps for gone ones. */
export const REPLICA_RENEW_MS = 10_000;
/** A replica whose heartbeat is older than this is gone: its hosts' sessions are reset. */
export const REPLICA_STALE_MS = 30_000;

export interface ReplicaLeaseOptions {
  replicas: ReplicaRepository;
  log: Logger;
  /** True when no other process can share the database (PGlite): every other replica is gone. */
  alone: boolean;
  /** Called with the hosts marked offline because their replica is gone (to publish them). */
  onReleased?: (hosts: Host[]) => void;
  /** Called when this replica's row had been removed by another (it paused past the lease). */
  onLeaseLost?: () => void;
  renewMs?: number;
  staleMs?: number;
  /** This replica's id, when it must be known before the lease (its will on the bus names it). */
  id?: string;
}

export interface ReplicaLease {
  /** This replica's id, written into hosts.session_replica with its sessions. */
  readonly id: string;
  /** Stops renewing and removes this replica's row (its sessions are closed first). */
  stop(): Promise<void>;
}

/**
 * Registers this controller as a replica, resets the presence of hosts whose replica is gone, and
 * keeps the lease renewed. Call before the gateway accepts agents.
 */
export async function startReplicaLease(opts: ReplicaLeaseOptions): Promise<ReplicaLease> {
  const id = opts.id ?? randomUUID();
  const renewMs = opts.renewMs ?? REPLICA_RENEW_MS;
  const staleMs = opts.staleMs ?? REPLICA_STALE_MS;
  const release = async (stale: number) => {
    const released = await opts.replicas.releaseOrphans(id, stale);
    if (released.length > 0) {
      opts.log.info({ hosts: released.length }, 'hosts of gone controller replicas marked offline');
      opts.onReleased?.(released);
    }
  };
  await opts.replicas.register(id);
  await release(opts.alone ? 0 : staleMs);

  let tick: Promise<void> | null = null;
  const timer = setInterval(() => {
    tick ??= (async () => {
      try {
        if (!(await opts.replicas.renew(id))) {
          opts.log.warn({ replica: id }, 'this replica was taken for gone; registering again');
          await opts.replicas.register(id);
          opts.onLeaseLost?.();
        }
        await release(staleMs);
      } catch (err) {
        opts.log.error({ err }, 'renewing the controller replica lease failed');
      } finally {
        tick = null;
      }
    })();
  }, renewMs);
  timer.unref();

  return {
    id,
    async stop() {
      clearInterval(timer);
      await tick;
      // With the database unreachable the row stays and goes stale: others treat it as gone then.
      await opts.replicas.remove(id).catch((err: unknown) => {
        opts.log.warn({ err }, 'removing this controller replica lease failed');
      });
    },
  };
}
