// Agent rollouts and their per-host progress (tables in db/schema/rollouts.ts). The only file of
// the agent-upgrades feature that speaks drizzle.
import { and, asc, desc, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import {
  agentRolloutHosts,
  agentRollouts,
  type AgentRolloutHostRow,
  type AgentRolloutRow,
} from '../db/schema/rollouts.ts';
import { hosts } from '../db/schema/hosts.ts';

export type AgentRollout = AgentRolloutRow;
/** A host's progress in a rollout, with the host's name. */
export type AgentRolloutHost = AgentRolloutHostRow & { name: string };

export type RolloutState = 'running' | 'paused' | 'halted' | 'cancelled' | 'done';
export type RolloutHostState = 'pending' | 'upgrading' | 'ok' | 'failed' | 'rolled-back' | 'cancelled';

export interface CreateRolloutInput {
  version: string;
  sha256: string;
  size: number;
  canary: number;
  batchSize: number;
  confirmSeconds: number;
  maxStarts: number;
  createdBy: string;
  /** In order: the first `canary` are the canaries. */
  hostIds: string[];
  now: Date;
}

export interface AgentUpgradeRepository {
  create(input: CreateRolloutInput): Promise<AgentRollout>;
  /** Newest first. */
  list(limit?: number): Promise<AgentRollout[]>;
  get(id: string): Promise<AgentRollout | null>;
  /** Its hosts in rollout order. */
  hostsOf(id: string): Promise<AgentRolloutHost[]>;
  /** Rollouts in one of `states`. */
  inStates(states: RolloutState[]): Promise<AgentRollout[]>;
  setState(id: string, state: RolloutState, now: Date, reason?: string | null): Promise<void>;
  setHost(
    rolloutId: string,
    hostId: string,
    values: Partial<
      Pick<AgentRolloutHostRow, 'state' | 'fromVersion' | 'reason' | 'startedAt' | 'finishedAt'>
    >,
  ): Promise<void>;
  /** Every host still pending in the rollout becomes `cancelled`. */
  cancelPending(rolloutId: string, now: Date, reason: string): Promise<void>;
}

export function createAgentUpgradeRepository(db: Db): AgentUpgradeRepository {
  return {
    async create(input) {
      return db.transaction(async (tx) => {
        const [rollout] = await tx
          .insert(agentRollouts)
          .values({
            version: input.version,
            sha256: input.sha256,
            size: input.size,
            state: 'running',
            canary: input.canary,
            batchSize: input.batchSize,
            confirmSeconds: input.confirmSeconds,
            maxStarts: input.maxStarts,
            createdBy: input.createdBy,
            createdAt: input.now,
            updatedAt: input.now,
          })
          .returning();
        if (input.hostIds.length > 0) {
          await tx.insert(agentRolloutHosts).values(
            input.hostIds.map((hostId, position) => ({
              rolloutId: rollout!.id,
              hostId,
              position,
              state: 'pending',
            })),
          );
        }
        return rollout!;
      });
    },
    list(limit = 50) {
      return db.select().from(agentRollouts).orderBy(desc(agentRollouts.createdAt)).limit(limit);
    },
    async get(id) {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(agentRollouts).where(eq(agentRollouts.id, id));
      return row ?? null;
    },
    async hostsOf(id) {
      if (!isUuid(id)) return [];
      const rows = await db
        .select({ progress: agentRolloutHosts, name: hosts.name })
        .from(agentRolloutHosts)
        .innerJoin(hosts, eq(hosts.id, agentRolloutHosts.hostId))
        .where(eq(agentRolloutHosts.rolloutId, id))
        .orderBy(asc(agentRolloutHosts.position));
      return rows.map((r) => ({ ...r.progress, name: r.name }));
    },
    inStates(states) {
      return db
        .select()
        .from(agentRollouts)
        .where(inArray(agentRollouts.state, states))
        .orderBy(asc(agentRollouts.createdAt));
    },
    async setState(id, state, now, reason) {
      const terminal = state === 'halted' || state === 'cancelled' || state === 'done';
      await db
        .update(agentRollouts)
        .set({
          state,
          updatedAt: now,
          ...(reason !== undefined ? { reason } : {}),
          ...(terminal ? { finishedAt: now } : {}),
        })
        .where(eq(agentRollouts.id, id));
    },
    async setHost(rolloutId, hostId, values) {
      await db
        .update(agentRolloutHosts)
        .set(values)
        .where(and(eq(agentRolloutHosts.rolloutId, rolloutId), eq(agentRolloutHosts.hostId, hostId)));
    },
    async cancelPending(rolloutId, now, reason) {
      await db
        .update(agentRolloutHosts)
        .set({ state: 'cancelled', reason, finishedAt: now })
        .where(and(eq(agentRolloutHosts.rolloutId, rolloutId), eq(agentRolloutHosts.state, 'pending')));
    },
  };
}
