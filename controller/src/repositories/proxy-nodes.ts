// Proxy nodes, their configuration generations and staged rollouts in the database. The rules
// (who may, what is pushed, when a rollout halts) are in services/proxy-nodes.ts; this file only
// stores and reads. Generation numbers come from one atomic counter per node, so two pushes never
// share a number even across controller replicas.
import { createHash } from 'node:crypto';
import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import { KeelError } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { isUuid, pgErrorCode, sqlState } from '../db/errors.ts';
import {
  configContents,
  configGenerations,
  configUserSets,
  configRollouts,
  configRolloutSteps,
  proxyNodes,
  type ConfigGenerationRow,
  type ConfigRolloutRow,
  type ConfigRolloutStepRow,
  type DriftEntry,
  type GenerationOutcome,
  type ProxyNodeRow,
  type RenderedFile,
  type RolloutState,
  type RolloutStepState,
  type StoredFile,
} from '../db/schema/proxy-nodes.ts';
import { hostTags } from '../db/schema/groups.ts';

export type {
  ConfigGenerationRow,
  ConfigRolloutRow,
  ConfigRolloutStepRow,
  DriftEntry,
  GenerationOutcome,
  ProxyNodeRow,
  RenderedFile,
  RolloutState,
  RolloutStepState,
};

/** A generation in a list: its files named with their hashes, without the content. */
export type GenerationSummary = Omit<ConfigGenerationRow, 'files' | 'userSet'> & {
  files: { path: string; sha256: string }[];
};

/** A generation with its user ids and its files' contents (read back from their stores). */
export type GenerationRecord = Omit<ConfigGenerationRow, 'files' | 'userSet'> & { files: RenderedFile[] };

/** What a new generation is made of. */
export interface NewGeneration {
  hostId: string;
  instance: string;
  generation: number;
  adapter: string;
  settings: Record<string, unknown>;
  userIds: string[];
  origin: string;
  rollbackOf?: number | null;
  actor: string;
  reason?: string | null;
  /** Adopted drift is stored applied at once, with the files the host holds. */
  outcome?: GenerationOutcome;
  files?: RenderedFile[];
  method?: string | null;
}

/** How a generation ended. */
export interface GenerationResult {
  outcome: Exclude<GenerationOutcome, 'pending'>;
  files?: RenderedFile[];
  method?: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
}

export interface RolloutWithSteps extends ConfigRolloutRow {
  steps: ConfigRolloutStepRow[];
}

const node = (hostId: string, instance: string) =>
  and(eq(proxyNodes.hostId, hostId), eq(proxyNodes.instance, instance));
const gens = (hostId: string, instance: string) =>
  and(eq(configGenerations.hostId, hostId), eq(configGenerations.instance, instance));

/** Every column of a generation but the file contents (a list may hold many large configs). */
const summaryColumns = {
  id: configGenerations.id,
  hostId: configGenerations.hostId,
  instance: configGenerations.instance,
  generation: configGenerations.generation,
  adapter: configGenerations.adapter,
  settings: configGenerations.settings,
  userIds: sql<string[]>`coalesce((select s.user_ids from ${configUserSets} s
    where s.sha256 = ${configGenerations.userSet}), ${configGenerations.userIds})`,
  files: sql<{ path: string; sha256: string }[]>`(
    select coalesce(jsonb_agg(jsonb_build_object('path', f->'path', 'sha256', f->'sha256')), '[]'::jsonb)
    from jsonb_array_elements(${configGenerations.files}) as f)`,
  origin: configGenerations.origin,
  rollbackOf: configGenerations.rollbackOf,
  actor: configGenerations.actor,
  reason: configGenerations.reason,
  outcome: configGenerations.outcome,
  method: configGenerations.method,
  errorCode: configGenerations.errorCode,
  errorMessage: configGenerations.errorMessage,
  createdAt: configGenerations.createdAt,
  finishedAt: configGenerations.finishedAt,
};

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Proxy nodes, generations and rollouts. */
export function createProxyNodeRepository(db: Db) {
  /**
   * Stores the files' contents by their hash (once, whoever else stored the same) and answers the
   * entries a generation row keeps. The key is hashed here, not taken from the agent's `sha256`:
   * an agent cannot make another node's generation read its content.
   */
  async function storeFiles(files: readonly RenderedFile[]): Promise<StoredFile[]> {
    const entries = files.map((f) => ({
      path: f.path,
      sha256: f.sha256,
      ...(f.content !== '' ? { ref: sha256(f.content) } : {}),
    }));
    const fresh = new Map<string, string>();
    files.forEach((f, i) => {
      const ref = entries[i]!.ref;
      if (ref) fresh.set(ref, f.content);
    });
    if (fresh.size > 0) {
      const have = new Set(
        (
          await db
            .select({ sha256: configContents.sha256 })
            .from(configContents)
            .where(inArray(configContents.sha256, [...fresh.keys()]))
        ).map((r) => r.sha256),
      );
      if (have.size > 0) {
        await db
          .update(configContents)
          .set({ usedAt: sql`now()` })
          .where(inArray(configContents.sha256, [...have]));
      }
      const missing = [...fresh].filter(([k]) => !have.has(k));
      if (missing.length > 0) {
        await db
          .insert(configContents)
          .values(missing.map(([k, content]) => ({ sha256: k, content, bytes: Buffer.byteLength(content) })))
          .onConflictDoNothing();
      }
    }
    return entries;
  }

  /** Keys of id lists seen (a fan-out passes one list for all its nodes). */
  const setKeys = new WeakMap<readonly string[], { key: string; sorted: string[] }>();

  /** The user set's key, stored once (ids sorted: the same users in any order are one set). */
  async function storeUserSet(ids: readonly string[]): Promise<string> {
    let known = setKeys.get(ids);
    if (!known) {
      const sorted = [...ids].sort();
      known = { key: sha256(sorted.join('\n')), sorted };
      setKeys.set(ids, known);
    }
    const { key, sorted } = known;
    const [have] = await db
      .select({ sha256: configUserSets.sha256 })
      .from(configUserSets)
      .where(eq(configUserSets.sha256, key));
    if (have) {
      await db
        .update(configUserSets)
        .set({ usedAt: sql`now()` })
        .where(eq(configUserSets.sha256, key));
    } else {
      await db
        .insert(configUserSets)
        .values({ sha256: key, userIds: sorted, count: sorted.length })
        .onConflictDoNothing();
    }
    return key;
  }

  /** A generation row with its user ids and file contents read back. */
  async function resolve(row: ConfigGenerationRow): Promise<GenerationRecord> {
    const refs = row.files.flatMap((f) => (f.ref ? [f.ref] : []));
    const contents = new Map(
      refs.length > 0
        ? (
            await db
              .select({ sha256: configContents.sha256, content: configContents.content })
              .from(configContents)
              .where(inArray(configContents.sha256, refs))
          ).map((r) => [r.sha256, r.content])
        : [],
    );
    let userIds = row.userIds;
    if (row.userSet) {
      const [set] = await db
        .select({ userIds: configUserSets.userIds })
        .from(configUserSets)
        .where(eq(configUserSets.sha256, row.userSet));
      userIds = set?.userIds ?? [];
    }
    const { userSet: _set, ...rest } = row;
    return {
      ...rest,
      userIds,
      files: row.files.map((f) => ({
        path: f.path,
        sha256: f.sha256,
        content: f.ref ? (contents.get(f.ref) ?? '') : (f.content ?? ''),
      })),
    };
  }

  return {
    /** The hosts carrying a tag (a rollout aimed at a tag). */
    async hostsTagged(tag: string): Promise<string[]> {
      const rows = await db.select({ hostId: hostTags.hostId }).from(hostTags).where(eq(hostTags.tag, tag));
      return rows.map((r) => r.hostId);
    },

    /** Every node, or a host's nodes, ordered by host then instance. */
    async listNodes(filter: { hostId?: string } = {}): Promise<ProxyNodeRow[]> {
      return db
        .select()
        .from(proxyNodes)
        .where(filter.hostId ? eq(proxyNodes.hostId, filter.hostId) : undefined)
        .orderBy(asc(proxyNodes.hostId), asc(proxyNodes.instance));
    },

    async getNode(hostId: string, instance: string): Promise<ProxyNodeRow | null> {
      const [row] = await db.select().from(proxyNodes).where(node(hostId, instance));
      return row ?? null;
    },

    /**
     * Creates a node. Its generation counter starts at the highest generation stored for the host
     * and instance (a node made again after a delete continues the numbering). Throws
     * `proxy.node_exists` when the host already has this instance.
     */
    async createNode(input: {
      hostId: string;
      instance: string;
      adapter: string;
      settings: Record<string, unknown>;
      publicAddress?: string | null;
    }): Promise<ProxyNodeRow> {
      try {
        const [row] = await db
          .insert(proxyNodes)
          .values({
            ...input,
            lastGeneration: sql`(select coalesce(max(${configGenerations.generation}), 0) from ${configGenerations}
              where ${configGenerations.hostId} = ${input.hostId} and ${configGenerations.instance} = ${input.instance})`,
          })
          .returning();
        return row!;
      } catch (err) {
        if (pgErrorCode(err) === sqlState.uniqueViolation) throw new KeelError('proxy.node_exists');
        throw err;
      }
    },

    /** Changes a node's adapter, settings, public address or state; null when there is no such node. */
    async updateNode(
      hostId: string,
      instance: string,
      patch: Partial<Pick<ProxyNodeRow, 'adapter' | 'settings' | 'state' | 'publicAddress'>>,
    ): Promise<ProxyNodeRow | null> {
      const [row] = await db
        .update(proxyNodes)
        .set({ ...patch, updatedAt: sql`now()` })
        .where(node(hostId, instance))
        .returning();
      return row ?? null;
    },

    /** Deletes a node (its generations stay, as history); false when there was none. */
    async deleteNode(hostId: string, instance: string): Promise<boolean> {
      const rows = await db.delete(proxyNodes).where(node(hostId, instance)).returning({ id: proxyNodes.id });
      return rows.length > 0;
    },

    /** Hands out the node's next generation number (atomic: concurrent callers get distinct numbers). */
    async nextGeneration(hostId: string, instance: string): Promise<number> {
      const [row] = await db
        .update(proxyNodes)
        .set({ lastGeneration: sql`${proxyNodes.lastGeneration} + 1` })
        .where(node(hostId, instance))
        .returning({ n: proxyNodes.lastGeneration });
      if (!row) throw new KeelError('proxy.node_not_found');
      return row.n;
    },

    /**
     * Raises the node's counter to at least `generation` (the agent runs a number this database
     * never handed out, e.g. after a restore from an older backup).
     */
    async raiseGeneration(hostId: string, instance: string, generation: number): Promise<void> {
      await db
        .update(proxyNodes)
        .set({ lastGeneration: sql`greatest(${proxyNodes.lastGeneration}, ${generation})` })
        .where(node(hostId, instance));
    },

    async insertGeneration(input: NewGeneration): Promise<GenerationRecord> {
      const { userIds, files, ...fields } = input;
      const [row] = await db
        .insert(configGenerations)
        .values({
          ...fields,
          userIds: [],
          userSet: await storeUserSet(userIds),
          rollbackOf: input.rollbackOf ?? null,
          reason: input.reason ?? null,
          files: files ? await storeFiles(files) : [],
          method: input.method ?? null,
          finishedAt: input.outcome && input.outcome !== 'pending' ? sql`now()` : null,
        })
        .returning();
      return { ...(await resolve({ ...row!, files: [] })), files: files ?? [], userIds: [...userIds] };
    },

    /** Records how a pushed generation ended. */
    async finishGeneration(
      hostId: string,
      instance: string,
      generation: number,
      result: GenerationResult,
    ): Promise<GenerationRecord | null> {
      const files = result.files ?? [];
      const [row] = await db
        .update(configGenerations)
        .set({
          outcome: result.outcome,
          files: await storeFiles(files),
          method: result.method ?? null,
          errorCode: result.errorCode ?? null,
          errorMessage: result.errorMessage ?? null,
          finishedAt: sql`now()`,
        })
        .where(and(gens(hostId, instance), eq(configGenerations.generation, generation)))
        .returning();
      if (!row) return null;
      // The caller has the contents it just stored: only the user ids are read back.
      return { ...(await resolve({ ...row, files: [] })), files };
    },

    /**
     * Marks `generation` as what the node runs, with the settings it was made from, and clears its
     * drift. A generation lower than the current one never replaces it (answers of pushes that
     * overtook each other).
     */
    async markApplied(
      hostId: string,
      instance: string,
      generation: number,
      settings: Record<string, unknown>,
    ): Promise<ProxyNodeRow | null> {
      const [row] = await db
        .update(proxyNodes)
        .set({
          currentGeneration: generation,
          settings,
          state: 'applied',
          drift: [],
          updatedAt: sql`now()`,
        })
        .where(
          and(
            node(hostId, instance),
            sql`(${proxyNodes.currentGeneration} is null or ${proxyNodes.currentGeneration} < ${generation})`,
          ),
        )
        .returning();
      return row ?? null;
    },

    /**
     * Keeps the newest `keep` generations of a host's instance (and the one it runs, however
     * old); deletes the rest. Returns how many went.
     */
    async pruneGenerations(
      hostId: string,
      instance: string,
      keep: number,
      current: number | null,
    ): Promise<number> {
      const rows = await db
        .delete(configGenerations)
        .where(
          and(
            gens(hostId, instance),
            sql`${configGenerations.generation} < (
              select g.generation from ${configGenerations} g
              where g.host_id = ${hostId} and g.instance = ${instance}
              order by g.generation desc offset ${keep - 1} limit 1)`,
            sql`${configGenerations.generation} <> ${current ?? 0}`,
          ),
        )
        .returning({ files: configGenerations.files, userSet: configGenerations.userSet });
      if (rows.length === 0) return 0;
      // Contents and user sets the pruned rows named, unless another generation still names them
      // or a push used them lately (it may be about to store a generation naming them).
      const refs = [...new Set(rows.flatMap((r) => r.files.flatMap((f) => (f.ref ? [f.ref] : []))))];
      const sets = [...new Set(rows.flatMap((r) => (r.userSet ? [r.userSet] : [])))];
      if (refs.length > 0) {
        await db.delete(configContents).where(
          and(
            inArray(configContents.sha256, refs),
            sql`${configContents.usedAt} < now() - interval '10 minutes'`,
            sql`not exists (select 1 from ${configGenerations} g
              where g.files @> jsonb_build_array(jsonb_build_object('ref', ${configContents.sha256})))`,
          ),
        );
      }
      if (sets.length > 0) {
        await db
          .delete(configUserSets)
          .where(
            and(
              inArray(configUserSets.sha256, sets),
              sql`${configUserSets.usedAt} < now() - interval '10 minutes'`,
              sql`not exists (select 1 from ${configGenerations} g where g.user_set = ${configUserSets.sha256})`,
            ),
          );
      }
      return rows.length;
    },

    /** The host's generations of an instance, newest first, without file contents. */
    async listGenerations(
      hostId: string,
      instance: string,
      opts: { before?: number; limit: number },
    ): Promise<GenerationSummary[]> {
      return db
        .select(summaryColumns)
        .from(configGenerations)
        .where(
          and(
            gens(hostId, instance),
            opts.before !== undefined ? lt(configGenerations.generation, opts.before) : undefined,
          ),
        )
        .orderBy(desc(configGenerations.generation))
        .limit(opts.limit);
    },

    /** The newest generation of every host+instance (or one host's), without file contents: one query. */
    async latestGenerations(filter: { hostId?: string } = {}): Promise<GenerationSummary[]> {
      return db
        .selectDistinctOn([configGenerations.hostId, configGenerations.instance], summaryColumns)
        .from(configGenerations)
        .where(filter.hostId ? eq(configGenerations.hostId, filter.hostId) : undefined)
        .orderBy(configGenerations.hostId, configGenerations.instance, desc(configGenerations.generation));
    },

    /** One generation with its files' contents. */
    async getGeneration(
      hostId: string,
      instance: string,
      generation: number,
    ): Promise<GenerationRecord | null> {
      const [row] = await db
        .select()
        .from(configGenerations)
        .where(and(gens(hostId, instance), eq(configGenerations.generation, generation)));
      return row ? resolve(row) : null;
    },

    /**
     * Records local edits the agent reported: one entry per path (a newer report of a path
     * replaces the older). `replace` sets the whole list (from a full status read).
     */
    async setDrift(
      hostId: string,
      instance: string,
      entries: DriftEntry[],
      opts: { replace?: boolean } = {},
    ): Promise<ProxyNodeRow | null> {
      return db.transaction(async (tx) => {
        const [current] = await tx
          .select({ drift: proxyNodes.drift })
          .from(proxyNodes)
          .where(node(hostId, instance))
          .for('update');
        if (!current) return null;
        const byPath = new Map<string, DriftEntry>();
        if (!opts.replace) for (const e of current.drift) byPath.set(e.path, e);
        for (const e of entries) byPath.set(e.path, e);
        const [row] = await tx
          .update(proxyNodes)
          .set({ drift: [...byPath.values()], updatedAt: sql`now()` })
          .where(node(hostId, instance))
          .returning();
        return row ?? null;
      });
    },

    /** Stores a rollout and its steps in one transaction. */
    async createRollout(
      rollout: Pick<ConfigRolloutRow, 'adapter' | 'settings' | 'canary' | 'batchSize' | 'actor' | 'reason'>,
      steps: { hostId: string; instance: string; stage: number }[],
    ): Promise<RolloutWithSteps> {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .insert(configRollouts)
          .values({ ...rollout, state: 'running', heartbeatAt: sql`now()` })
          .returning();
        const stored = await tx
          .insert(configRolloutSteps)
          .values(steps.map((s, position) => ({ ...s, rolloutId: row!.id, position })))
          .returning();
        return { ...row!, steps: stored.sort((a, b) => a.position - b.position) };
      });
    },

    async getRollout(id: string): Promise<RolloutWithSteps | null> {
      if (!isUuid(id)) return null;
      const [row] = await db.select().from(configRollouts).where(eq(configRollouts.id, id));
      if (!row) return null;
      const steps = await db
        .select()
        .from(configRolloutSteps)
        .where(eq(configRolloutSteps.rolloutId, id))
        .orderBy(asc(configRolloutSteps.position));
      return { ...row, steps };
    },

    /** The newest rollouts first, each with its steps. */
    async listRollouts(limit: number): Promise<RolloutWithSteps[]> {
      const rows = await db
        .select()
        .from(configRollouts)
        .orderBy(desc(configRollouts.createdAt))
        .limit(limit);
      if (rows.length === 0) return [];
      const steps = await db
        .select()
        .from(configRolloutSteps)
        .where(
          inArray(
            configRolloutSteps.rolloutId,
            rows.map((r) => r.id),
          ),
        )
        .orderBy(asc(configRolloutSteps.position));
      return rows.map((r) => ({ ...r, steps: steps.filter((s) => s.rolloutId === r.id) }));
    },

    /**
     * Moves a rollout to `state` when it is in one of `from` (so two replicas or a double click
     * cannot both resume it); null when it was not.
     */
    async transitionRollout(
      id: string,
      from: RolloutState[],
      to: RolloutState,
      haltReason: string | null = null,
    ): Promise<ConfigRolloutRow | null> {
      const [row] = await db
        .update(configRollouts)
        .set({
          state: to,
          haltReason,
          updatedAt: sql`now()`,
          finishedAt: to === 'running' ? null : sql`now()`,
          // Resumed: alive from now (the replica resuming it renews it).
          ...(to === 'running' ? { heartbeatAt: sql`now()` } : {}),
        })
        .where(and(eq(configRollouts.id, id), inArray(configRollouts.state, from)))
        .returning();
      return row ?? null;
    },

    async updateStep(
      rolloutId: string,
      position: number,
      patch: Partial<
        Pick<
          ConfigRolloutStepRow,
          'state' | 'generation' | 'errorCode' | 'errorMessage' | 'startedAt' | 'finishedAt'
        >
      >,
    ): Promise<void> {
      await db
        .update(configRolloutSteps)
        .set(patch)
        .where(and(eq(configRolloutSteps.rolloutId, rolloutId), eq(configRolloutSteps.position, position)));
      await db
        .update(configRollouts)
        .set({ updatedAt: sql`now()` })
        .where(eq(configRollouts.id, rolloutId));
    },

    /**
     * Generations still `pending` and created before `createdBefore` (past any request deadline)
     * were pushed by a controller that stopped before the agent answered. Their outcome is unknown here; they are marked failed with a
     * message saying so (the node's current generation tells what the agent runs).
     */
    async failPendingGenerations(message: string, createdBefore?: Date): Promise<number> {
      const rows = await db
        .update(configGenerations)
        .set({
          outcome: 'failed',
          errorCode: 'request.disconnected',
          errorMessage: message,
          finishedAt: sql`now()`,
        })
        .where(
          and(
            eq(configGenerations.outcome, 'pending'),
            createdBefore ? lt(configGenerations.createdAt, createdBefore) : undefined,
          ),
        )
        .returning({ id: configGenerations.id });
      return rows.length;
    },

    /** Renews the heartbeat of rollouts this replica runs (only while they are `running`). */
    async heartbeatRollouts(ids: readonly string[], at: Date): Promise<void> {
      if (ids.length === 0) return;
      await db
        .update(configRollouts)
        .set({ heartbeatAt: at })
        .where(and(inArray(configRollouts.id, [...ids]), eq(configRollouts.state, 'running')));
    },

    /**
     * Rollouts still `running` whose heartbeat is older than `staleBefore` (or every running one
     * without it) were cut off by a controller stop: they become `halted` (resumable) and their
     * running steps `interrupted`. Returns the ids.
     */
    async haltInterrupted(reason: string, staleBefore?: Date): Promise<string[]> {
      return db.transaction(async (tx) => {
        const rows = await tx
          .update(configRollouts)
          .set({ state: 'halted', haltReason: reason, updatedAt: sql`now()`, finishedAt: sql`now()` })
          .where(
            and(
              eq(configRollouts.state, 'running'),
              staleBefore
                ? sql`(${configRollouts.heartbeatAt} is null or ${configRollouts.heartbeatAt} < ${staleBefore.toISOString()}::timestamptz)`
                : undefined,
            ),
          )
          .returning({ id: configRollouts.id });
        if (rows.length > 0) {
          await tx
            .update(configRolloutSteps)
            .set({ state: 'interrupted', finishedAt: sql`now()` })
            .where(
              and(
                inArray(
                  configRolloutSteps.rolloutId,
                  rows.map((r) => r.id),
                ),
                eq(configRolloutSteps.state, 'running'),
              ),
            );
        }
        return rows.map((r) => r.id);
      });
    },
  };
}

export type ProxyNodeRepository = ReturnType<typeof createProxyNodeRepository>;
