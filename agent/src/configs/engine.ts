// The config engine: one transaction per `config.apply` for one proxy instance — refuse a stale
// generation, parse the settings, render, validate with the real program (in a staging dir),
// write atomically, activate (API / hot reload / reload / restart), health-check, and roll back to
// the previous files by itself when any step after the write fails. Also drift (applied files
// edited on the host: watched with chokidar, reported with a unified diff, adopted or overwritten)
// and per-user traffic.
//
// On disk, under the agent's config root (`<state dir>/configs`):
//   <instance>/<files the adapter renders>   live config (watched)
//   <instance>/run/                          the proxy's pid, logs, temp files
//   <instance>/.staging/                     rendered files being validated
//   <instance>/.keel-applied.json            generation, adapter, settings, users, files (0600)
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  KeelError,
  adapterSettingsSchemas,
  describeSchemaError,
  proxyInstanceSchema,
  type ProxyAdapter,
  type ProxyUserSpec,
} from '@keel/shared';
import {
  type AdapterContext,
  type ApplyMethod,
  type Desired,
  type ProcessHost,
  type ProxyAdapterDefinition,
  type ProxyPrograms,
  type RenderedFile,
  confined,
  sha256,
  trimOutput,
  writeFileAtomic,
} from './adapter.ts';
import { adapterFor } from './adapters.ts';

const STATE_FILE = '.keel-applied.json';
const STAGING = '.staging';

/** What is kept on disk about an instance's applied generation. */
interface AppliedState {
  instance: string;
  adapter: ProxyAdapter;
  generation: number;
  appliedAt: number;
  settings: unknown;
  users: ProxyUserSpec[];
  files: RenderedFile[];
}

export interface ConfigApplyInput {
  instance: string;
  adapter: ProxyAdapter;
  generation: number;
  settings: Record<string, unknown>;
  users: ProxyUserSpec[];
  reason?: string;
}

export interface FileView {
  path: string;
  sha256: string;
  content: string;
}

export interface DriftView {
  path: string;
  diff: string;
}

export interface EngineOptions {
  /** The config root: `<agent state dir>/configs`. */
  root: string;
  processes: ProcessHost;
  programs: ProxyPrograms;
  log: Logger;
  /** Host events (`config.drift`, `config.applied`, `config.rolled_back`). */
  emit?: (kind: string, data: Record<string, unknown>) => void;
  /** Lets tests pick an adapter implementation. */
  adapters?: Partial<Record<ProxyAdapter, ProxyAdapterDefinition<never>>>;
}

const MAX_DIFF = 60_000;

/** A unified diff of two texts, trimmed. */
async function unifiedDiff(path: string, from: string, to: string): Promise<string> {
  const { createTwoFilesPatch } = await import('diff');
  const patch = createTwoFilesPatch(`${path} (applied)`, `${path} (on disk)`, from, to, '', '', {
    context: 3,
  });
  return patch.length > MAX_DIFF ? `${patch.slice(0, MAX_DIFF)}\n… (diff trimmed)\n` : patch;
}

/** The proxy configs of one agent. */
export class ConfigEngine {
  #opts: EngineOptions;
  #applied = new Map<string, AppliedState>();
  #locks = new Map<string, Promise<unknown>>();
  #busy = new Set<string>();
  /** Drift already reported, per file path: the sha256 of the content reported, so an edit is reported once. */
  #reported = new Map<string, string>();
  #watcher: {
    close(): Promise<void>;
    add(p: string | string[]): void;
    unwatch(p: string | string[]): void;
  } | null = null;
  #watched = new Set<string>();
  #closed = false;

  constructor(opts: EngineOptions) {
    this.#opts = opts;
    mkdirSync(opts.root, { recursive: true, mode: 0o700 });
  }

  /** Reads every instance's applied state and starts watching its files. */
  async load(): Promise<void> {
    for (const name of readdirSync(this.#opts.root)) {
      if (!proxyInstanceSchema.safeParse(name).success) continue;
      const path = join(this.#opts.root, name, STATE_FILE);
      if (!existsSync(path)) continue;
      try {
        const state = JSON.parse(readFileSync(path, 'utf8')) as AppliedState;
        this.#applied.set(name, state);
      } catch (err) {
        this.#opts.log.error({ err, instance: name }, 'unreadable applied config state; instance ignored');
      }
    }
    await this.#watch();
  }

  #adapter(kind: ProxyAdapter): ProxyAdapterDefinition {
    return (this.#opts.adapters?.[kind] ?? adapterFor(kind)) as ProxyAdapterDefinition;
  }

  #ctx(instance: string): AdapterContext {
    const dir = join(this.#opts.root, instance);
    return {
      instance,
      dir,
      runDir: join(dir, 'run'),
      processName: `proxy-${instance}`,
      processes: this.#opts.processes,
      programs: this.#opts.programs,
      log: this.#opts.log.child({ instance }),
    };
  }

  /** Runs `fn` alone for this instance (applies and drift actions never interleave). */
  async #exclusive<T>(instance: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(instance) ?? Promise.resolve();
    const run = prev
      .catch(() => {})
      .then(async () => {
        this.#busy.add(instance);
        try {
          return await fn();
        } finally {
          this.#busy.delete(instance);
        }
      });
    this.#locks.set(instance, run);
    try {
      return await run;
    } finally {
      if (this.#locks.get(instance) === run) this.#locks.delete(instance);
    }
  }

  #persist(state: AppliedState): void {
    writeFileAtomic(join(this.#opts.root, state.instance, STATE_FILE), JSON.stringify(state));
  }

  #fileViews(ctx: AdapterContext, files: RenderedFile[]): FileView[] {
    return files.map((f) => ({
      path: confined(ctx.dir, f.name),
      sha256: sha256(f.content),
      content: f.content,
    }));
  }

  /** Writes files into the instance dir atomically and deletes files of the previous set that are gone. */
  #writeFiles(ctx: AdapterContext, files: RenderedFile[], previous: RenderedFile[] = []): void {
    for (const f of files) writeFileAtomic(confined(ctx.dir, f.name), f.content);
    const keep = new Set(files.map((f) => f.name));
    for (const f of previous) if (!keep.has(f.name)) rmSync(confined(ctx.dir, f.name), { force: true });
  }

  /** The `config.apply` transaction. */
  async apply(input: ConfigApplyInput): Promise<{
    instance: string;
    generation: number;
    method: ApplyMethod;
    files: FileView[];
    appliedAt: number;
  }> {
    try {
      return await this.#applyAlone(input);
    } finally {
      await this.#watch();
    }
  }

  #applyAlone(input: ConfigApplyInput) {
    return this.#exclusive(input.instance, async () => {
      const current = this.#applied.get(input.instance) ?? null;
      if (current && input.generation <= current.generation) {
        throw new KeelError(
          'config.stale_generation',
          `generation ${input.generation} is not newer than generation ${current.generation} applied on this host`,
        );
      }
      if (current && current.adapter !== input.adapter) {
        throw new KeelError(
          'config.invalid',
          `instance ${input.instance} is a ${current.adapter} proxy; it cannot become ${input.adapter}`,
        );
      }
      if (`proxy-${input.instance}`.length > 63) {
        throw new KeelError(
          'config.invalid',
          'an instance name is at most 57 characters (its process is proxy-<name>)',
        );
      }
      const adapter = this.#adapter(input.adapter);
      const parsed = adapterSettingsSchemas[input.adapter].safeParse(input.settings);
      if (!parsed.success) {
        throw new KeelError('config.invalid', `settings: ${describeSchemaError(parsed.error)}`);
      }
      const ctx = this.#ctx(input.instance);
      mkdirSync(ctx.runDir, { recursive: true, mode: 0o700 });
      const settings = parsed.data;
      const users = [...input.users].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const ids = new Set<string>();
      for (const u of users) {
        if (ids.has(u.id)) throw new KeelError('config.invalid', `user ${u.id} is listed twice`);
        ids.add(u.id);
      }
      const files = await adapter.render(settings, users, ctx);
      for (const f of files) confined(ctx.dir, f.name);
      const next: Desired<unknown> = { settings, users, files };
      const previous: Desired<unknown> | null = current
        ? { settings: current.settings, users: current.users, files: current.files }
        : null;
      const appliedAt = Date.now();
      const commit = (method: ApplyMethod) => {
        const state: AppliedState = {
          instance: input.instance,
          adapter: input.adapter,
          generation: input.generation,
          appliedAt,
          settings,
          users,
          files,
        };
        this.#persist(state);
        this.#applied.set(input.instance, state);
        for (const v of this.#fileViews(ctx, files)) this.#reported.delete(v.path);
        this.#opts.emit?.('config.applied', {
          instance: input.instance,
          adapter: input.adapter,
          generation: input.generation,
          method,
          ...(input.reason ? { reason: input.reason } : {}),
        });
        return {
          instance: input.instance,
          generation: input.generation,
          method,
          files: this.#fileViews(ctx, files),
          appliedAt,
        };
      };

      // Nothing to change on the proxy: the same files and users (a re-push under a new number).
      const onDisk = current ? this.#driftOf(current).length === 0 : false;
      if (
        current &&
        onDisk &&
        sameFiles(current.files, files) &&
        JSON.stringify(current.users) === JSON.stringify(users)
      ) {
        const { isRunning } = await import('./adapter.ts');
        if (isRunning(ctx)) return commit('unchanged');
      }

      // 1. Validate in a staging dir with the real program; nothing live is touched yet.
      const staging = join(ctx.dir, STAGING);
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging, { recursive: true, mode: 0o700 });
      try {
        for (const f of files) writeFileAtomic(confined(staging, f.name), f.content);
        await adapter.validate(staging, next, ctx, previous);
      } finally {
        rmSync(staging, { recursive: true, force: true });
      }

      // 2. Write, 3. activate, 4. health-check; any failure rolls back to the previous files.
      const previousFiles = previous?.files ?? [];
      this.#writeFiles(ctx, files, previousFiles);
      let method: ApplyMethod;
      try {
        method = await adapter.activate(next, previous, ctx);
      } catch (err) {
        await this.#rollBack(adapter, ctx, next, previous, `activation failed: ${(err as Error).message}`);
        throw new KeelError(
          'config.apply_failed',
          trimOutput(
            `the proxy did not take the new configuration (${(err as Error).message}); the previous one was restored`,
          ),
        );
      }
      try {
        await adapter.health(next, ctx);
      } catch (err) {
        await this.#rollBack(adapter, ctx, next, previous, `health check failed: ${(err as Error).message}`);
        throw new KeelError(
          'config.unhealthy',
          trimOutput(
            `health check failed after the change (${(err as Error).message}); ${
              previous ? `generation ${current!.generation} was restored` : 'the proxy was stopped'
            }`,
          ),
        );
      }
      return commit(method);
    });
  }

  /** Puts the previous files back and makes the proxy use them again (or stops a first-time proxy). */
  async #rollBack(
    adapter: ProxyAdapterDefinition,
    ctx: AdapterContext,
    failed: Desired<unknown>,
    previous: Desired<unknown> | null,
    why: string,
  ): Promise<void> {
    ctx.log.warn({ why }, 'rolling back the proxy configuration');
    try {
      if (!previous) {
        if (adapter.stop) await adapter.stop(ctx);
        else if (ctx.processes.has(ctx.processName)) await ctx.processes.stop(ctx.processName);
        for (const f of failed.files) rmSync(confined(ctx.dir, f.name), { force: true });
      } else {
        this.#writeFiles(ctx, previous.files, failed.files);
        await adapter.activate(previous, failed, ctx);
        await adapter.health(previous, ctx).catch((err: unknown) => {
          ctx.log.error({ err }, 'the restored configuration is not healthy either');
        });
      }
      this.#opts.emit?.('config.rolled_back', { instance: ctx.instance, reason: trimOutput(why, 500) });
    } catch (err) {
      ctx.log.error({ err }, 'rollback failed');
    }
  }

  /** Files of an instance whose content on disk differs from what was applied (sync read). */
  #driftOf(state: AppliedState): { file: RenderedFile; path: string; onDisk: string }[] {
    const ctx = this.#ctx(state.instance);
    const out: { file: RenderedFile; path: string; onDisk: string }[] = [];
    for (const f of state.files) {
      const path = confined(ctx.dir, f.name);
      let onDisk = '';
      try {
        onDisk = readFileSync(path, 'utf8');
      } catch {
        onDisk = '';
      }
      if (onDisk !== f.content) out.push({ file: f, path, onDisk });
    }
    return out;
  }

  /** Every instance: generation, files, drift. */
  async status() {
    const instances = [];
    for (const state of [...this.#applied.values()].sort((a, b) => (a.instance < b.instance ? -1 : 1))) {
      const ctx = this.#ctx(state.instance);
      const drift: DriftView[] = [];
      for (const d of this.#driftOf(state))
        drift.push({ path: d.path, diff: await unifiedDiff(d.path, d.file.content, d.onDisk) });
      instances.push({
        instance: state.instance,
        adapter: state.adapter,
        generation: state.generation,
        appliedAt: state.appliedAt,
        files: state.files.map((f) => ({ path: confined(ctx.dir, f.name), sha256: sha256(f.content) })),
        drift,
      });
    }
    return { instances };
  }

  #state(instance: string): AppliedState {
    const s = this.#applied.get(instance);
    if (!s) throw new KeelError('config.not_found', `No proxy instance named ${instance} on this host.`);
    return s;
  }

  /**
   * Resolves drift. `adopt`: the host's edit becomes the applied content (kept as is, the proxy is
   * re-activated with it). `overwrite`: the applied files are written back and the proxy re-activated.
   */
  async resolveDrift(instance: string, action: 'adopt' | 'overwrite') {
    this.#state(instance);
    return this.#exclusive(instance, async () => {
      const state = this.#state(instance);
      const adapter = this.#adapter(state.adapter);
      const ctx = this.#ctx(instance);
      const drift = this.#driftOf(state);
      const current: Desired<unknown> = { settings: state.settings, users: state.users, files: state.files };
      if (action === 'overwrite') {
        if (drift.length > 0) {
          this.#writeFiles(ctx, state.files);
          try {
            await adapter.activate(current, null, ctx);
            await adapter.health(current, ctx);
          } catch (err) {
            throw new KeelError(
              'config.apply_failed',
              trimOutput(
                `the applied files were written back but the proxy did not take them: ${(err as Error).message}`,
              ),
            );
          }
        }
      } else if (drift.length > 0) {
        const adopted = state.files.map((f) => {
          const d = drift.find((x) => x.file.name === f.name);
          return d ? { name: f.name, content: d.onDisk } : f;
        });
        // The host's edit must pass the program's own check before it is adopted.
        const staging = join(ctx.dir, STAGING);
        rmSync(staging, { recursive: true, force: true });
        mkdirSync(staging, { recursive: true, mode: 0o700 });
        try {
          for (const f of adopted) writeFileAtomic(confined(staging, f.name), f.content);
          await adapter.validate(staging, { ...current, files: adopted }, ctx);
        } finally {
          rmSync(staging, { recursive: true, force: true });
        }
        // Restart-class activation: the adopted file may differ anywhere, so no API diff applies.
        try {
          await adapter.activate({ ...current, files: adopted }, null, ctx);
          await adapter.health({ ...current, files: adopted }, ctx);
        } catch (err) {
          // The edit does not serve: back to the applied files, as a failed apply would.
          await this.#rollBack(
            adapter,
            ctx,
            { ...current, files: adopted },
            current,
            `adopting the host's edit failed: ${(err as Error).message}`,
          );
          throw new KeelError(
            'config.unhealthy',
            trimOutput(
              `the host's edit did not serve (${(err as Error).message}); generation ${state.generation} was restored`,
            ),
          );
        }
        state.files = adopted;
        this.#persist(state);
      }
      for (const d of drift) this.#reported.delete(d.path);
      this.#opts.emit?.('config.drift_resolved', { instance, action, generation: state.generation });
      return { instance, generation: state.generation, action, files: this.#fileViews(ctx, state.files) };
    });
  }

  /** Per-user traffic of an instance. */
  async traffic(instance: string) {
    const state = this.#state(instance);
    const adapter = this.#adapter(state.adapter);
    if (!adapter.traffic) {
      return { instance, counterEpoch: 'none', users: [] };
    }
    const t = await adapter.traffic(
      { settings: state.settings, users: state.users, files: state.files },
      this.#ctx(instance),
    );
    return { instance, ...t };
  }

  // ---- drift watch ------------------------------------------------------------------------------

  async #watch(): Promise<void> {
    if (this.#closed) return;
    const wanted = new Set<string>();
    for (const state of this.#applied.values()) {
      const ctx = this.#ctx(state.instance);
      for (const f of state.files) wanted.add(confined(ctx.dir, f.name));
    }
    if (!this.#watcher) {
      const { watch } = await import('chokidar');
      const watcher = watch([], {
        ignoreInitial: true,
        awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 50 },
      });
      watcher.on('change', (path: string) => void this.checkDrift(path));
      watcher.on('add', (path: string) => void this.checkDrift(path));
      watcher.on('unlink', (path: string) => void this.checkDrift(path));
      watcher.on('error', (err: unknown) => this.#opts.log.warn({ err }, 'config watch error'));
      this.#watcher = watcher;
    }
    const add = [...wanted].filter((p) => !this.#watched.has(p));
    const drop = [...this.#watched].filter((p) => !wanted.has(p));
    if (add.length) this.#watcher.add(add);
    if (drop.length) this.#watcher.unwatch(drop);
    this.#watched = wanted;
  }

  /** Checks one file (or every file) for drift and reports each new edit once on the events stream. */
  async checkDrift(path?: string): Promise<void> {
    for (const state of this.#applied.values()) {
      if (this.#busy.has(state.instance)) continue;
      for (const d of this.#driftOf(state)) {
        if (path && d.path !== path) continue;
        const seen = sha256(d.onDisk);
        if (this.#reported.get(d.path) === seen) continue;
        this.#reported.set(d.path, seen);
        const diff = await unifiedDiff(d.path, d.file.content, d.onDisk);
        this.#opts.log.warn(
          { instance: state.instance, path: d.path },
          'applied proxy config edited on the host',
        );
        this.#opts.emit?.('config.drift', { instance: state.instance, path: d.path, diff });
      }
    }
  }

  /** Refreshes the watch list after applies (called by the capability). */
  async rewatch(): Promise<void> {
    await this.#watch();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#watcher?.close();
    this.#watcher = null;
  }
}

function sameFiles(a: RenderedFile[], b: RenderedFile[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((f, i) => f.name === b[i]!.name && f.content === b[i]!.content);
}
