// telemt (MTProxy) adapter: config.toml with [general], [general.modes], [server], [censorship]
// (tls_domain) and the user tables [access.users] (name = 32-hex secret),
// [access.user_max_tcp_conns], [access.user_data_quota], [access.user_expirations] (RFC 3339),
// [access.user_max_unique_ips]; other sections come from the settings' `template` and are kept as
// written. telemt watches its config file and reloads it itself, so a change confined to [access]
// is a hot reload (the file is replaced atomically; no signal, connections stay); anything else
// restarts it. Traffic from its Prometheus endpoint: telemt_user_octets_from_client (up) and
// telemt_user_octets_to_client (down), labelled by user.
//
// telemt has no config test mode we can rely on: validation parses the rendered file with a real
// TOML parser (smol-toml) and checks the documented sections and value types.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeelError, telemtSettingsSchema, type AdapterSettings, type ProxyUserSpec } from '@keel/shared';
import {
  type AdapterContext,
  type Desired,
  type ProxyAdapterDefinition,
  eventually,
  httpGet,
  isRunning,
  reachable,
  requireRunning,
  runProcess,
  waitForPort,
} from './adapter.ts';

type Settings = AdapterSettings<'telemt'>;
type Toml = Record<string, unknown>;
const CONF = 'config.toml';
const USER_TABLES = [
  'users',
  'user_max_tcp_conns',
  'user_data_quota',
  'user_expirations',
  'user_max_unique_ips',
];

async function toml() {
  return import('smol-toml');
}

function table(parent: Toml, key: string): Toml {
  const v = parent[key];
  if (v === undefined) {
    const t: Toml = {};
    parent[key] = t;
    return t;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new KeelError('config.invalid', `template: ${key} must be a table`);
  }
  return v as Toml;
}

/** RFC 3339 without milliseconds, as telemt's examples write it. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The config object: template, then the settings, then the user tables. */
export async function telemtConfig(settings: Settings, users: ProxyUserSpec[]): Promise<Toml> {
  const { parse } = await toml();
  let doc: Toml = {};
  if (settings.template) {
    try {
      doc = parse(settings.template) as Toml;
    } catch (err) {
      throw new KeelError(
        'config.invalid',
        `template is not valid TOML: ${(err as Error).message.slice(0, 500)}`,
      );
    }
  }
  const access = table(doc, 'access');
  for (const key of USER_TABLES) {
    if (access[key] !== undefined) {
      throw new KeelError('config.invalid', `template must not hold [access.${key}]: users come from Keel`);
    }
  }
  const general = table(doc, 'general');
  general.modes = { ...settings.modes };
  const server = table(doc, 'server');
  server.port = settings.port;
  if (settings.listenAddress.includes(':')) server.listen_addr_ipv6 = settings.listenAddress;
  else server.listen_addr_ipv4 = settings.listenAddress;
  server.metrics_port = settings.metricsPort;
  server.metrics_whitelist ??= ['127.0.0.1/32', '::1/128'];
  table(doc, 'censorship').tls_domain = settings.tlsDomain;
  const t = Object.fromEntries(USER_TABLES.map((k) => [k, {} as Toml]));
  for (const u of users) {
    if (!u.secret) continue;
    t.users![u.id] = u.secret;
    if (u.maxTcpConns !== undefined) t.user_max_tcp_conns![u.id] = u.maxTcpConns;
    if (u.dataQuotaBytes !== undefined) t.user_data_quota![u.id] = u.dataQuotaBytes;
    if (u.expiresAt !== undefined) t.user_expirations![u.id] = rfc3339(u.expiresAt);
    if (u.maxUniqueIps !== undefined) t.user_max_unique_ips![u.id] = u.maxUniqueIps;
  }
  Object.assign(access, t);
  return doc;
}

/** Checks a parsed config.toml against telemt's documented format; returns problems. */
export function checkTelemtConfig(doc: Toml): string[] {
  const problems: string[] = [];
  const get = (path: string): unknown =>
    path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Toml)[k] : undefined), doc);
  for (const mode of ['classic', 'secure', 'tls']) {
    if (typeof get(`general.modes.${mode}`) !== 'boolean')
      problems.push(`general.modes.${mode} must be a boolean`);
  }
  const port = get('server.port');
  if (typeof port !== 'number' || port < 1 || port > 65_535) problems.push('server.port must be a port');
  if (typeof get('censorship.tls_domain') !== 'string')
    problems.push('censorship.tls_domain must be a string');
  const users = get('access.users');
  if (!users || typeof users !== 'object') problems.push('[access.users] is missing');
  else {
    for (const [name, secret] of Object.entries(users)) {
      if (typeof secret !== 'string' || !/^[0-9a-f]{32}$/.test(secret))
        problems.push(`access.users.${name} must be 32 hex digits`);
    }
  }
  for (const key of ['user_max_tcp_conns', 'user_data_quota', 'user_max_unique_ips']) {
    for (const [name, v] of Object.entries((get(`access.${key}`) as Toml | undefined) ?? {})) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
        problems.push(`access.${key}.${name} must be a whole number`);
    }
  }
  for (const [name, v] of Object.entries((get('access.user_expirations') as Toml | undefined) ?? {})) {
    if (typeof v !== 'string' || Number.isNaN(Date.parse(v)))
      problems.push(`access.user_expirations.${name} must be an RFC 3339 time`);
  }
  return problems;
}

function withoutAccess(doc: Toml): string {
  const copy = { ...doc };
  delete copy.access;
  return JSON.stringify(copy);
}

/** Per-user counters from telemt's Prometheus text. */
export function parseUserOctets(text: string): Map<string, { up: number; down: number }> {
  const out = new Map<string, { up: number; down: number }>();
  const re = /^telemt_user_octets_(from|to)_client\{([^}]*)\}\s+([0-9.e+]+)/gm;
  for (const m of text.matchAll(re)) {
    const user = /user="((?:[^"\\]|\\.)*)"/.exec(m[2]!)?.[1];
    if (!user) continue;
    const entry = out.get(user) ?? { up: 0, down: 0 };
    if (m[1] === 'from') entry.up = Number(m[3]);
    else entry.down = Number(m[3]);
    out.set(user, entry);
  }
  return out;
}

function metricsUrl(settings: Settings): string {
  return `http://127.0.0.1:${settings.metricsPort}/metrics`;
}

export const telemtAdapter: ProxyAdapterDefinition<Settings> = {
  kind: 'telemt',
  settingsSchema: telemtSettingsSchema,

  async render(settings, users) {
    return [{ name: CONF, content: await renderTelemt(settings, users) }];
  },

  async validate(stagingDir) {
    const { parse } = await toml();
    let doc: Toml;
    try {
      doc = parse(readFileSync(join(stagingDir, CONF), 'utf8')) as Toml;
    } catch (err) {
      throw new KeelError(
        'config.invalid',
        `config.toml does not parse: ${(err as Error).message.slice(0, 500)}`,
      );
    }
    const problems = checkTelemtConfig(doc);
    if (problems.length)
      throw new KeelError('config.invalid', `config.toml: ${problems.slice(0, 10).join('; ')}`);
  },

  async activate(next: Desired<Settings>, previous: Desired<Settings> | null, ctx: AdapterContext) {
    if (isRunning(ctx) && previous) {
      const { parse } = await toml();
      const before = parse(previous.files[0]!.content) as Toml;
      const after = parse(next.files[0]!.content) as Toml;
      // telemt reloads config.toml itself when it changes; the file is already in place.
      if (withoutAccess(before) === withoutAccess(after)) return 'hot-reload';
    }
    await runProcess(ctx, { argv: [ctx.programs.telemt, join(ctx.dir, CONF)] });
    return 'restart';
  },

  async health(next, ctx) {
    await requireRunning(ctx, 300);
    await waitForPort(reachable(next.settings.listenAddress), next.settings.port, 5_000);
    await eventually(async () => {
      const r = await httpGet(metricsUrl(next.settings));
      if (r.status !== 200) throw new Error(`metrics endpoint answered ${r.status}`);
    }, 5_000);
  },

  async traffic(current, ctx) {
    const status = ctx.processes.status(ctx.processName);
    const r = await httpGet(metricsUrl(current.settings), { timeoutMs: 5_000 });
    if (r.status !== 200) throw new KeelError('request.failed', `telemt metrics answered ${r.status}`);
    const counters = parseUserOctets(r.body);
    const users = current.users
      .filter((u) => u.secret)
      .map((u) => ({
        id: u.id,
        upBytes: counters.get(u.id)?.up ?? 0,
        downBytes: counters.get(u.id)?.down ?? 0,
      }));
    return { counterEpoch: `${status.pid ?? 'none'}@${status.startedAt ?? 0}`, users };
  },
};

/** Renders config.toml (async: the TOML module is loaded on first use). */
export async function renderTelemt(settings: Settings, users: ProxyUserSpec[]): Promise<string> {
  const { stringify } = await toml();
  return `# Rendered by Keel. Edits here are reported as drift.\n${stringify(await telemtConfig(settings, users))}\n`;
}
