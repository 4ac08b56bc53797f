// Per-process log retention, enforced by a periodic job. Each process keeps lines younger than its
// `maxAgeDays` and at most its newest `maxBytes` of output (line bytes); both default from the
// environment (KEEL_LOG_RETENTION_DAYS, 30; KEEL_LOG_RETENTION_BYTES, 1 GiB). A host's processes
// share one `logs` stream stored as chunks, so the job works per chunk: it summarises new chunks
// (lines/bytes per process), walks a host's chunks newest first adding up each process's bytes,
// deletes a chunk whose every line expired, and rewrites a chunk where only some processes'
// lines expired (tombstones keep sequence numbers). Chunks written in the last RECENT_MS are never
// touched: the agent may still resend those records, and a resend is compared with what is stored.
import type { Logger } from 'pino';
import { KeelError } from '@keel/shared';
import type { HostRepository } from '../repositories/hosts.ts';
import type { LogRetentionRepository, RetentionLimits } from '../repositories/log-retention.ts';
import { requireHostAccess } from './access.ts';
import type { AuditService } from './audit.ts';
import type { ProcessActor } from './processes.ts';

/** The defaults, from the environment. */
export interface RetentionDefaults {
  maxAgeDays: number;
  maxBytes: number;
  /** How often the job runs. */
  intervalMs: number;
}

const DAY = 86_400_000;
/** Chunks newer than this are left alone (the agent's resend window). */
export const RECENT_MS = 10 * 60_000;
/** Chunks summarised per page (one decoded chunk in memory at a time: log-retention repository). */
const SUMMARISE_PAGE = 100;

/** Reads KEEL_LOG_RETENTION_DAYS, KEEL_LOG_RETENTION_BYTES, KEEL_LOG_RETENTION_INTERVAL_SECONDS. */
export function logRetentionFromEnv(env: NodeJS.ProcessEnv = process.env): RetentionDefaults {
  const num = (v: string | undefined, fallback: number, min: number) => {
    const n = v === undefined || v === '' ? fallback : Number(v);
    return Number.isFinite(n) && n >= min ? n : fallback;
  };
  return {
    maxAgeDays: num(env.KEEL_LOG_RETENTION_DAYS, 30, 1),
    maxBytes: num(env.KEEL_LOG_RETENTION_BYTES, 1024 ** 3, 1024),
    intervalMs: num(env.KEEL_LOG_RETENTION_INTERVAL_SECONDS, 600, 10) * 1000,
  };
}

/** What one run did. */
export interface RetentionRun {
  summarised: number;
  deletedChunks: number;
  rewrittenChunks: number;
  removedLines: number;
}

/** Log retention: limits per process and the job that applies them. */
export function createLogRetentionService(deps: {
  retention: LogRetentionRepository;
  hosts: HostRepository;
  audit: AuditService;
  log: Logger;
  defaults?: RetentionDefaults;
  now?: () => number;
}) {
  const { retention, hosts, audit, log } = deps;
  const defaults = deps.defaults ?? logRetentionFromEnv();
  const now = deps.now ?? Date.now;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<RetentionRun> | null = null;
  /** stop() was called: a run in progress ends after its current page. */
  let stopped = false;

  const effective = (l: RetentionLimits | undefined | null) => ({
    maxAgeDays: l?.maxAgeDays ?? defaults.maxAgeDays,
    maxBytes: l?.maxBytes ?? defaults.maxBytes,
  });

  async function runHost(hostId: string, at: number, out: RetentionRun): Promise<void> {
    // Every chunk stored since the last run is summarised in this one: retention counts a
    // process's bytes from the summaries, and the search skips by the filters, so a pass that fell
    // behind (it took at most 500 chunks, ~125 MiB of lines, per host per run before 2 Dec) let a
    // host logging faster than ~0.2 MiB/s keep its unsummarised chunks past its size limit for
    // ever. A backlog (such a host, or every filter rebuilt after an upgrade) takes at most about
    // half of one core: after each page, a pause as long as the page took.
    for (;;) {
      const started = performance.now();
      const n = await retention.summariseMissing(hostId, SUMMARISE_PAGE);
      out.summarised += n;
      if (n < SUMMARISE_PAGE || stopped) break;
      await new Promise((r) => setTimeout(r, performance.now() - started));
    }
    const limits = await retention.limits(hostId);
    const chunks = await retention.summaries(hostId);
    /** Bytes of each process in chunks newer than the one being looked at. */
    const newer = new Map<string, number>();
    const toDelete: number[] = [];
    const toRewrite: { firstSeq: number; partial: Map<string, { cutoffTs: number; all: boolean }> }[] = [];
    for (const c of chunks) {
      const procs = Object.entries(c.summary);
      const expiredHere = new Map<string, { cutoffTs: number; all: boolean }>();
      for (const [p, [, bytes, tsLast]] of procs) {
        const l = effective(limits.get(p));
        const ageCutoff = at - l.maxAgeDays * DAY;
        const before = newer.get(p) ?? 0;
        // Past the size limit: everything of p in this chunk and older goes.
        if (before >= l.maxBytes) expiredHere.set(p, { cutoffTs: Infinity, all: true });
        else if (tsLast < ageCutoff) expiredHere.set(p, { cutoffTs: ageCutoff, all: true });
        else expiredHere.set(p, { cutoffTs: ageCutoff, all: false }); // lines older than the cutoff only
        newer.set(p, before + bytes);
      }
      if (c.tsLast > at - RECENT_MS) continue;
      const all = procs.length === 0 || [...expiredHere.values()].every((e) => e.all);
      if (all) toDelete.push(c.firstSeq);
      // Some processes' lines go: all of a process past its size or age, or its lines older than
      // its age cutoff where the chunk starts before it.
      else if ([...expiredHere.values()].some((e) => e.all || c.tsFirst < e.cutoffTs)) {
        toRewrite.push({ firstSeq: c.firstSeq, partial: expiredHere });
      }
    }
    if (toDelete.length > 0) out.deletedChunks += await retention.deleteChunks(hostId, toDelete);
    for (const r of toRewrite) {
      const removed = await retention.rewriteChunk(hostId, r.firstSeq, (p, ts) => {
        const e = r.partial.get(p);
        return e ? e.all || ts < e.cutoffTs : false;
      });
      if (removed > 0) {
        out.rewrittenChunks++;
        out.removedLines += removed;
      }
    }
  }

  async function runOnce(): Promise<RetentionRun> {
    const out: RetentionRun = { summarised: 0, deletedChunks: 0, rewrittenChunks: 0, removedLines: 0 };
    const at = now();
    for (const hostId of await retention.hostsWithLogs()) {
      if (stopped) break;
      try {
        await runHost(hostId, at, out);
      } catch (err) {
        log.error({ err, host: hostId }, 'log retention failed for a host');
      }
    }
    if (out.deletedChunks || out.rewrittenChunks) log.info(out, 'log retention applied');
    return out;
  }

  return {
    defaults,

    /** One pass over every host (runs are never concurrent; a second call waits for the first). */
    run(): Promise<RetentionRun> {
      running ??= runOnce().finally(() => (running = null));
      return running;
    },

    /** Starts the periodic job (every `intervalMs`, first run after one interval). */
    start(): void {
      if (timer) return;
      stopped = false;
      timer = setInterval(() => {
        void this.run();
      }, defaults.intervalMs);
      timer.unref();
    },

    stop(): void {
      stopped = true;
      if (timer) clearInterval(timer);
      timer = null;
    },

    /** A process's limits as set and as in force. */
    async get(actor: ProcessActor, hostId: string, process: string) {
      requireHostAccess(actor, 'logs.read', [hostId]);
      const set = await retention.get(hostId, process);
      return { set: set ?? { maxAgeDays: null, maxBytes: null }, effective: effective(set) };
    },

    /** Sets a process's limits (null: back to the default); audited. */
    async set(actor: ProcessActor, hostId: string, process: string, limits: RetentionLimits) {
      requireHostAccess(actor, 'process.control', [hostId]);
      if (!(await hosts.get(hostId))) throw new KeelError('host.not_found');
      await retention.set(hostId, process, limits);
      await audit.record(
        actor.id,
        'process.log_retention',
        `host:${hostId}`,
        { process, ...limits },
        actor.ip,
      );
      return { set: limits, effective: effective(limits) };
    },
  };
}

export type LogRetentionService = ReturnType<typeof createLogRetentionService>;
