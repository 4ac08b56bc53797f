// The settings form of a proxy node, per adapter, as plain data: the typed fields each adapter's
// settings are shown in (`formFromSettings`) and the settings they make (`settingsFromForm`), with
// the checks of the adapter's schema (shared/src/messages/configs.ts, adapterSettingsSchemas)
// repeated here so a mistake is named at its field before anything is sent. The controller checks
// again and its 400 names the field the same way (`settings.sites.0.upstream: …`), which
// `fieldOfServerError` maps back onto the form. An edit starts from the stored settings and changes
// only what the form shows, so a field the form does not show survives a save.

export const PROXY_ADAPTERS = ['nginx', 'v2ray', 'shadowsocks', 'telemt'] as const;
export type ProxyAdapterName = (typeof PROXY_ADAPTERS)[number];

export const V2RAY_PROTOCOLS = ['vless', 'vmess', 'trojan', 'shadowsocks'] as const;
export const V2RAY_SS_METHODS = ['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305'] as const;
export const V2RAY_LOG_LEVELS = ['debug', 'info', 'warning', 'error', 'none'] as const;
export const SS_METHODS = [
  'aes-128-gcm',
  'aes-192-gcm',
  'aes-256-gcm',
  'chacha20-ietf-poly1305',
  'xchacha20-ietf-poly1305',
] as const;
export const SS_MODES = ['tcp_only', 'tcp_and_udp'] as const;

/** An empty number field binds as null or undefined (or NaN): "not set". */
type Num = number | null | undefined;
type Extra = Record<string, unknown>;

export interface SiteForm {
  /** Comma- or space-separated. */
  serverNames: string;
  port: Num;
  kind: 'upstream' | 'root';
  upstream: string;
  root: string;
  tls: boolean;
  certificatePath: string;
  keyPath: string;
  /** Fields of the stored site the form does not show. */
  extra: Extra;
}

export interface InboundForm {
  tag: string;
  protocol: (typeof V2RAY_PROTOCOLS)[number];
  port: Num;
  network: 'tcp' | 'ws';
  wsPath: string;
  tls: boolean;
  certificatePath: string;
  keyPath: string;
  method: (typeof V2RAY_SS_METHODS)[number];
  extra: Extra;
}

export interface ProxySettingsForm {
  adapter: ProxyAdapterName;
  listenAddress: string;
  // nginx
  workerProcesses: Num;
  sites: SiteForm[];
  // v2ray
  apiPort: Num;
  logLevel: (typeof V2RAY_LOG_LEVELS)[number];
  inbounds: InboundForm[];
  // shadowsocks-libev
  ssMethod: (typeof SS_METHODS)[number];
  mode: (typeof SS_MODES)[number];
  timeoutSeconds: Num;
  // telemt
  port: Num;
  tlsDomain: string;
  classic: boolean;
  secure: boolean;
  fakeTls: boolean;
  metricsPort: Num;
  /** TOML of other sections, kept as written. */
  template: string;
  /** The stored settings: fields the form does not show are kept from here. */
  base: Extra;
}

/** One problem, by the field's path in the settings (`sites.0.upstream`) — the controller's too. */
export interface FieldError {
  field: string;
  message: string;
}

const str = (v: unknown, d = '') => (typeof v === 'string' ? v : d);
const num = (v: unknown, d: Num = null): Num => (typeof v === 'number' ? v : d);
const obj = (v: unknown): Extra => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Extra) : {});
const pick = <T extends string>(v: unknown, allowed: readonly T[], d: T): T =>
  typeof v === 'string' && (allowed as readonly string[]).includes(v) ? (v as T) : d;
const omit = (o: Extra, keys: string[]) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

/** A new nginx site (proxying to a local port). */
export function newSite(): SiteForm {
  return {
    serverNames: '',
    port: 80,
    kind: 'upstream',
    upstream: 'http://127.0.0.1:8080',
    root: '',
    tls: false,
    certificatePath: '',
    keyPath: '',
    extra: {},
  };
}

/** A new v2ray inbound, tagged so it does not clash with `taken`. */
export function newInbound(taken: readonly string[] = []): InboundForm {
  let n = 1;
  while (taken.includes(n === 1 ? 'vless-in' : `vless-in-${n}`)) n++;
  return {
    tag: n === 1 ? 'vless-in' : `vless-in-${n}`,
    protocol: 'vless',
    port: 443,
    network: 'tcp',
    wsPath: '',
    tls: false,
    certificatePath: '',
    keyPath: '',
    method: 'chacha20-poly1305',
    extra: {},
  };
}

function siteForm(v: unknown): SiteForm {
  const s = obj(v);
  const tls = obj(s.tls);
  return {
    serverNames: Array.isArray(s.serverNames) ? s.serverNames.map(String).join(', ') : '',
    port: num(s.port, 80),
    kind: typeof s.root === 'string' && s.upstream === undefined ? 'root' : 'upstream',
    upstream: str(s.upstream),
    root: str(s.root),
    tls: s.tls !== undefined,
    certificatePath: str(tls.certificatePath),
    keyPath: str(tls.keyPath),
    extra: omit(s, ['serverNames', 'port', 'upstream', 'root', 'tls']),
  };
}

function inboundForm(v: unknown): InboundForm {
  const i = obj(v);
  const tls = obj(i.tls);
  return {
    tag: str(i.tag),
    protocol: pick(i.protocol, V2RAY_PROTOCOLS, 'vless'),
    port: num(i.port),
    network: pick(i.network, ['tcp', 'ws'] as const, 'tcp'),
    wsPath: str(i.wsPath),
    tls: i.tls !== undefined,
    certificatePath: str(tls.certificatePath),
    keyPath: str(tls.keyPath),
    method: pick(i.method, V2RAY_SS_METHODS, 'chacha20-poly1305'),
    extra: omit(i, ['tag', 'protocol', 'port', 'network', 'wsPath', 'tls', 'method']),
  };
}

/** The form for an adapter's settings (`null`: a new node with a starting point). */
export function formFromSettings(adapter: ProxyAdapterName, settings: Extra | null): ProxySettingsForm {
  const s = settings ?? {};
  const modes = obj(s.modes);
  return {
    adapter,
    listenAddress: str(s.listenAddress, '0.0.0.0'),
    workerProcesses: num(s.workerProcesses, 1),
    sites: Array.isArray(s.sites) ? s.sites.map(siteForm) : settings ? [] : [newSite()],
    apiPort: num(s.apiPort, 10_085),
    logLevel: pick(s.logLevel, V2RAY_LOG_LEVELS, 'warning'),
    inbounds: Array.isArray(s.inbounds) ? s.inbounds.map(inboundForm) : settings ? [] : [newInbound()],
    ssMethod: pick(s.method, SS_METHODS, 'chacha20-ietf-poly1305'),
    mode: pick(s.mode, SS_MODES, 'tcp_and_udp'),
    timeoutSeconds: num(s.timeoutSeconds, 300),
    port: num(s.port, 443),
    tlsDomain: str(s.tlsDomain),
    classic: modes.classic === true,
    secure: modes.secure === true,
    fakeTls: modes.tls !== false,
    metricsPort: num(s.metricsPort, 9090),
    template: str(s.template),
    base: s,
  };
}

// The patterns of shared/src/messages/configs.ts.
const LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const DOMAIN = new RegExp(`^(\\*\\.)?(${LABEL}\\.)*${LABEL}$`);
const HOST_PATH = /^\/[A-Za-z0-9._@+/-]*$/;
const UPSTREAM = /^https?:\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}(\/[A-Za-z0-9._~%/-]*)?$/;
const TAG = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const WS_PATH = /^\/[A-Za-z0-9._~/-]*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Whether `s` is an IPv6 address (no brackets, no zone). */
export function isIpv6(s: string): boolean {
  let text = s;
  let groups = 8;
  const v4 = /:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(text);
  if (v4) {
    if (!IPV4.test(v4[1]!)) return false;
    text = text.slice(0, v4.index + 1) + '0';
    groups = 7;
  }
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const parts = halves.map((h) => (h === '' ? [] : h.split(':')));
  if (parts.some((p) => p.some((g) => !/^[0-9A-Fa-f]{1,4}$/.test(g)))) return false;
  const n = parts.reduce((a, p) => a + p.length, 0);
  return halves.length === 2 ? n < groups : n === groups;
}

/** A public address for links: a DNS name, IPv4 or IPv6 (the controller's check). */
export function publicAddressProblem(value: string): string | null {
  const v = value.trim();
  if (v === '') return null;
  if (v.length > 253) return 'At most 253 characters.';
  // All digits and dots is an IPv4 address or nothing (300.1.1.1 is not a name).
  if (/^[\d.]+$/.test(v)) return IPV4.test(v) ? null : 'Not an IPv4 address.';
  if (DOMAIN.test(v) && !v.startsWith('*')) return null;
  if (v.includes(':') && isIpv6(v)) return null;
  return 'A DNS name, an IPv4 or an IPv6 address, without port or brackets.';
}

const isPort = (n: Num): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65_535;

/**
 * The settings a form makes (its fields over the stored settings), or the problems, each at its
 * field. The controller checks again with the adapter's schema.
 */
export function settingsFromForm(f: ProxySettingsForm): { settings: Extra; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const bad = (field: string, message: string) => errors.push({ field, message });
  const port = (field: string, n: Num) => {
    if (!isPort(n)) bad(field, 'A port from 1 to 65535.');
    return n as number;
  };
  const path = (field: string, v: string) => {
    if (!HOST_PATH.test(v)) bad(field, 'An absolute path of letters, digits and . _ @ + - /.');
    else if (v.split('/').includes('..')) bad(field, 'Must not contain "..".');
    return v;
  };
  const listen = f.listenAddress.trim();
  if (!IPV4.test(listen) && !isIpv6(listen)) bad('listenAddress', 'An IPv4 or IPv6 address to listen on.');
  const tlsOf = (prefix: string, on: boolean, cert: string, key: string) =>
    on
      ? {
          tls: {
            certificatePath: path(`${prefix}.tls.certificatePath`, cert.trim()),
            keyPath: path(`${prefix}.tls.keyPath`, key.trim()),
          },
        }
      : {};

  const settings: Extra = { ...f.base, listenAddress: listen };
  if (f.adapter === 'nginx') {
    const w = f.workerProcesses;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 1 || w > 64)
      bad('workerProcesses', 'From 1 to 64.');
    if (f.sites.length === 0) bad('sites', 'At least one site.');
    settings.workerProcesses = w;
    settings.sites = f.sites.map((s, i) => {
      const p = `sites.${i}`;
      const names = s.serverNames.split(/[\s,]+/).filter(Boolean);
      if (names.length === 0) bad(`${p}.serverNames`, 'At least one server name (or _ for any).');
      for (const n of names)
        if (n !== '_' && (n.length > 253 || !DOMAIN.test(n)))
          bad(`${p}.serverNames`, `"${n}" is not a domain name.`);
      const site: Extra = { ...s.extra, serverNames: names, port: port(`${p}.port`, s.port) };
      Object.assign(site, tlsOf(p, s.tls, s.certificatePath, s.keyPath));
      if (s.kind === 'upstream') {
        if (!UPSTREAM.test(s.upstream.trim())) bad(`${p}.upstream`, 'http(s)://host:port[/path].');
        site.upstream = s.upstream.trim();
      } else site.root = path(`${p}.root`, s.root.trim());
      return site;
    });
    for (const k of [
      'inbounds',
      'apiPort',
      'logLevel',
      'method',
      'mode',
      'timeoutSeconds',
      'port',
      'tlsDomain',
    ])
      delete settings[k];
  } else if (f.adapter === 'v2ray') {
    settings.apiPort = port('apiPort', f.apiPort);
    settings.logLevel = f.logLevel;
    if (f.inbounds.length === 0) bad('inbounds', 'At least one inbound.');
    const tags = new Set<string>();
    settings.inbounds = f.inbounds.map((ib, i) => {
      const p = `inbounds.${i}`;
      const tag = ib.tag.trim();
      if (!TAG.test(tag)) bad(`${p}.tag`, 'Lower-case letters, digits, ".", "_" and "-" (at most 64).');
      else if (tags.has(tag)) bad(`${p}.tag`, `The tag "${tag}" is used twice.`);
      tags.add(tag);
      const out: Extra = {
        ...ib.extra,
        tag,
        protocol: ib.protocol,
        port: port(`${p}.port`, ib.port),
        network: ib.network,
      };
      if (ib.network === 'ws') {
        const wp = ib.wsPath.trim() || '/';
        if (!WS_PATH.test(wp) || wp.length > 256) bad(`${p}.wsPath`, 'A path starting with /.');
        out.wsPath = wp;
      }
      Object.assign(out, tlsOf(p, ib.tls, ib.certificatePath, ib.keyPath));
      if (ib.protocol === 'shadowsocks') out.method = ib.method;
      return out;
    });
    const ports = f.inbounds.map((ib) => ib.port);
    if (ports.includes(f.apiPort)) bad('apiPort', 'The API port is also an inbound port.');
    for (const k of ['sites', 'workerProcesses', 'method', 'mode', 'timeoutSeconds', 'port', 'tlsDomain'])
      delete settings[k];
  } else if (f.adapter === 'shadowsocks') {
    settings.method = f.ssMethod;
    settings.mode = f.mode;
    const t = f.timeoutSeconds;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 10 || t > 3600)
      bad('timeoutSeconds', 'From 10 to 3600 seconds.');
    settings.timeoutSeconds = t;
    for (const k of ['sites', 'workerProcesses', 'inbounds', 'apiPort', 'logLevel', 'port', 'tlsDomain'])
      delete settings[k];
  } else {
    settings.port = port('port', f.port);
    settings.metricsPort = port('metricsPort', f.metricsPort);
    if (f.port === f.metricsPort) bad('metricsPort', 'The metrics port is also the proxy port.');
    const domain = f.tlsDomain.trim();
    if (!DOMAIN.test(domain) || domain.startsWith('*'))
      bad('tlsDomain', 'The domain whose TLS fake-TLS clients mimic (e.g. www.example.com).');
    settings.tlsDomain = domain;
    if (!f.classic && !f.secure && !f.fakeTls) bad('modes', 'At least one mode.');
    settings.modes = { classic: f.classic, secure: f.secure, tls: f.fakeTls };
    if (f.template.trim()) {
      if (/^\s*\[\s*access\b/m.test(f.template))
        bad('template', 'User tables ([access.*]) come from the proxy users, not the template.');
      if (f.template.length > 65_536) bad('template', 'At most 64 KiB.');
      settings.template = f.template;
    } else delete settings.template;
    for (const k of [
      'sites',
      'workerProcesses',
      'inbounds',
      'apiPort',
      'logLevel',
      'method',
      'mode',
      'timeoutSeconds',
    ])
      delete settings[k];
  }
  return { settings, errors };
}

/**
 * The form field a controller error names (`settings.sites.0.upstream: …` -> `sites.0.upstream`),
 * or null. The longest path the form knows wins.
 */
export function fieldOfServerError(message: string, known: readonly string[]): string | null {
  const m = /^settings\.([A-Za-z0-9_.]+)/.exec(message);
  if (!m) return null;
  const parts = m[1]!.split('.');
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join('.');
    if (known.includes(candidate)) return candidate;
  }
  return null;
}

/** Every field path a form shows (for mapping the controller's errors). */
export function fieldsOf(f: ProxySettingsForm): string[] {
  const out = ['listenAddress'];
  if (f.adapter === 'nginx') {
    out.push('workerProcesses', 'sites');
    f.sites.forEach((_, i) =>
      ['serverNames', 'port', 'upstream', 'root', 'tls.certificatePath', 'tls.keyPath'].forEach((k) =>
        out.push(`sites.${i}.${k}`),
      ),
    );
  } else if (f.adapter === 'v2ray') {
    out.push('apiPort', 'logLevel', 'inbounds');
    f.inbounds.forEach((_, i) =>
      [
        'tag',
        'protocol',
        'port',
        'network',
        'wsPath',
        'method',
        'tls.certificatePath',
        'tls.keyPath',
      ].forEach((k) => out.push(`inbounds.${i}.${k}`)),
    );
  } else if (f.adapter === 'shadowsocks') out.push('method', 'mode', 'timeoutSeconds');
  else out.push('port', 'metricsPort', 'tlsDomain', 'modes', 'template');
  return out;
}
