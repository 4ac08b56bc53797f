// The process create/edit form of the host's Processes tab, as plain data: the fields a spec is
// shown in (`formFromSpec`) and the spec they make (`specFromForm`). An edit starts from the
// existing spec and changes only what the form shows, so fields it does not show (a template's
// files, run-as user, restart backoff, anything newer) survive a save. Also the labels the tab and
// the process page show for a process's state, health check and limits.

/** The spec as the API takes and answers it (shared/src/messages/processes.ts, processSpecSchema). */
export interface SpecLike {
  name: string;
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  restart?: { policy?: 'never' | 'on-failure' | 'always'; [key: string]: unknown };
  stop?: { signal?: StopSignal; stdinLine?: string; graceMs?: number };
  autostart?: boolean;
  health?: HealthSpec;
  limits?: { memoryBytes?: number; cpuPercent?: number };
  [key: string]: unknown;
}

export const STOP_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGKILL',
] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

type Timing = { startTimeoutSeconds?: number };
type Probe = Timing & { intervalMs?: number; timeoutMs?: number; failures?: number };
export type HealthSpec =
  | ({ type: 'tcp'; host?: string; port: number } & Probe)
  | ({ type: 'http'; url: string } & Probe)
  | ({ type: 'output'; match: string; regex?: boolean; stream?: 'stdout' | 'stderr' | 'both' } & Timing);

/** An empty number field binds as null or undefined (or NaN): "not set". */
type Num = number | null | undefined;

export interface ProcessForm {
  isNew: boolean;
  name: string;
  /** One argument per line. */
  argv: string;
  cwd: string;
  /** KEY=value per line. */
  env: string;
  policy: 'never' | 'on-failure' | 'always';
  signal: StopSignal;
  stdinLine: string;
  graceMs: Num;
  autostart: boolean;
  healthType: 'none' | 'tcp' | 'http' | 'output';
  healthHost: string;
  healthPort: Num;
  healthUrl: string;
  healthMatch: string;
  healthRegex: boolean;
  healthStream: 'stdout' | 'stderr' | 'both';
  startTimeoutSeconds: Num;
  intervalMs: Num;
  timeoutMs: Num;
  failures: Num;
  /** Memory limit in MiB (empty: none). */
  memoryMiB: Num;
  /** CPU limit in % of one core (empty: none). */
  cpuPercent: Num;
}

const MIB = 1024 * 1024;
const set = (n: Num): n is number => typeof n === 'number' && Number.isFinite(n);

/** The form for a spec (`null`: a new process with the defaults). */
export function formFromSpec(spec: SpecLike | null): ProcessForm {
  const h = spec?.health;
  const probe = h && h.type !== 'output' ? h : undefined;
  return {
    isNew: spec === null,
    name: spec?.name ?? '',
    argv: (spec?.argv ?? []).join('\n'),
    cwd: spec?.cwd ?? '',
    env: Object.entries(spec?.env ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
    policy: spec?.restart?.policy ?? 'on-failure',
    signal: spec?.stop?.signal ?? 'SIGTERM',
    stdinLine: spec?.stop?.stdinLine ?? '',
    graceMs: spec?.stop?.graceMs ?? 10_000,
    autostart: spec?.autostart ?? true,
    healthType: h?.type ?? 'none',
    healthHost: h?.type === 'tcp' ? (h.host ?? '127.0.0.1') : '127.0.0.1',
    healthPort: h?.type === 'tcp' ? h.port : null,
    healthUrl: h?.type === 'http' ? h.url : '',
    healthMatch: h?.type === 'output' ? h.match : '',
    healthRegex: h?.type === 'output' ? (h.regex ?? false) : false,
    healthStream: h?.type === 'output' ? (h.stream ?? 'both') : 'both',
    startTimeoutSeconds: h?.startTimeoutSeconds ?? null,
    intervalMs: probe?.intervalMs ?? null,
    timeoutMs: probe?.timeoutMs ?? null,
    failures: probe?.failures ?? null,
    memoryMiB: spec?.limits?.memoryBytes !== undefined ? spec.limits.memoryBytes / MIB : null,
    cpuPercent: spec?.limits?.cpuPercent ?? null,
  };
}

/** A message for a form that cannot become a spec (the API validates the rest). */
export class FormError extends Error {}

/**
 * The spec a form makes: `base` (the spec being edited, or null) with the form's fields put over
 * it. Throws FormError for an environment line that is not KEY=value or a health check missing
 * its port, URL or text.
 */
export function specFromForm(f: ProcessForm, base: SpecLike | null): SpecLike {
  const env: Record<string, string> = {};
  for (const line of f.env.split('\n')) {
    if (!line.trim()) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new FormError(`Environment line "${line}" is not KEY=value.`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  const spec: SpecLike = {
    ...(base ?? {}),
    name: f.name.trim(),
    argv: f.argv.split('\n').filter((a) => a !== ''),
    env,
    restart: { ...(base?.restart ?? {}), policy: f.policy },
    stop: { ...(base?.stop ?? {}), signal: f.signal, graceMs: set(f.graceMs) ? f.graceMs : 10_000 },
    autostart: f.autostart,
  };
  if (f.stdinLine) spec.stop = { ...spec.stop, stdinLine: f.stdinLine };
  else delete spec.stop?.stdinLine;
  if (f.cwd.trim()) spec.cwd = f.cwd.trim();
  else delete spec.cwd;

  const health = healthFromForm(f);
  if (health) spec.health = health;
  else delete spec.health;

  const limits = { ...(base?.limits ?? {}) };
  if (set(f.memoryMiB) && f.memoryMiB > 0) limits.memoryBytes = Math.round(f.memoryMiB * MIB);
  else delete limits.memoryBytes;
  if (set(f.cpuPercent) && f.cpuPercent > 0) limits.cpuPercent = Math.round(f.cpuPercent);
  else delete limits.cpuPercent;
  if (limits.memoryBytes !== undefined || limits.cpuPercent !== undefined) spec.limits = limits;
  else delete spec.limits;
  return spec;
}

function healthFromForm(f: ProcessForm): HealthSpec | null {
  const timing: Timing = set(f.startTimeoutSeconds) ? { startTimeoutSeconds: f.startTimeoutSeconds } : {};
  const probe: Probe = {
    ...timing,
    ...(set(f.intervalMs) ? { intervalMs: f.intervalMs } : {}),
    ...(set(f.timeoutMs) ? { timeoutMs: f.timeoutMs } : {}),
    ...(set(f.failures) ? { failures: f.failures } : {}),
  };
  switch (f.healthType) {
    case 'none':
      return null;
    case 'tcp':
      if (!set(f.healthPort)) throw new FormError('The TCP health check needs a port.');
      return { type: 'tcp', host: f.healthHost.trim() || '127.0.0.1', port: f.healthPort, ...probe };
    case 'http':
      if (!f.healthUrl.trim()) throw new FormError('The HTTP health check needs a URL.');
      return { type: 'http', url: f.healthUrl.trim(), ...probe };
    case 'output':
      if (!f.healthMatch) throw new FormError('The output health check needs the text of the line.');
      return {
        type: 'output',
        match: f.healthMatch,
        regex: f.healthRegex,
        stream: f.healthStream,
        ...timing,
      };
  }
}

// ---- labels --------------------------------------------------------------------------------

/** The part of a process's live status the labels read (ProcessStatus without spec and name). */
export interface StatusLike {
  state: string;
  exitCode: number | null;
  exitSignal: string | null;
  health?: {
    status: 'starting' | 'healthy' | 'unhealthy';
    failures: number;
    lastError: string | null;
  } | null;
  limits?: { applied: boolean; message: string | null; oomKills: number | null } | null;
}

/** "running", "exited (1)", "exited (SIGKILL)", "unknown" (no live status). */
export function stateLabel(s: StatusLike | null | undefined): string {
  if (!s) return 'unknown';
  if (s.state === 'exited')
    return s.exitSignal ? `exited (${s.exitSignal})` : `exited (${s.exitCode ?? '?'})`;
  return s.state;
}

/**
 * The fleet Processes page's state: stateLabel's (the exit code, as on a host's Processes tab), or
 * "host offline" when there is no live status because its host is offline.
 */
export function fleetStateLabel(s: StatusLike | null | undefined, hostOnline: boolean): string {
  return s || hostOnline ? stateLabel(s) : 'host offline';
}

/** What the health check says, or null when there is none (or the agent does not report it). */
export function healthLabel(
  spec: SpecLike,
  s: StatusLike | null | undefined,
): { status: 'starting' | 'healthy' | 'unhealthy' | 'unknown'; text: string; error: string | null } | null {
  if (!spec.health) return null;
  const check =
    spec.health.type === 'tcp'
      ? `TCP ${spec.health.host ?? '127.0.0.1'}:${spec.health.port}`
      : spec.health.type === 'http'
        ? `HTTP ${spec.health.url}`
        : `output line “${spec.health.match}”`;
  const h = s?.health;
  if (!h) return { status: 'unknown', text: `not checked (${check})`, error: null };
  return { status: h.status, text: `${h.status} (${check})`, error: h.lastError };
}

/** The limits as set ("256 MiB, 50 % CPU"), whether they hold, and OOM kills; null without limits. */
export function limitsLabel(
  spec: SpecLike,
  s: StatusLike | null | undefined,
): { set: string; applied: boolean | null; message: string | null; oomKills: number } | null {
  const l = spec.limits;
  if (!l || (l.memoryBytes === undefined && l.cpuPercent === undefined)) return null;
  const parts: string[] = [];
  if (l.memoryBytes !== undefined) {
    const mib = l.memoryBytes / MIB;
    parts.push(mib >= 1024 ? `${Number((mib / 1024).toFixed(2))} GiB` : `${Number(mib.toFixed(1))} MiB`);
  }
  if (l.cpuPercent !== undefined) parts.push(`${l.cpuPercent} % CPU`);
  const st = s?.limits;
  return {
    set: parts.join(', '),
    applied: st ? st.applied : null,
    // The agent's reason starts "limits not applied: "; the console already says "not applied".
    message: st?.message?.replace(/^limits not applied:\s*/i, '') || null,
    oomKills: st?.oomKills ?? 0,
  };
}

/** Longest process name (processSpecSchema's name: 1–63 of a–z, 0–9, ".", "_", "-"). */
const NAME_MAX = 63;

/**
 * The name a process made from a template starts with: the template's id made a process name
 * (lower case, anything else a "-"), with "-2", "-3", … where the host already has that name, so
 * the required field is filled and Create works at once; the user may change it.
 *
 * @example defaultProcessName('minecraft-java', ['minecraft-java']) // 'minecraft-java-2'
 */
export function defaultProcessName(templateId: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  const base =
    templateId
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[^a-z0-9]+/, '')
      .replace(/-+$/, '')
      .slice(0, NAME_MAX)
      .replace(/[._-]+$/, '') || 'process';
  if (!used.has(base)) return base;
  for (let n = 2; ; n++) {
    const suffix = `-${n}`;
    const name = `${base.slice(0, NAME_MAX - suffix.length).replace(/[._-]+$/, '')}${suffix}`;
    if (!used.has(name)) return name;
  }
}
