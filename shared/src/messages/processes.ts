// Supervised processes and their logs: the process spec a controller hands an agent, the states a
// process goes through, the `process.*` requests, the `logs` stream and its record format, and the
// `process.logs` live channel (the agent tails a process's output to a browser).
//
// A process is named per host (`web`, `mc-1`); the agent keeps its desired state on disk so it
// survives agent restarts, and the controller keeps the definition so the console can edit it.
import { z } from 'zod';
import { defineRequest, defineStream, lazySchema } from '../definitions.ts';
import { defineChannel } from './channels.ts';
import { commandCwdSchema, commandEnvSchema, commandUserSchema, noNul } from './command.ts';

/** What a process name looks like: unique per host, safe as a directory name. */
export const PROCESS_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** A process name: unique per host, safe as a directory name. */
export const processNameSchema = lazySchema(() =>
  z
    .string()
    .regex(
      PROCESS_NAME_PATTERN,
      'at most 63 lower-case letters, digits, ".", "_" and "-", starting alphanumeric',
    ),
);

/** Signals a process may be stopped with. */
export const stopSignals = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGKILL',
] as const;

/** Restart policy: when the supervisor starts a process again after it exits. */
export const restartPolicySchema = lazySchema(() =>
  z.strictObject({
    /** `never`; `on-failure` (non-zero exit or a signal); `always` (also after exit 0). */
    policy: z.enum(['never', 'on-failure', 'always']).default('on-failure'),
    /** First delay before a restart; doubles on each consecutive failure. */
    backoffMs: z.number().int().min(100).max(60_000).default(1_000),
    /** Largest delay between restarts. */
    maxBackoffMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** More restarts than this within `windowSeconds` puts the process into `crash-loop`. */
    maxRestarts: z.number().int().min(0).max(1_000).default(5),
    windowSeconds: z.number().int().min(1).max(86_400).default(60),
  }),
);

/** How a process is stopped: a signal (or a line on stdin, e.g. a game server's `stop`), then SIGKILL. */
export const stopSpecSchema = lazySchema(() =>
  z.strictObject({
    signal: z.enum(stopSignals).default('SIGTERM'),
    /** Sent to stdin instead of the signal when set (the signal follows if it is still running at half the grace). */
    stdinLine: noNul(4096)
      .refine((s) => !/[\r\n]/.test(s), 'one line')
      .optional(),
    /** How long to wait before SIGKILL of the whole process group. */
    graceMs: z.number().int().min(0).max(60_000).default(10_000),
  }),
);

/** Timing shared by every kind of health check (fields of an object schema, built on use). */
const healthTiming = () => ({
  /**
   * How long the process may stay `starting` before its first passing check; past it the start
   * counts as failed: the process is stopped and its restart policy applies.
   */
  startTimeoutSeconds: z.number().int().min(1).max(3_600).default(120),
});

/** Timing of the checks that probe (TCP, HTTP), repeated while the process runs. */
const probeTiming = () => ({
  ...healthTiming(),
  /** Time between probes (while starting and while running). */
  intervalMs: z.number().int().min(200).max(3_600_000).default(2_000),
  /** How long one probe may take. */
  timeoutMs: z.number().int().min(50).max(60_000).default(1_000),
  /** Consecutive failed probes that make a running process unhealthy (it is then restarted). */
  failures: z.number().int().min(1).max(100).default(3),
});

/**
 * When a process counts as up: a TCP port accepting connections, an HTTP URL answering 2xx/3xx,
 * or a line of its output (a game server's "Done"). It stays `starting` until the check passes.
 */
export const processHealthCheckSchema = lazySchema(() =>
  z
    .discriminatedUnion('type', [
      z.strictObject({
        type: z.literal('tcp'),
        host: z
          .string()
          .min(1)
          .max(253)
          .regex(/^[A-Za-z0-9.:_-]+$/, 'a host name or address')
          .default('127.0.0.1'),
        port: z.number().int().min(1).max(65_535),
        ...probeTiming(),
      }),
      z.strictObject({
        type: z.literal('http'),
        url: z
          .string()
          .max(2_048)
          .refine((s) => /^https?:\/\/[^\s]+$/.test(s) && URL.canParse(s), 'an http:// or https:// URL'),
        ...probeTiming(),
      }),
      z.strictObject({
        type: z.literal('output'),
        /** Text a line must contain (or a regular expression when `regex`), e.g. `Done (`. */
        match: noNul(1_024).min(1),
        regex: z.boolean().default(false),
        stream: z.enum(['stdout', 'stderr', 'both']).default('both'),
        ...healthTiming(),
      }),
    ])
    .refine((c) => {
      if (c.type !== 'output' || !c.regex) return true;
      try {
        new RegExp(c.match);
        return true;
      } catch {
        return false;
      }
    }, 'match must be a valid regular expression'),
);
export type ProcessHealthCheck = z.output<typeof processHealthCheckSchema>;

/**
 * Resource limits, applied through a cgroup v2 of the process's own where the host delegates the
 * controllers to the agent; where it cannot, the process runs and its status says why not.
 */
export const processLimitsSchema = lazySchema(() =>
  z.strictObject({
    /** Memory of the whole process group (cgroup `memory.max`); past it the kernel OOM-kills. */
    memoryBytes: z
      .number()
      .int()
      .min(4 * 1024 * 1024)
      .max(2 ** 50)
      .optional(),
    /** CPU time as a share of one core (cgroup `cpu.max`): 50 = half a core, 200 = two cores. */
    cpuPercent: z.number().int().min(1).max(100_000).optional(),
  }),
);
export type ProcessLimits = z.output<typeof processLimitsSchema>;

/** A file a process needs, written by the agent before each start (relative to the working directory). */
export const processFileSchema = lazySchema(() =>
  z.strictObject({
    path: noNul(255).refine(
      (p) =>
        !p.startsWith('/') &&
        !p.includes('\\') &&
        p.split('/').every((s) => s !== '' && s !== '.' && s !== '..'),
      'a relative path inside the working directory (no "..", no leading "/")',
    ),
    content: z.string().max(128 * 1024),
    mode: z.number().int().min(0).max(0o777).default(0o644),
  }),
);
export type ProcessFile = z.output<typeof processFileSchema>;

/** What to run and how to keep it running. argv is passed to the program as is: no shell. */
export const processSpecSchema = lazySchema(() =>
  z.strictObject({
    name: processNameSchema,
    argv: z.array(noNul(4096)).min(1).max(256),
    /** Working directory (absolute); the agent's state dir for the process when absent. */
    cwd: commandCwdSchema.optional(),
    env: commandEnvSchema.default({}),
    /** Run as this user (and its primary group); needs an agent running as root. */
    user: commandUserSchema.optional(),
    restart: restartPolicySchema.default(restartPolicySchema.parse({})),
    stop: stopSpecSchema.default(stopSpecSchema.parse({})),
    /** Desired state after `process.apply`, and after the host boots. */
    autostart: z.boolean().default(true),
    /**
     * Files written into the working directory before every start (a template's config files):
     * whole files at relative paths inside it, never outside (see docs/processes.md, Templates).
     */
    files: z
      .array(processFileSchema)
      .max(32)
      .refine(
        (files) => files.reduce((n, f) => n + Buffer.byteLength(f.content), 0) <= 128 * 1024,
        'at most 128 KiB of file content in all (a request must fit one agent frame)',
      )
      .optional(),
    /** When the process counts as up (absent: as soon as it was started). */
    health: processHealthCheckSchema.optional(),
    /** Memory and CPU limits through cgroup v2 (absent: none). */
    limits: processLimitsSchema.optional(),
  }),
);
export type ProcessSpec = z.output<typeof processSpecSchema>;
export type ProcessSpecInput = z.input<typeof processSpecSchema>;

/** Where a process is in its life. `exited` carries the exit code or signal; `crash-loop` gave up restarting. */
export const processStates = ['starting', 'running', 'stopping', 'stopped', 'exited', 'crash-loop'] as const;
export type ProcessState = (typeof processStates)[number];

/** One process as the agent sees it now. */
export const processStatusSchema = lazySchema(() =>
  z.strictObject({
    name: processNameSchema,
    state: z.enum(processStates),
    desired: z.enum(['running', 'stopped']),
    pid: z.number().int().positive().nullable(),
    /** When the current (or last) run started, epoch ms. */
    startedAt: z.number().nullable(),
    /** Exit code of the last run (null: killed by a signal, or unknown for an adopted process). */
    exitCode: z.number().int().nullable(),
    exitSignal: z.string().max(16).nullable(),
    /** Restarts the supervisor made since the process was last started by hand. */
    restarts: z.number().int().nonnegative(),
    /** When the next automatic restart is due (epoch ms), while backing off. */
    nextRestartAt: z.number().nullable(),
    /** CPU use of the process group since the previous sample, % of one core. */
    cpuPercent: z.number().nonnegative().nullable(),
    /** Resident memory of the process group, bytes. */
    rssBytes: z.number().nonnegative().nullable(),
    /** True when this run was started by an earlier agent and taken over after a restart. */
    adopted: z.boolean(),
    spec: processSpecSchema,
    /** The health check's view of the current run (absent from agents before health checks; null without a check). */
    health: z
      .strictObject({
        status: z.enum(['starting', 'healthy', 'unhealthy']),
        /** Consecutive failed probes. */
        failures: z.number().int().nonnegative(),
        /** What the last failed probe saw (or why the start timed out). */
        lastError: z.string().max(500).nullable(),
        /** When the current run first passed its check, epoch ms. */
        healthyAt: z.number().nullable(),
      })
      .nullable()
      .optional(),
    /**
     * Whether `spec.limits` hold for the current run (absent from older agents; null without limits):
     * `applied` false with the reason where the host does not delegate cgroup v2 controllers.
     */
    limits: z
      .strictObject({
        applied: z.boolean(),
        cgroup: z.string().max(4_096).nullable(),
        message: z.string().max(500).nullable(),
        /** Times the kernel OOM-killed a process of the group under `memory.max` (cgroup `memory.events`). */
        oomKills: z.number().int().nonnegative().nullable(),
      })
      .nullable()
      .optional(),
  }),
);
export type ProcessStatus = z.infer<typeof processStatusSchema>;

const byName = lazySchema(() => z.strictObject({ name: processNameSchema }));
const oneProcess = lazySchema(() => z.strictObject({ process: processStatusSchema }));

/** Every process on the host. */
export const processListRequest = defineRequest('process.list', {
  params: lazySchema(() => z.strictObject({})),
  result: lazySchema(() => z.strictObject({ processes: z.array(processStatusSchema).max(1_000) })),
  timeoutMs: 10_000,
});

/** Creates or replaces a process definition; a new one with `autostart` starts. A running process keeps running on its old spec until restarted. */
export const processApplyRequest = defineRequest('process.apply', {
  params: lazySchema(() => z.strictObject({ spec: processSpecSchema })),
  result: oneProcess,
  timeoutMs: 15_000,
});

/** Starts a process (clears crash-loop). */
export const processStartRequest = defineRequest('process.start', {
  params: byName,
  result: oneProcess,
  timeoutMs: 15_000,
});

/** Stops a process: stop signal or line, grace, then SIGKILL of its whole group. Answers once it is gone. */
export const processStopRequest = defineRequest('process.stop', {
  params: byName,
  result: oneProcess,
  timeoutMs: 75_000,
});

/** Kills the process's whole group at once (SIGKILL, no grace) and keeps it stopped. */
export const processKillRequest = defineRequest('process.kill', {
  params: byName,
  result: oneProcess,
  timeoutMs: 15_000,
});

/** Stops (as process.stop) and starts again. */
export const processRestartRequest = defineRequest('process.restart', {
  params: byName,
  result: oneProcess,
  timeoutMs: 90_000,
});

/** Stops a process and forgets it (its log files are deleted). */
export const processRemoveRequest = defineRequest('process.remove', {
  params: byName,
  result: lazySchema(() => z.strictObject({ removed: z.literal(true) })),
  timeoutMs: 75_000,
});

/** One line to a running process's stdin (a newline is added). */
export const processStdinRequest = defineRequest('process.stdin', {
  params: lazySchema(() =>
    z.strictObject({
      name: processNameSchema,
      line: z
        .string()
        .max(4096)
        .refine((s) => !/[\r\n]/.test(s) && !s.includes('\u0000'), 'one line without NUL'),
    }),
  ),
  result: lazySchema(() => z.strictObject({ bytes: z.number().int().nonnegative() })),
  timeoutMs: 10_000,
});

// ---- the logs stream ------------------------------------------------------------------------

/**
 * The `logs` stream: one record per output line of a supervised process, timestamped when the
 * agent read it. Payload (binary, see `encodeLogLine`):
 * `u8 flags | u8 nameLength | name (UTF-8) | line bytes (without the newline)`,
 * flags bit 0 = stderr, bit 1 = the line continues in the next record (split at MAX_LOG_LINE_BYTES,
 * or the process ended without a final newline).
 */
export const logsStream = defineStream('logs', { codec: 'bytes', durability: 'durable' });

/** Longest line stored as one record; longer lines are split, the parts flagged `continued`. */
export const MAX_LOG_LINE_BYTES = 64 * 1024;

/** One captured line. */
export interface LogLine {
  process: string;
  stream: 'stdout' | 'stderr';
  /** The line's bytes (may be invalid UTF-8 or binary). */
  line: Uint8Array;
  /** The line was split: the next record of this process and stream continues it. */
  continued: boolean;
}

/** Encodes a log line record payload. */
export function encodeLogLine(l: LogLine): Buffer {
  const name = Buffer.from(l.process, 'utf8');
  if (name.length > 255) throw new RangeError('process name too long');
  const head = Buffer.from([(l.stream === 'stderr' ? 1 : 0) | (l.continued ? 2 : 0), name.length]);
  return Buffer.concat([head, name, l.line]);
}

/** Decodes a log line record payload; null when it is malformed. */
export function decodeLogLine(payload: Uint8Array): LogLine | null {
  if (payload.length < 2) return null;
  const flags = payload[0]!;
  const nameLength = payload[1]!;
  if (payload.length < 2 + nameLength) return null;
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    process: buf.toString('utf8', 2, 2 + nameLength),
    stream: flags & 1 ? 'stderr' : 'stdout',
    continued: (flags & 2) !== 0,
    line: buf.subarray(2 + nameLength),
  };
}

// ---- the live output channel -----------------------------------------------------------------

/** The live view's default pace: ~20,000 lines of 100 bytes a second (see maxBytesPerSecond). */
export const LIVE_LOGS_DEFAULT_BYTES_PER_SECOND = 2 * 1024 * 1024;

/**
 * `process.logs`: the live output of one process, tailed from its log files by the agent (so it
 * works while the controller's storage is slow or down). Bytes are UTF-8 JSON lines
 * `{"s":"out"|"err","t":epochMs,"l":"text"}\n`, and `{"skipped":bytes}\n` where a slow reader
 * fell behind and the tail jumped ahead, or the output outran `maxBytesPerSecond`. `backlogBytes`
 * of each file are sent first.
 */
export const processLogsChannel = defineChannel('process.logs', {
  params: lazySchema(() =>
    z.strictObject({
      name: processNameSchema,
      backlogBytes: z
        .number()
        .int()
        .min(0)
        .max(1024 * 1024)
        .default(16 * 1024),
      /**
       * Most bytes of output a second the live view carries; past it the agent skips ahead with a
       * `{"skipped":bytes}` marker, as for a slow reader (docs/processes.md, "Console"). The
       * stored copy is always complete; the live view of a firehose is a sample of its newest
       * output, so watching one costs its host and the link a bounded share.
       */
      maxBytesPerSecond: z
        .number()
        .int()
        .min(64 * 1024)
        .max(64 * 1024 * 1024)
        .default(LIVE_LOGS_DEFAULT_BYTES_PER_SECOND),
    }),
  ),
});
export type ProcessLogsChannelParams = z.infer<typeof processLogsChannel.params>;

/** The process requests, by name (spread into the catalogue). */
export const processRequests = {
  [processListRequest.name]: processListRequest,
  [processApplyRequest.name]: processApplyRequest,
  [processStartRequest.name]: processStartRequest,
  [processStopRequest.name]: processStopRequest,
  [processKillRequest.name]: processKillRequest,
  [processRestartRequest.name]: processRestartRequest,
  [processRemoveRequest.name]: processRemoveRequest,
  [processStdinRequest.name]: processStdinRequest,
} as const;
