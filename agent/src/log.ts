// The agent's logger: pino's line format and calling convention (`log.info({ host }, 'connected')`,
// `child()`, levels), written by ~150 lines instead of pino itself. An idle agent logs a few lines
// a day, and pino with its stream, worker and serializer modules cost the idle agent ~0.5 MB of
// heap and ~1-3 MiB of RSS in measurements (docs/benchmarks.md, agent-idle), on a 60 MB budget.
// Lines are byte for byte what pino writes with the shared `logFormat` (log.test.ts compares them
// with pino's own), so journald, the controller's docs and log shippers see one format.
import { fstatSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { format } from 'node:util';
import type { Logger } from 'pino';
import type { logFormat } from '@keel/shared';

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;
const SILENT = Infinity;

/** Options as the agent passes them to pino: `{ name, level, ...logFormat }`. */
export interface LogOptions {
  name?: string;
  level?: string;
  timestamp: (typeof logFormat)['timestamp'];
  formatters: (typeof logFormat)['formatters'];
  /**
   * Where lines go (default: stdout, fd 1, written at once as pino's default destination does, but
   * never waiting for a full one: LineWriter).
   */
  write?: (line: string) => void;
}

/** JSON of a value as pino writes it: circular references as "[Circular]", bigints as numbers. */
function json(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v));
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(value, (_k, v: unknown) => {
      if (typeof v === 'bigint') return Number(v);
      if (typeof v === 'object' && v !== null) {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    });
  }
}

type ErrorLike = Error & { cause?: unknown; [key: string]: unknown };

const isErrorLike = (e: unknown): e is ErrorLike =>
  e instanceof Error || (typeof e === 'object' && e !== null && typeof (e as ErrorLike).message === 'string');

/** pino's `err` serializer (pino-std-serializers): type, message and stack with their causes, own fields. */
function serializeError(err: unknown, seen = new Set<unknown>()): unknown {
  if (!isErrorLike(err)) return err;
  seen.add(err);
  const messages: string[] = [err.message];
  const stacks: string[] = [typeof err.stack === 'string' ? err.stack : ''];
  for (let c: unknown = err.cause; c instanceof Error && !seen.has(c); c = (c as ErrorLike).cause) {
    seen.add(c);
    messages.push(c.message);
    stacks.push(`caused by: ${c.stack ?? ''}`);
  }
  const out: Record<string, unknown> = {
    type:
      Object.prototype.toString.call(err.constructor) === '[object Function]'
        ? err.constructor.name
        : 'Object',
    message: messages.join(': '),
    stack: stacks.join('\n'),
  };
  if (err instanceof AggregateError)
    out.aggregateErrors = err.errors.map((e: unknown) => serializeError(e, seen));
  for (const key in err) {
    if (key === 'cause' || key in out || key === 'aggregateErrors') continue;
    const v = err[key];
    out[key] = isErrorLike(v) && !seen.has(v) ? serializeError(v, seen) : v;
  }
  return out;
}

/** Bytes of log lines a full stdout may hold back before lines are dropped (and counted). */
export const STDOUT_QUEUE_BYTES = 256 * 1024;
/** How often a held-back queue retries a full stdout, ms. */
const RETRY_MS = 25;

/**
 * Lines to a file descriptor (stdout) without ever waiting for it: each line is written at once
 * with writeSync when nothing is held back (so what was logged before a crash is out), and when the
 * descriptor is full (a reader that does not keep up: a stuck journald, a test that stops reading)
 * the rest waits in a queue of at most STDOUT_QUEUE_BYTES, retried every RETRY_MS. Lines beyond
 * that are dropped and counted, and once the queue drains one line says how many were lost. A call
 * costs at most one write attempt: heartbeats and requests never wait behind a log line (pino's
 * destination, and this logger before, waited up to 1 s per line with Atomics.wait).
 *
 * A pipe or socket inherited as fd 1 is blocking (a write to a full one would wait until the
 * reader reads), so for those `process.stdout` is opened first: libuv makes the descriptor
 * non-blocking, and a full one answers EAGAIN. Regular files and terminals are left as they are.
 */
export class LineWriter {
  readonly #fd: number;
  readonly #maxBytes: number;
  readonly #dropMarker: (dropped: number) => string;
  #queue: Buffer[] = [];
  #queued = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | null = null;
  #gone = false;

  constructor(opts: { fd?: number; maxBytes?: number; dropMarker: (dropped: number) => string }) {
    this.#fd = opts.fd ?? 1;
    this.#maxBytes = opts.maxBytes ?? STDOUT_QUEUE_BYTES;
    this.#dropMarker = opts.dropMarker;
    if (this.#fd === 1) {
      try {
        const st = fstatSync(1);
        if (st.isFIFO() || st.isSocket()) void process.stdout;
      } catch {
        // No fd 1: every write fails and drops its line.
      }
    }
    process.once('exit', () => this.#drain(false));
  }

  /** Lines dropped so far (the queue was full), not yet reported by a marker line. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Bytes held back for a full descriptor. */
  get queued(): number {
    return this.#queued;
  }

  write(line: string): void {
    if (this.#gone) return;
    if (this.#queue.length > 0) {
      this.#enqueue(Buffer.from(line));
      return;
    }
    const buf = Buffer.from(line);
    const n = this.#try(buf);
    if (n < buf.length) this.#enqueue(n === 0 ? buf : buf.subarray(n), n > 0);
  }

  /** Writes what it can of `buf` now; -1 becomes 0 (full), and a gone descriptor drops everything. */
  #try(buf: Buffer): number {
    try {
      return writeSync(this.#fd, buf);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      // stdout gone (EPIPE, EBADF): nothing will ever be read; stop trying.
      this.#gone = true;
      this.#queue = [];
      this.#queued = 0;
      return buf.length;
    }
  }

  /** Holds a line back; a started line (`partial`) is always kept, so no line is cut in two. */
  #enqueue(buf: Buffer, partial = false): void {
    if (!partial && this.#queued + buf.length > this.#maxBytes) {
      this.#dropped++;
    } else {
      this.#queue.push(buf);
      this.#queued += buf.length;
    }
    if (!this.#timer && this.#queue.length > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#drain(true);
      }, RETRY_MS);
      this.#timer.unref();
    }
  }

  /** Writes held-back lines until the descriptor is full again; then the drop count, if any. */
  #drain(retry: boolean): void {
    while (this.#queue.length > 0 && !this.#gone) {
      const head = this.#queue[0]!;
      const n = this.#try(head);
      if (this.#gone) return;
      this.#queued -= n;
      if (n < head.length) {
        this.#queue[0] = head.subarray(n);
        if (retry && !this.#timer) {
          this.#timer = setTimeout(() => {
            this.#timer = null;
            this.#drain(true);
          }, RETRY_MS);
          this.#timer.unref();
        }
        return;
      }
      this.#queue.shift();
    }
    if (this.#dropped > 0 && !this.#gone) {
      const dropped = this.#dropped;
      this.#dropped = 0;
      this.write(this.#dropMarker(dropped));
    }
  }
}

class AgentLogger {
  #level: number;
  readonly #opts: LogOptions;
  /** `,"pid":…,"hostname":…,"name":…` and the child bindings, as JSON fields. */
  readonly #bindings: string;
  readonly #write: (line: string) => void;

  constructor(opts: LogOptions, level: number, bindings: string) {
    this.#opts = opts;
    this.#level = level;
    this.#bindings = bindings;
    this.#write = opts.write ?? ((line) => stdout(this).write(line));
  }

  get level(): string {
    if (this.#level === SILENT) return 'silent';
    return (Object.keys(LEVELS) as LevelName[]).find((n) => LEVELS[n] === this.#level) ?? 'info';
  }

  set level(name: string) {
    this.#level = levelValue(name);
  }

  isLevelEnabled(name: string): boolean {
    return levelValue(name) >= this.#level;
  }

  child(bindings: Record<string, unknown>, options?: { level?: string }): AgentLogger {
    return new AgentLogger(
      this.#opts,
      options?.level ? levelValue(options.level) : this.#level,
      this.#bindings + fields(bindings),
    );
  }

  trace = (...a: unknown[]) => this.#log('trace', a);
  debug = (...a: unknown[]) => this.#log('debug', a);
  info = (...a: unknown[]) => this.#log('info', a);
  warn = (...a: unknown[]) => this.#log('warn', a);
  error = (...a: unknown[]) => this.#log('error', a);
  fatal = (...a: unknown[]) => this.#log('fatal', a);
  silent = () => {};
  flush = () => {};

  #log(level: LevelName, args: unknown[]): void {
    if (LEVELS[level] < this.#level) return;
    this.#write(this.line(level, args));
  }

  /** The line a call at `level` with `args` writes (whatever the level threshold). */
  line(level: LevelName, args: unknown[]): string {
    const [first, ...others] = args;
    let rest = others;
    let obj: Record<string, unknown> = {};
    if (isErrorLike(first) && first instanceof Error) {
      obj = { err: first };
      if (typeof rest[0] !== 'string') rest = [first.message];
    } else if (typeof first === 'object' && first !== null) {
      obj = first as Record<string, unknown>;
    } else {
      rest = [first, ...rest];
    }
    const params = rest.slice(1);
    let msg = rest[0];
    if (msg === undefined && typeof obj.msg === 'string') msg = obj.msg;
    if (typeof msg === 'string' && params.length) msg = format(msg, ...params);
    const { level: levelField } = this.#opts.formatters.level(level);
    let line = `{"level":${json(levelField)}${this.#opts.timestamp()}${this.#bindings}`;
    line += fields(obj, (k, v) => (k === 'err' ? serializeError(v) : v), 'msg');
    if (msg !== undefined) line += `,"msg":${json(typeof msg === 'string' ? msg : String(msg))}`;
    return `${line}}\n`;
  }
}

let stdoutWriter: LineWriter | null = null;

/** The one writer of fd 1 for every logger of the process; its drop count is told in `log`'s format. */
function stdout(log: AgentLogger): LineWriter {
  return (stdoutWriter ??= new LineWriter({
    dropMarker: (dropped) =>
      log.line('warn', [{ dropped }, 'stdout was full: %d log lines were dropped', dropped]),
  }));
}

function levelValue(name: string): number {
  if (name === 'silent') return SILENT;
  return Object.hasOwn(LEVELS, name) ? LEVELS[name as LevelName] : LEVELS.info;
}

/** `,"k":v` for each field whose JSON is not undefined (functions and undefined are left out). */
function fields(
  obj: Record<string, unknown>,
  map: (k: string, v: unknown) => unknown = (_k, v) => v,
  skip?: string,
): string {
  let out = '';
  for (const k in obj) {
    if (k === skip || !Object.hasOwn(obj, k)) continue;
    const v = json(map(k, obj[k]));
    if (v !== undefined) out += `,${JSON.stringify(k)}:${v}`;
  }
  return out;
}

/**
 * A logger writing pino's lines: `createLog({ name: 'keel-agent', level: 'info', ...logFormat })`.
 * Typed as pino's Logger so that every module takes it as before; it implements the methods the
 * agent calls (levels, child, level, isLevelEnabled, flush), not pino's transports or hooks.
 */
export function createLog(opts: LogOptions): Logger {
  const base = fields({ pid: process.pid, hostname: hostname(), name: opts.name });
  return new AgentLogger(opts, levelValue(opts.level ?? 'info'), base) as unknown as Logger;
}
