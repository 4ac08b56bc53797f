// Run on many hosts: one command (an argv array; a script only through an interpreter the user
// names, e.g. ["/bin/sh", "-c", script]) on a selection of hosts — ids, a group, a tag — with a
// concurrency bound and a per-host timeout. Each host runs it on a `job.run` channel opened by the
// controller itself (services/jobs-channel.ts); output is published live on the bus (`job.output`)
// and kept per host up to a cap, with the exit code and duration. Runs are audited, cancellable and
// kept as history; a failed run publishes `job.failed` for alerting (docs/jobs.md).
//
// With controller replicas, a run reaches every host that is online anywhere: a host whose agent
// session another replica holds is reached through it (the hub's routed channel, bus/channels.ts),
// so a run's results, output, events and audit row do not depend on which replica started it (or
// whose scheduler fired it). Only a host reachable from no replica is reported offline.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  JOB_MAX_OUTPUT_BYTES,
  JOB_MAX_TIMEOUT_SECONDS,
  JobRecordReader,
  KeelError,
  jobCommandSchema,
  jobRunChannel,
  type ChannelEnd,
  type JobCommand,
} from '@keel/shared';
import { z } from 'zod';
import type { FleetBus } from '../bus/index.ts';
import type { ChannelHub } from '../channels/hub.ts';
import type { JobTarget } from '../db/schema/jobs.ts';
import type { JobRunHostRow, JobRunRow, JobsRepository } from '../repositories/jobs.ts';
import { canSeeHost, hasHostPermission, requireAccess, requireHostAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';
import { openJobChannel } from './jobs-channel.ts';

/** The most hosts one run may target. */
export const JOB_MAX_HOSTS = 10_000;
/** A running run not touched by its controller for this long was orphaned by a crash. */
const ORPHAN_AFTER_MS = 60_000;
const HEARTBEAT_MS = 10_000;
/** How much output of a running host the live view's first message carries, per stream. */
const SNAPSHOT_TAIL_BYTES = 64 * 1024;

/** Which hosts: any of ids, a group, a tag (their union). */
export const jobTargetSchema = z
  .strictObject({
    hostIds: z.array(z.string().uuid()).max(JOB_MAX_HOSTS).optional(),
    groupId: z.string().uuid().optional(),
    tag: z.string().min(1).max(64).optional(),
  })
  .refine((t) => (t.hostIds?.length ?? 0) > 0 || t.groupId || t.tag, 'name hostIds, a groupId or a tag');

/** A run request, as the API takes it. */
export const jobRunInputSchema = z.strictObject({
  command: jobCommandSchema,
  target: jobTargetSchema,
  concurrency: z.number().int().min(1).max(1000).default(20),
  timeoutSeconds: z.number().int().min(1).max(JOB_MAX_TIMEOUT_SECONDS).default(300),
  maxOutputBytes: z
    .number()
    .int()
    .min(1024)
    .max(JOB_MAX_OUTPUT_BYTES)
    .default(256 * 1024),
});
export type JobRunInput = z.input<typeof jobRunInputSchema>;

/** A host's part of a run, as the API shows it. */
export interface JobHostView {
  hostId: string;
  hostName: string;
  status: string;
  exitCode: number | null;
  error: string | null;
  startedAt: string | null;
  endedAt: string | null;
  durationMs: number | null;
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** Present when asked for (a run's detail). UTF-8, invalid bytes replaced. */
  stdout?: string;
  stderr?: string;
}

/** A run, as the API shows it. */
export interface JobRunView {
  id: string;
  scheduleId: string | null;
  scheduledFor: string | null;
  trigger: string;
  userId: string | null;
  command: JobCommand;
  target: JobTarget;
  concurrency: number;
  timeoutSeconds: number;
  maxOutputBytes: number;
  status: string;
  note: string | null;
  hostCount: number;
  failedCount: number;
  startedAt: string;
  endedAt: string | null;
}

/** What the bus carries about jobs (see docs/jobs.md). */
export type JobBusEvent =
  | { type: 'job.run'; run: JobRunView }
  | { type: 'job.host'; runId: string; host: JobHostView }
  /** A cancel made through a replica other than the one running the run (which acts on it). */
  | { type: 'job.cancel'; runId: string; userId: string; at: string }
  | {
      type: 'job.output';
      runId: string;
      hostId: string;
      stream: 'stdout' | 'stderr';
      /** Bytes of this stream before this piece (a live view drops what its snapshot held). */
      offset: number;
      text: string;
    }
  | {
      type: 'job.failed';
      runId: string;
      scheduleId: string | null;
      scheduleName: string | null;
      trigger: string;
      status: string;
      failedHosts: {
        hostId: string;
        hostName: string;
        status: string;
        exitCode: number | null;
        error: string | null;
      }[];
      at: string;
    };

export function runView(r: JobRunRow): JobRunView {
  return {
    id: r.id,
    scheduleId: r.scheduleId,
    scheduledFor: r.scheduledFor?.toISOString() ?? null,
    trigger: r.trigger,
    userId: r.userId,
    command: r.command as JobCommand,
    target: r.target,
    concurrency: r.concurrency,
    timeoutSeconds: r.timeoutSeconds,
    maxOutputBytes: r.maxOutputBytes,
    status: r.status,
    note: r.note,
    hostCount: r.hostCount,
    failedCount: r.failedCount,
    startedAt: r.startedAt.toISOString(),
    endedAt: r.endedAt?.toISOString() ?? null,
  };
}

export function hostView(h: JobRunHostRow, withOutput = false): JobHostView {
  return {
    hostId: h.hostId,
    hostName: h.hostName,
    status: h.status,
    exitCode: h.exitCode,
    error: h.error,
    startedAt: h.startedAt?.toISOString() ?? null,
    endedAt: h.endedAt?.toISOString() ?? null,
    durationMs: h.durationMs,
    stdoutBytes: h.stdoutBytes,
    stderrBytes: h.stderrBytes,
    stdoutTruncated: h.stdoutTruncated,
    stderrTruncated: h.stderrTruncated,
    ...(withOutput
      ? {
          stdout: (h.stdout ?? Buffer.alloc(0)).toString('utf8'),
          stderr: (h.stderr ?? Buffer.alloc(0)).toString('utf8'),
        }
      : {}),
  };
}

/** Output of one stream of one host, kept up to a cap. */
class CappedOutput {
  #parts: Buffer[] = [];
  bytes = 0;
  kept = 0;
  truncated = false;
  #decoder = new TextDecoder('utf-8');
  constructor(readonly cap: number) {}
  /** Keeps what fits; returns the text to show live ('' past the cap). */
  push(data: Buffer): string {
    this.bytes += data.length;
    const room = this.cap - this.kept;
    if (room <= 0) {
      this.truncated = true;
      return '';
    }
    const piece = data.length > room ? data.subarray(0, room) : data;
    if (piece.length < data.length) this.truncated = true;
    this.#parts.push(Buffer.from(piece));
    this.kept += piece.length;
    return this.#decoder.decode(piece, { stream: true });
  }
  buffer(): Buffer {
    return Buffer.concat(this.#parts);
  }
  tail(n: number): string {
    const all = this.buffer();
    return all.subarray(Math.max(0, all.length - n)).toString('utf8');
  }
}

interface LiveHost {
  hostId: string;
  hostName: string;
  status: string;
  stdout: CappedOutput;
  stderr: CappedOutput;
  close?: (reason: string, code?: string) => void;
}

interface LiveRun {
  id: string;
  userId: string | null;
  cancelled: boolean;
  hosts: Map<string, LiveHost>;
  done: Promise<JobRunView>;
}

export interface JobsServiceDeps {
  jobs: JobsRepository;
  hosts: {
    list(): Promise<{ id: string; name: string; revokedAt: Date | null }[]>;
    /** A host's stored presence: why a host this replica cannot reach is not reachable. */
    get?(id: string): Promise<{ online: boolean } | null>;
  };
  groups: { hostsOf(groupIds: readonly string[]): Promise<string[]>; get(id: string): Promise<unknown> };
  /**
   * isReachable (replicas): a host another replica holds is reached through it; without it, only
   * the hosts whose sessions are on this controller.
   */
  gateway: {
    isOnline(hostId: string): boolean;
    isReachable?(hostId: string): Promise<boolean>;
    /** Why a host online in the database is out of reach (replicas), or null. */
    unreachableReason?(hostId: string): Promise<string | null>;
  };
  audit: AuditService;
  /** Where this controller publishes its runs' events. */
  bus: FleetBus;
  /** Every replica's events (a cancel made through another replica); absent: none are heard. */
  fleet?: Pick<FleetBus, 'subscribe'>;
  log: Logger;
  now?: () => Date;
}

/** How long a cancel made through another replica waits for the running one to end the run. */
const REMOTE_CANCEL_WAIT_MS = 15_000;
/** Why a host online on another replica is not reached (this one has no broker now). */
export const ON_UNREACHABLE_REPLICA =
  'the host is online on another controller replica, which this one cannot reach now (it has lost the message bus)';
/** Why a host whose start the database did not take ended without running the command. */
export const HOST_START_NOT_STORED =
  "the controller could not store this host's start (database error), so the command was not run";
/** Output tails kept of runs other replicas run, in all, in characters (~2 bytes each in memory). */
const REMOTE_TAILS_MAX_CHARS = 16 * 1024 * 1024;

/**
 * The last SNAPSHOT_TAIL_BYTES of each running host's streams in runs another replica runs, from
 * their `job.output` events, so a live view opened here starts with the output so far as one on
 * the running replica does. Bounded: a host's tail goes when its end is heard (the database has
 * it then), a run's when it ends, the oldest runs' when all pass REMOTE_TAILS_MAX_CHARS.
 */
class RemoteTails {
  #runs = new Map<
    string,
    Map<string, { stdout: string; stderr: string; stdoutBytes: number; stderrBytes: number }>
  >();
  #chars = 0;

  output(runId: string, hostId: string, stream: 'stdout' | 'stderr', offset: number, text: string): void {
    let run = this.#runs.get(runId);
    if (!run) this.#runs.set(runId, (run = new Map()));
    let host = run.get(hostId);
    if (!host) run.set(hostId, (host = { stdout: '', stderr: '', stdoutBytes: 0, stderrBytes: 0 }));
    const before = host[stream].length;
    let kept = host[stream] + text;
    if (kept.length > SNAPSHOT_TAIL_BYTES) kept = kept.slice(-SNAPSHOT_TAIL_BYTES);
    host[stream] = kept;
    host[`${stream}Bytes`] = Math.max(host[`${stream}Bytes`], offset + Buffer.byteLength(text));
    this.#chars += kept.length - before;
    while (this.#chars > REMOTE_TAILS_MAX_CHARS && this.#runs.size > 0) {
      this.ended(this.#runs.keys().next().value!);
    }
  }

  get(runId: string, hostId: string) {
    return this.#runs.get(runId)?.get(hostId);
  }

  hostEnded(runId: string, hostId: string): void {
    const run = this.#runs.get(runId);
    const host = run?.get(hostId);
    if (!run || !host) return;
    this.#chars -= host.stdout.length + host.stderr.length;
    run.delete(hostId);
    if (run.size === 0) this.#runs.delete(runId);
  }

  ended(runId: string): void {
    for (const hostId of [...(this.#runs.get(runId)?.keys() ?? [])]) this.hostEnded(runId, hostId);
    this.#runs.delete(runId);
  }
}

/** How a host's channel end reads as a result. */
function hostStatusOf(end: ChannelEnd, cancelled: boolean): string {
  if (cancelled) return 'cancelled';
  if (end.code === 'job.timeout') return 'timeout';
  // Gone between the reachability check and the open (or no replica holds it any more).
  if (end.code === 'host.offline') return 'offline';
  if (end.code) return 'error';
  if (end.exitCode === 0) return 'succeeded';
  return 'failed';
}

export function createJobsService(deps: JobsServiceDeps) {
  const now = deps.now ?? (() => new Date());
  const { jobs, log, bus } = deps;
  let hub: ChannelHub | null = null;
  const live = new Map<string, LiveRun>();
  let heartbeat: NodeJS.Timeout | null = null;
  const publish = (event: JobBusEvent) => bus.publish(event as never);
  /** Cancels a run of this controller: hosts not started are skipped, running ones killed. */
  const cancelHere = (run: LiveRun) => {
    run.cancelled = true;
    for (const h of run.hosts.values()) h.close?.('cancelled by a user', 'job.cancelled');
  };
  /** Why a host cannot be reached from here: offline, or held by a replica this one cannot reach. */
  const offlineReason = async (hostId: string): Promise<string> => {
    if (!deps.gateway.isReachable) return 'the host is offline';
    const why = await deps.gateway.unreachableReason?.(hostId).catch(() => null);
    if (why) return why;
    const stored = await deps.hosts.get?.(hostId)?.catch(() => null);
    return stored?.online ? ON_UNREACHABLE_REPLICA : 'the host is offline';
  };
  const remoteTails = new RemoteTails();
  // Other replicas' runs: a cancel made through another replica for a run of this one (checked and
  // audited there), and the output tails of runs others run (a live view's first message here).
  const stopHearing = deps.fleet?.subscribe((e) => {
    const event = e as unknown as JobBusEvent;
    if (event.type === 'job.cancel') {
      const run = live.get(event.runId);
      if (!run || run.cancelled) return;
      log.info({ run: run.id, user: event.userId }, 'job run cancelled through another replica');
      cancelHere(run);
    } else if (live.has('runId' in event ? event.runId : event.type === 'job.run' ? event.run.id : '')) {
      return; // this replica's own run: its memory has it all
    } else if (event.type === 'job.output') {
      remoteTails.output(event.runId, event.hostId, event.stream, event.offset, event.text);
    } else if (event.type === 'job.host' && event.host.status !== 'running') {
      remoteTails.hostEnded(event.runId, event.host.hostId);
    } else if (event.type === 'job.run' && event.run.status !== 'running') {
      remoteTails.ended(event.run.id);
    }
  });
  /** Here, or (replicas) on another replica the channel is routed through. */
  const reachable = async (hostId: string): Promise<boolean> => {
    if (deps.gateway.isOnline(hostId)) return true;
    try {
      return (await deps.gateway.isReachable?.(hostId)) ?? false;
    } catch (err) {
      log.warn({ err, host: hostId }, 'could not tell which replica holds a job host: taken as offline');
      return false;
    }
  };

  /** The hosts a target names, limited to what `actor` may run on; explicit ids must all be allowed. */
  async function resolveTarget(
    actor: Actor,
    target: JobTarget,
  ): Promise<{ hosts: { id: string; name: string }[]; left: number }> {
    const explicit = target.hostIds ?? [];
    requireHostAccess(actor, 'job.run', explicit);
    const ids = new Set(explicit);
    const expanded = new Set<string>();
    if (target.groupId) {
      if (!(await deps.groups.get(target.groupId))) throw new KeelError('group.not_found');
      for (const h of await deps.groups.hostsOf([target.groupId])) expanded.add(h);
    }
    if (target.tag) for (const h of await jobs.hostsTagged(target.tag)) expanded.add(h);
    let left = 0;
    for (const h of expanded) {
      if (ids.has(h)) continue;
      // A group or tag may reach hosts the actor cannot see or run on: they are left out.
      if (canSeeHost(actor, h) && hasHostPermission(actor, 'job.run', h)) ids.add(h);
      else left++;
    }
    const all = await deps.hosts.list();
    const byId = new Map(all.map((h) => [h.id, h]));
    const hosts: { id: string; name: string }[] = [];
    for (const id of ids) {
      const h = byId.get(id);
      if (!h) {
        if (explicit.includes(id)) throw new KeelError('host.not_found');
        continue;
      }
      if (h.revokedAt) {
        if (explicit.includes(id)) throw new KeelError('host.revoked');
        continue;
      }
      hosts.push({ id: h.id, name: h.name });
    }
    if (hosts.length === 0) throw new KeelError('job.no_hosts');
    if (hosts.length > JOB_MAX_HOSTS)
      throw new KeelError('request.invalid', `at most ${JOB_MAX_HOSTS} hosts per run`);
    hosts.sort((a, b) => a.name.localeCompare(b.name));
    return { hosts, left };
  }

  /** Runs one host of a run; resolves when its row is stored. */
  async function runHost(
    run: LiveRun,
    h: LiveHost,
    input: z.output<typeof jobRunInputSchema>,
  ): Promise<void> {
    const started = now();
    const t0 = performance.now();
    const finish = async (status: string, end: Partial<ChannelEnd> & { error?: string | null }) => {
      h.status = status;
      const row = {
        status,
        exitCode: end.exitCode ?? null,
        error: end.error ?? (status === 'succeeded' || status === 'failed' ? null : (end.reason ?? null)),
        endedAt: now(),
        durationMs: Math.round(performance.now() - t0),
        stdout: h.stdout.buffer(),
        stderr: h.stderr.buffer(),
        stdoutBytes: h.stdout.bytes,
        stderrBytes: h.stderr.bytes,
        stdoutTruncated: h.stdout.truncated,
        stderrTruncated: h.stderr.truncated,
      };
      await jobs
        .hostFinished(run.id, h.hostId, row)
        .catch((err: unknown) =>
          log.error({ err, run: run.id, host: h.hostId }, 'storing a job result failed'),
        );
      publish({
        type: 'job.host',
        runId: run.id,
        host: hostView({ runId: run.id, hostId: h.hostId, hostName: h.hostName, startedAt: started, ...row }),
      });
    };
    if (run.cancelled)
      return finish('cancelled', { reason: 'the run was cancelled before this host started' });
    if (!hub || !(await reachable(h.hostId)))
      return finish('offline', { reason: await offlineReason(h.hostId) });
    h.status = 'running';
    try {
      await jobs.hostStarted(run.id, h.hostId, started);
    } catch (err) {
      // Nothing ran yet: the host ends here, stored, published and counted as any failed host, so
      // its row does not stay `pending` for ever (the command is not started on a host whose
      // start the database did not take).
      // The database's own message goes to the log (its query values redacted by log.ts), not to the result.
      log.error({ err, run: run.id, host: h.hostId }, "storing a job host's start failed");
      return finish('error', { reason: HOST_START_NOT_STORED });
    }
    publish({
      type: 'job.host',
      runId: run.id,
      host: {
        ...hostView({
          runId: run.id,
          hostId: h.hostId,
          hostName: h.hostName,
          status: 'running',
          exitCode: null,
          error: null,
          startedAt: started,
          endedAt: null,
          durationMs: null,
          stdout: null,
          stderr: null,
          stdoutBytes: 0,
          stderrBytes: 0,
          stdoutTruncated: false,
          stderrTruncated: false,
        }),
      },
    });
    const reader = new JobRecordReader();
    const channel = openJobChannel(
      hub,
      {
        userId: run.userId ?? 'system',
        hostId: h.hostId,
        kind: jobRunChannel.kind,
        params: {
          ...input.command,
          timeoutSeconds: input.timeoutSeconds,
          maxOutputBytes: input.maxOutputBytes,
        },
      },
      (chunk) => {
        for (const r of reader.push(chunk)) {
          if (r.type === 'stdout' || r.type === 'stderr') {
            const offset = h[r.type].bytes;
            const text = h[r.type].push(r.data);
            if (text)
              publish({ type: 'job.output', runId: run.id, hostId: h.hostId, stream: r.type, offset, text });
          } else if (r.type === 'truncated') h[r.stream].truncated = true;
        }
      },
    );
    let timedOut = false;
    h.close = (reason, code) => channel.close(reason, code);
    // A backstop beside the agent's own timeout (an agent that never answers).
    const backstop = setTimeout(
      () => {
        timedOut = true;
        channel.close(`no result ${input.timeoutSeconds + 15} s after the start`, 'job.timeout');
      },
      (input.timeoutSeconds + 15) * 1000,
    );
    backstop.unref();
    const end = await channel.ended;
    clearTimeout(backstop);
    h.close = undefined;
    const status = timedOut ? 'timeout' : hostStatusOf(end, run.cancelled);
    await finish(status, end);
  }

  /** Starts a run in the background; resolves with its view once it is stored. */
  async function startRun(
    actor: Actor | null,
    input: z.output<typeof jobRunInputSchema>,
    opts: {
      userId: string | null;
      trigger: string;
      scheduleId?: string | null;
      scheduleName?: string | null;
      scheduledFor?: Date | null;
      hosts: { id: string; name: string }[];
      /** Hosts the owner may no longer run on (scheduled runs). */
      refused?: { id: string; name: string }[];
      ip?: string | null;
    },
  ): Promise<JobRunView | null> {
    const id = randomUUID();
    const at = now();
    const refused = opts.refused ?? [];
    const created = await jobs.createRun(
      {
        id,
        scheduleId: opts.scheduleId ?? null,
        scheduledFor: opts.scheduledFor ?? null,
        trigger: opts.trigger,
        userId: opts.userId,
        command: input.command,
        target: input.target as JobTarget,
        concurrency: input.concurrency,
        timeoutSeconds: input.timeoutSeconds,
        maxOutputBytes: input.maxOutputBytes,
        status: 'running',
        hostCount: opts.hosts.length + refused.length,
        startedAt: at,
        heartbeatAt: at,
      },
      [
        ...opts.hosts.map((h) => ({ hostId: h.id, hostName: h.name, status: 'pending' })),
        ...refused.map((h) => ({
          hostId: h.id,
          hostName: h.name,
          status: 'refused',
          error: 'the schedule owner may not run jobs on this host',
        })),
      ],
    );
    if (!created) return null; // the slot was claimed elsewhere
    await deps.audit.record(
      opts.userId ?? `schedule:${opts.scheduleId}`,
      'job.run',
      `job:${id}`,
      {
        trigger: opts.trigger,
        scheduleId: opts.scheduleId ?? null,
        argv: input.command.argv,
        envKeys: Object.keys(input.command.env),
        user: input.command.user ?? null,
        hosts: opts.hosts.length,
        target: input.target,
      },
      opts.ip ?? null,
    );
    void actor;
    const run: LiveRun = {
      id,
      userId: opts.userId,
      cancelled: false,
      hosts: new Map(
        opts.hosts.map((h) => [
          h.id,
          {
            hostId: h.id,
            hostName: h.name,
            status: 'pending',
            stdout: new CappedOutput(input.maxOutputBytes),
            stderr: new CappedOutput(input.maxOutputBytes),
          },
        ]),
      ),
      done: Promise.resolve(null as unknown as JobRunView),
    };
    live.set(id, run);
    ensureHeartbeat();
    const first = runView((await jobs.getRun(id))!);
    publish({ type: 'job.run', run: first });
    run.done = (async () => {
      const queue = [...run.hosts.values()];
      const worker = async () => {
        for (let h = queue.shift(); h; h = queue.shift()) {
          await runHost(run, h, input).catch((err: unknown) =>
            log.error({ err, run: id, host: h!.hostId }, 'job host failed'),
          );
        }
      };
      await Promise.all(Array.from({ length: Math.min(input.concurrency, queue.length) }, worker));
      const results = [...run.hosts.values()];
      const failed = results.filter((h) => h.status !== 'succeeded');
      const status = run.cancelled
        ? 'cancelled'
        : failed.length + refused.length > 0
          ? 'failed'
          : 'succeeded';
      await jobs.finishRun(id, { status, endedAt: now(), failedCount: failed.length + refused.length });
      live.delete(id);
      const view = runView((await jobs.getRun(id))!);
      publish({ type: 'job.run', run: view });
      if (status === 'failed') {
        const rows = await jobs.runHosts(id, false);
        publish({
          type: 'job.failed',
          runId: id,
          scheduleId: opts.scheduleId ?? null,
          scheduleName: opts.scheduleName ?? null,
          trigger: opts.trigger,
          status,
          failedHosts: rows
            .filter((r) => r.status !== 'succeeded')
            .map((r) => ({
              hostId: r.hostId,
              hostName: r.hostName,
              status: r.status,
              exitCode: r.exitCode,
              error: r.error,
            })),
          at: now().toISOString(),
        });
      }
      log.info({ run: id, status, hosts: results.length, failed: failed.length }, 'job run ended');
      return view;
    })();
    run.done.catch((err: unknown) => log.error({ err, run: id }, 'job run failed'));
    return first;
  }

  function ensureHeartbeat() {
    heartbeat ??= setInterval(() => {
      if (live.size === 0) return;
      jobs
        .heartbeat([...live.keys()], now())
        .catch((err: unknown) => log.warn({ err }, 'job heartbeat failed'));
    }, HEARTBEAT_MS);
    heartbeat.unref();
  }

  /**
   * A run another replica runs: the cancel goes to it over the bus, and the answer is the run once
   * it ended (read from the database), or 409 when it has not ended in REMOTE_CANCEL_WAIT_MS (that
   * replica cannot be reached, or is gone: its run becomes `interrupted` when its lease lapses).
   */
  async function cancelElsewhere(actor: Actor & { ip?: string | null }, row: JobRunRow): Promise<JobRunView> {
    const id = row.id;
    // No other replica, or none has touched the run lately (its controller stopped: the sweep
    // marks it interrupted): nobody to ask.
    if (!deps.fleet || now().getTime() - row.heartbeatAt.getTime() > 3 * HEARTBEAT_MS)
      throw new KeelError('job.not_running', 'The run is running on another controller.');
    publish({ type: 'job.cancel', runId: id, userId: actor.id, at: now().toISOString() });
    await deps.audit.record(actor.id, 'job.cancel', `job:${id}`, { elsewhere: true }, actor.ip ?? null);
    const until = Date.now() + REMOTE_CANCEL_WAIT_MS;
    for (;;) {
      const row = await jobs.getRun(id);
      if (row && row.status !== 'running') return runView(row);
      if (Date.now() > until)
        throw new KeelError(
          'job.not_running',
          'The run is running on another controller replica, which did not end it in time (is the message bus down?).',
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Whether the actor may see a run: its own, or one whose every host they may see (admins: all). */
  async function visibleRun(actor: Actor, id: string): Promise<JobRunRow> {
    const run = await jobs.getRun(id);
    if (!run) throw new KeelError('job.not_found');
    if (run.userId !== actor.id) {
      const hosts = await jobs.runHosts(id, false);
      if (!hosts.every((h) => canSeeHost(actor, h.hostId))) throw new KeelError('job.not_found');
    }
    return run;
  }

  return {
    /** Plugs in the channel hub (made after the services, beside the HTTP server). */
    attach(channels: ChannelHub) {
      hub = channels;
    },

    resolveTarget,
    startRun,

    /**
     * Runs a command on the target's hosts now; answers at once with the run (status `running`).
     * @example await jobs.run(actor, { command: { argv: ['uptime'] }, target: { tag: 'web' } })
     */
    async run(actor: Actor & { ip?: string | null }, body: unknown): Promise<JobRunView> {
      requireAccess(actor, 'job.run');
      const input = parseInput(body);
      const { hosts } = await resolveTarget(actor, input.target as JobTarget);
      return (await startRun(actor, input, {
        userId: actor.id,
        trigger: 'manual',
        hosts,
        ip: actor.ip ?? null,
      }))!;
    },

    /** Cancels a running run: hosts not started are skipped, running ones have their process group killed. */
    async cancel(actor: Actor & { ip?: string | null }, id: string): Promise<JobRunView> {
      requireAccess(actor, 'job.run');
      const row = await visibleRun(actor, id);
      const run = live.get(id);
      if (row.status !== 'running') throw new KeelError('job.not_running');
      if (!run) return cancelElsewhere(actor, row);
      cancelHere(run);
      await deps.audit.record(actor.id, 'job.cancel', `job:${id}`, {}, actor.ip ?? null);
      return run.done;
    },

    /** Waits for a run started on this controller to end (tests, CLI). */
    async wait(id: string): Promise<JobRunView | null> {
      const run = live.get(id);
      if (run) return run.done;
      const row = await jobs.getRun(id);
      return row ? runView(row) : null;
    },

    async list(
      actor: Actor,
      q: { scheduleId?: string; before?: Date; limit: number },
    ): Promise<JobRunView[]> {
      requireAccess(actor, 'job.run');
      const rows = await jobs.listRuns(q);
      const out: JobRunView[] = [];
      for (const r of rows) {
        if (r.userId === actor.id) out.push(runView(r));
        else {
          const hosts = await jobs.runHosts(r.id, false);
          if (hosts.every((h) => canSeeHost(actor, h.hostId))) out.push(runView(r));
        }
      }
      return out;
    },

    async get(actor: Actor, id: string): Promise<{ run: JobRunView; hosts: JobHostView[] }> {
      requireAccess(actor, 'job.run');
      const run = await visibleRun(actor, id);
      const hosts = await jobs.runHosts(id, true);
      const liveRun = live.get(id);
      return {
        run: runView(run),
        hosts: hosts.map((h) => {
          const l = liveRun?.hosts.get(h.hostId);
          // A host of a run another replica runs, still running: the output heard so far.
          const remote = !liveRun && h.status === 'running' ? remoteTails.get(id, h.hostId) : undefined;
          if (remote) return { ...hostView(h, true), ...remote };
          // A host still running: the output so far, from memory.
          if (l && (l.status === 'running' || h.status === 'running'))
            return {
              ...hostView(h, true),
              status: l.status,
              stdout: l.stdout.tail(SNAPSHOT_TAIL_BYTES),
              stderr: l.stderr.tail(SNAPSHOT_TAIL_BYTES),
              stdoutBytes: l.stdout.bytes,
              stderrBytes: l.stderr.bytes,
            };
          return hostView(h, true);
        }),
      };
    },

    /** Checks the actor may watch a run live (the SSE route). */
    async watchable(actor: Actor, id: string): Promise<JobRunRow> {
      requireAccess(actor, 'job.run');
      return visibleRun(actor, id);
    },

    /** Marks runs orphaned by a stopped controller as interrupted. */
    async sweepOrphans(): Promise<number> {
      const at = now();
      const rows = await jobs.interruptOrphans(new Date(at.getTime() - ORPHAN_AFTER_MS), at);
      for (const r of rows) publish({ type: 'job.run', run: runView(r) });
      return rows.length;
    },

    /** Cancels every run of this controller (shutdown); their rows are ended as cancelled. */
    async stop(): Promise<void> {
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = null;
      stopHearing?.();
      const runs = [...live.values()];
      for (const run of runs) {
        run.cancelled = true;
        for (const h of run.hosts.values()) h.close?.('the controller is stopping', 'job.cancelled');
      }
      await Promise.allSettled(runs.map((r) => r.done));
    },

    /** Runs started on this controller and still running. */
    get liveCount() {
      return live.size;
    },
  };
}

/** Validates a run request body (400 `request.invalid` naming the field). */
export function parseInput(body: unknown): z.output<typeof jobRunInputSchema> {
  const parsed = jobRunInputSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new KeelError(
      'request.invalid',
      `body${issue?.path.length ? `.${issue.path.join('.')}` : ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

export type JobsService = ReturnType<typeof createJobsService>;
