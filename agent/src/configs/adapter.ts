// The proxy adapter contract: what one proxy kind (nginx, v2ray, shadowsocks-libev, telemt) must
// provide so the engine (engine.ts) can render, validate, write, activate, health-check and roll
// back its configuration. A new proxy kind is one file implementing `ProxyAdapterDefinition` and
// one line in `adapters.ts`. See README.md in this folder and docs/proxies.md.
//
// Also here: the small pieces adapters share (atomic file writes, waiting for a port, a bounded
// HTTP GET, finding a program, running a program's own check with its output trimmed).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { applyMethods } from '@keel/shared';
import {
  KeelError,
  type ProcessSpec,
  type ProcessSpecInput,
  type ProcessStatus,
  type ProxyAdapter,
  type ProxyUserSpec,
  processSpecSchema,
} from '@keel/shared';

/** How a change reached the running proxy ('unchanged' < 'api' < 'hot-reload' < 'reload' < 'restart'). */
export type ApplyMethod = (typeof applyMethods)[number];

/** One rendered file: a plain name inside the instance's config dir (never a path from input). */
export interface RenderedFile {
  name: string;
  content: string;
}

/** The supervised-process operations an adapter uses (issue 8's supervisor). */
export interface ProcessHost {
  apply(spec: ProcessSpecInput): Promise<ProcessStatus>;
  start(name: string): Promise<ProcessStatus>;
  stop(name: string): Promise<ProcessStatus>;
  restart(name: string): Promise<ProcessStatus>;
  remove(name: string): Promise<void>;
  has(name: string): boolean;
  status(name: string): ProcessStatus;
}

/** Where programs are found (env `KEEL_NGINX_BIN`, `KEEL_V2RAY_BIN`, `KEEL_SS_SERVER_BIN`, `KEEL_TELEMT_BIN`). */
export interface ProxyPrograms {
  nginx: string;
  v2ray: string;
  ssServer: string;
  telemt: string;
}

/** What an adapter works with for one instance. */
export interface AdapterContext {
  instance: string;
  /** `<config root>/<instance>`: the live config files (watched for drift). */
  dir: string;
  /** `<config root>/<instance>/run`: pid, logs, temp files, the proxy's own state (not watched). */
  runDir: string;
  /** The supervised process that runs the proxy: `proxy-<instance>`. */
  processName: string;
  processes: ProcessHost;
  programs: ProxyPrograms;
  log: Logger;
}

/** A configuration as applied (or to apply): parsed settings, users and the files rendered from them. */
export interface Desired<S> {
  settings: S;
  users: ProxyUserSpec[];
  files: RenderedFile[];
}

/** Per-user traffic, cumulative since `counterEpoch`. */
export interface TrafficCounters {
  counterEpoch: string;
  users: { id: string; upBytes: number; downBytes: number }[];
}

/**
 * One proxy kind.
 *
 * @example
 * export const caddyAdapter: ProxyAdapterDefinition<CaddySettings> = {
 *   kind: 'caddy', settingsSchema, render, validate, activate, health,
 * };
 */
export interface ProxyAdapterDefinition<S = unknown> {
  kind: ProxyAdapter;
  /** Parses the pushed settings (zod, from `adapterSettingsSchemas`). */
  settingsSchema: z.ZodType<S>;
  /** Pure: settings + users -> files (names inside the instance dir). Throws `config.invalid` for what cannot be rendered. */
  render(settings: S, users: ProxyUserSpec[], ctx: AdapterContext): RenderedFile[] | Promise<RenderedFile[]>;
  /**
   * The real program's own check of the files written to `stagingDir`; throws `config.invalid` with
   * its output. `previous` (the applied config, null on the first apply or an adopted edit) lets an
   * adapter skip a slow check when only schema-checked user entries changed.
   */
  validate(
    stagingDir: string,
    next: Desired<S>,
    ctx: AdapterContext,
    previous?: Desired<S> | null,
  ): Promise<void>;
  /**
   * Makes the running proxy use the files now in `ctx.dir` (start, API update, hot reload, reload
   * or restart, preferring what keeps connections). `previous` is null on the first apply.
   * Throws on failure (the engine rolls back).
   */
  activate(next: Desired<S>, previous: Desired<S> | null, ctx: AdapterContext): Promise<ApplyMethod>;
  /** Proves the proxy serves the new configuration; throws a message on failure. */
  health(next: Desired<S>, ctx: AdapterContext): Promise<void>;
  /** Per-user traffic counters, where the proxy exposes them. */
  traffic?(current: Desired<S>, ctx: AdapterContext): Promise<TrafficCounters>;
  /** Stops the proxy (a first apply that failed, or an instance removed). Default: stop the process. */
  stop?(ctx: AdapterContext): Promise<void>;
}

// ---- shared pieces ------------------------------------------------------------------------------

/** SHA-256 hex of a text. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Writes a file atomically: a temp file beside it, fsync, rename over, fsync of the directory. A
 * crash leaves either the old or the new content, never a mix. Mode 0600 (configs hold secrets).
 */
export function writeFileAtomic(path: string, content: string | Buffer): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.keel-tmp-${process.pid}-${Date.now()}`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** `path` joined under `root`, or a KeelError when it would leave it (defence in depth: names are adapter constants). */
export function confined(root: string, name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) {
    throw new KeelError(
      'config.apply_failed',
      `refusing a config file name outside the config root: ${name}`,
    );
  }
  return join(root, name);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when a TCP connect to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      const t = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 1_000);
      s.once('connect', () => {
        clearTimeout(t);
        s.destroy();
        resolve(true);
      });
      s.once('error', (err) => {
        clearTimeout(t);
        last = err.message;
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${host}:${port} does not answer (${last || 'timeout'})`);
}

/** A bounded HTTP(S) GET on a fresh connection: status and up to 64 KiB of body. */
export function httpGet(
  url: string,
  opts: { host?: string; timeoutMs?: number; insecure?: boolean } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(
      u,
      {
        agent: false,
        headers: opts.host ? { host: opts.host } : {},
        rejectUnauthorized: !opts.insecure,
        servername: opts.host && !/^[\d.:]+$/.test(opts.host) ? opts.host : undefined,
        timeout: opts.timeoutMs ?? 3_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 65_536) body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Retries `check` until it passes or `timeoutMs` passes; rejects with the last failure. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5_000, everyMs = 150): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= until) throw err;
    }
    await sleep(everyMs);
  }
}

/** Trims a program's output for an error message: the last `max` characters, no NUL. */
export function trimOutput(text: string, max = 2_000): string {
  const clean = text.replaceAll('\u0000', '').trim();
  return clean.length > max ? `…${clean.slice(-max)}` : clean;
}

/** Runs a program's own config check; throws `config.invalid` with its output when it refuses. */
export async function runCheck(argv: string[], timeoutMs = 30_000): Promise<void> {
  const r = await execa(argv[0]!, argv.slice(1), {
    reject: false,
    all: true,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  if (r.exitCode !== 0 || r.failed) {
    throw new KeelError(
      'config.invalid',
      trimOutput(`${argv[0]} refused the configuration: ${r.all ?? r.message}`),
    );
  }
}

/** The first existing program among PATH and the sbin directories, or the bare name. */
export function findProgram(name: string): string {
  if (name.includes('/')) return name;
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return name;
}

/** The programs from the environment, found on PATH and in sbin. */
export function programsFromEnv(env: NodeJS.ProcessEnv = process.env): ProxyPrograms {
  return {
    nginx: findProgram(env.KEEL_NGINX_BIN || 'nginx'),
    v2ray: findProgram(env.KEEL_V2RAY_BIN || 'v2ray'),
    ssServer: findProgram(env.KEEL_SS_SERVER_BIN || 'ss-server'),
    telemt: findProgram(env.KEEL_TELEMT_BIN || 'telemt'),
  };
}

/** A loopback address to reach a proxy listening on `listen` (0.0.0.0 / :: -> loopback). */
export function reachable(listen: string): string {
  if (listen === '0.0.0.0') return '127.0.0.1';
  if (listen === '::') return '::1';
  return listen;
}

/** Starts the proxy process with `spec`, or restarts it on a new spec. Returns the status. */
export async function runProcess(
  ctx: AdapterContext,
  spec: Omit<ProcessSpecInput, 'name'>,
): Promise<ProcessStatus> {
  const full: ProcessSpecInput = {
    name: ctx.processName,
    restart: {
      policy: 'on-failure',
      backoffMs: 1_000,
      maxBackoffMs: 30_000,
      maxRestarts: 5,
      windowSeconds: 60,
    },
    ...spec,
  };
  if (!ctx.processes.has(ctx.processName)) return ctx.processes.apply(full);
  await ctx.processes.apply(full);
  return ctx.processes.restart(ctx.processName);
}

/** True when the proxy process is running now. */
export function isRunning(ctx: AdapterContext): boolean {
  if (!ctx.processes.has(ctx.processName)) return false;
  const s = ctx.processes.status(ctx.processName);
  return s.state === 'running' && s.pid !== null;
}

/** Throws unless the proxy process is running and has been for `settleMs` (it did not exit at once). */
export async function requireRunning(ctx: AdapterContext, settleMs = 400): Promise<ProcessStatus> {
  await sleep(settleMs);
  if (!ctx.processes.has(ctx.processName)) throw new Error('the proxy process is not defined');
  const s = ctx.processes.status(ctx.processName);
  if (s.state !== 'running' || s.pid === null) {
    throw new Error(
      `the proxy process is ${s.state}${s.exitCode !== null ? ` (exit code ${s.exitCode})` : ''}${
        s.exitSignal ? ` (${s.exitSignal})` : ''
      }`,
    );
  }
  return s;
}

/** The supervisor seen as a ProcessHost (specs are parsed for their defaults). */
export function processHostOf(sup: {
  apply(spec: ProcessSpec): Promise<ProcessStatus>;
  start(name: string): Promise<ProcessStatus>;
  stop(name: string): Promise<ProcessStatus>;
  restart(name: string): Promise<ProcessStatus>;
  remove(name: string): Promise<void>;
  has(name: string): boolean;
  status(name: string): ProcessStatus;
}): ProcessHost {
  return {
    apply: (spec) => sup.apply(processSpecSchema.parse(spec)),
    start: (name) => sup.start(name),
    stop: (name) => sup.stop(name),
    restart: (name) => sup.restart(name),
    remove: (name) => sup.remove(name),
    has: (name) => sup.has(name),
    status: (name) => sup.status(name),
  };
}
