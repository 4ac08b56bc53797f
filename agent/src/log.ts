// The agent's logger: pino's line format and calling convention (`log.info({ host }, 'connected')`,
// `child()`, levels), written by ~150 lines instead of pino itself. An idle agent logs a few lines
// a day, and pino with its stream, worker and serializer modules cost the idle agent ~0.5 MB of
// heap and ~1-3 MiB of RSS in measurements (docs/benchmarks.md, agent-idle), on a 60 MB budget.
// Lines are byte for byte what pino writes with the shared `logFormat` (log.test.ts compares them
// with pino's own), so journald, the controller's docs and log shippers see one format.
import { writeSync } from 'node:fs';
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
  /** Where lines go (default: stdout, fd 1, written synchronously as pino's default destination). */
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

/** Writes a line to fd 1 synchronously, waiting out a full non-blocking pipe as pino's destination does. */
function writeStdout(line: string): void {
  const buf = Buffer.from(line);
  let at = 0;
  for (let tries = 0; at < buf.length && tries < 100;) {
    try {
      at += writeSync(1, buf, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return; // stdout gone: drop the line
      tries++;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
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
    this.#write = opts.write ?? writeStdout;
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
    this.#write(`${line}}\n`);
  }
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
