// Share links and subscription profiles for proxy users: pure functions from one endpoint (a
// user's credentials on one node's inbound) to the text clients import. Formats:
//   MTProxy   tg://proxy?server=H&port=P&secret=ee<32 hex><hex(tls domain)>  (and https://t.me/proxy?…)
//   VLESS     vless://<uuid>@H:P?type=…&security=…#name           (the Xray/V2Ray share-link draft)
//   VMess     vmess://<base64 of the v2 JSON: v, ps, add, port, id, aid, net, type, host, path, tls, sni>
//   Trojan    trojan://<password>@H:P?security=tls&sni=…#name
//   SS        ss://<base64url(method:password)>@H:P#name           (SIP002)
// Subscriptions: a base64 list of those links (one a line), a Clash profile (object; the
// controller writes it as YAML) and a sing-box profile (JSON). MTProxy is not in subscriptions:
// the v2ray-family clients that read them do not speak it; its tg:// link is shared on its own.
// No I/O here (runs in Node and the browser).

/** How a stream travels (the v2ray transport and its TLS). */
export interface ProxyTransport {
  network: 'tcp' | 'ws' | 'grpc';
  security: 'none' | 'tls';
  /** TLS server name (SNI). */
  sni?: string;
  /** WebSocket path. */
  path?: string;
  /** WebSocket Host header. */
  host?: string;
  /** gRPC service name. */
  serviceName?: string;
}

interface Base {
  /** What the client shows (user name @ node). */
  name: string;
  /** Host name or address clients dial. */
  server: string;
  port: number;
}

/** One user's credentials on one inbound of one node. */
export type ProxyEndpoint =
  | (Base & { protocol: 'mtproto'; secret: string; tlsDomain?: string })
  | (Base & { protocol: 'vless'; uuid: string; flow?: string; transport?: ProxyTransport })
  | (Base & { protocol: 'vmess'; uuid: string; transport?: ProxyTransport })
  | (Base & { protocol: 'trojan'; password: string; transport?: ProxyTransport })
  | (Base & { protocol: 'shadowsocks'; method: string; password: string });

const HEX32 = /^[0-9a-f]{32}$/;

function utf8Base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Base64 of UTF-8 text (standard alphabet, padded): what subscription bodies use. */
export function base64Text(text: string): string {
  return utf8Base64(text);
}

function base64Url(text: string): string {
  return utf8Base64(text).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

function hostPort(server: string, port: number): string {
  // An IPv6 literal needs brackets in a URL authority.
  return `${server.includes(':') && !server.startsWith('[') ? `[${server}]` : server}:${port}`;
}

function hexOf(text: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(text)) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * The secret a Telegram client is given: `ee` + secret + hex(tls domain) for fake-TLS (what
 * telemt serves when a TLS domain is set), `dd` + secret (padded "secure" mode) without one.
 *
 * @example mtprotoClientSecret('0123…cdef', 'www.google.com') === 'ee0123…cdef7777772e676f6f676c652e636f6d'
 */
export function mtprotoClientSecret(secret: string, tlsDomain?: string): string {
  if (!HEX32.test(secret)) throw new Error('an MTProxy secret is 32 lower-case hex digits');
  return tlsDomain ? `ee${secret}${hexOf(tlsDomain)}` : `dd${secret}`;
}

function mtprotoQuery(e: Extract<ProxyEndpoint, { protocol: 'mtproto' }>): string {
  const q = new URLSearchParams({
    server: e.server,
    port: String(e.port),
    secret: mtprotoClientSecret(e.secret, e.tlsDomain),
  });
  return q.toString();
}

/** `tg://proxy?server=…&port=…&secret=ee…` — opens the Telegram app directly. */
export function tgProxyLink(e: Extract<ProxyEndpoint, { protocol: 'mtproto' }>): string {
  return `tg://proxy?${mtprotoQuery(e)}`;
}

/** `https://t.me/proxy?…` — the same as a web link (works where tg:// is not clickable). */
export function tmeProxyLink(e: Extract<ProxyEndpoint, { protocol: 'mtproto' }>): string {
  return `https://t.me/proxy?${mtprotoQuery(e)}`;
}

function transportQuery(t: ProxyTransport | undefined, q: URLSearchParams): void {
  const tr = t ?? { network: 'tcp', security: 'none' };
  q.set('type', tr.network);
  q.set('security', tr.security);
  if (tr.sni) q.set('sni', tr.sni);
  if (tr.network === 'ws') {
    q.set('path', tr.path ?? '/');
    if (tr.host) q.set('host', tr.host);
  }
  if (tr.network === 'grpc' && tr.serviceName) q.set('serviceName', tr.serviceName);
}

/** The share link of one endpoint (tg:// for MTProxy). */
export function shareLink(e: ProxyEndpoint): string {
  const fragment = `#${encodeURIComponent(e.name)}`;
  switch (e.protocol) {
    case 'mtproto':
      return tgProxyLink(e);
    case 'vless': {
      const q = new URLSearchParams({ encryption: 'none' });
      transportQuery(e.transport, q);
      if (e.flow) q.set('flow', e.flow);
      return `vless://${e.uuid}@${hostPort(e.server, e.port)}?${q.toString()}${fragment}`;
    }
    case 'vmess': {
      const t = e.transport ?? { network: 'tcp', security: 'none' };
      const body = {
        v: '2',
        ps: e.name,
        add: e.server,
        port: String(e.port),
        id: e.uuid,
        aid: '0',
        scy: 'auto',
        net: t.network,
        type: 'none',
        host: t.host ?? '',
        path: t.network === 'grpc' ? (t.serviceName ?? '') : (t.path ?? (t.network === 'ws' ? '/' : '')),
        tls: t.security === 'tls' ? 'tls' : '',
        sni: t.sni ?? '',
      };
      return `vmess://${utf8Base64(JSON.stringify(body))}`;
    }
    case 'trojan': {
      const q = new URLSearchParams();
      transportQuery(e.transport ?? { network: 'tcp', security: 'tls' }, q);
      return `trojan://${encodeURIComponent(e.password)}@${hostPort(e.server, e.port)}?${q.toString()}${fragment}`;
    }
    case 'shadowsocks': {
      // SIP002: userinfo is base64url(method:password) for the classic AEAD ciphers; the 2022
      // ciphers must be percent-encoded instead (their keys are base64 already).
      const userinfo = e.method.startsWith('2022-')
        ? `${encodeURIComponent(e.method)}:${encodeURIComponent(e.password)}`
        : base64Url(`${e.method}:${e.password}`);
      return `ss://${userinfo}@${hostPort(e.server, e.port)}${fragment}`;
    }
  }
}

/** Endpoints a v2ray-family subscription carries (MTProxy is left out: those clients lack it). */
export function subscribable(endpoints: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  return endpoints.filter((e) => e.protocol !== 'mtproto');
}

/** The classic subscription body: base64 of the share links, one a line. */
export function base64Subscription(endpoints: readonly ProxyEndpoint[]): string {
  return utf8Base64(subscribable(endpoints).map(shareLink).join('\n'));
}

/** Clash/Mihomo proxy entries (write the result as YAML). */
export function clashProfile(endpoints: readonly ProxyEndpoint[]): Record<string, unknown> {
  const proxies = subscribable(endpoints).map((e): Record<string, unknown> => {
    const base = { name: e.name, server: e.server, port: e.port, udp: true };
    const tr = (t: ProxyTransport | undefined, defaultTls = false) => {
      const x = t ?? { network: 'tcp' as const, security: defaultTls ? ('tls' as const) : ('none' as const) };
      const out: Record<string, unknown> = { network: x.network, tls: x.security === 'tls' };
      if (x.sni) out.servername = x.sni;
      if (x.network === 'ws')
        out['ws-opts'] = { path: x.path ?? '/', ...(x.host ? { headers: { Host: x.host } } : {}) };
      if (x.network === 'grpc') out['grpc-opts'] = { 'grpc-service-name': x.serviceName ?? '' };
      return out;
    };
    switch (e.protocol) {
      case 'vless':
        return {
          ...base,
          type: 'vless',
          uuid: e.uuid,
          ...(e.flow ? { flow: e.flow } : {}),
          ...tr(e.transport),
        };
      case 'vmess':
        return { ...base, type: 'vmess', uuid: e.uuid, alterId: 0, cipher: 'auto', ...tr(e.transport) };
      case 'trojan': {
        const t = tr(e.transport, true);
        const { servername, tls: _tls, ...rest } = t;
        return {
          ...base,
          type: 'trojan',
          password: e.password,
          ...(servername ? { sni: servername } : {}),
          ...rest,
        };
      }
      case 'shadowsocks':
        return { ...base, type: 'ss', cipher: e.method, password: e.password };
      case 'mtproto':
        throw new Error('unreachable');
    }
  });
  const names = proxies.map((p) => p.name as string);
  return {
    'mixed-port': 7890,
    'allow-lan': false,
    mode: 'rule',
    'log-level': 'info',
    proxies,
    'proxy-groups': [{ name: 'Keel', type: 'select', proxies: names.length > 0 ? names : ['DIRECT'] }],
    rules: ['MATCH,Keel'],
  };
}

/** A sing-box client profile: a mixed inbound on 127.0.0.1:2080 and one outbound per endpoint. */
export function singBoxProfile(endpoints: readonly ProxyEndpoint[]): Record<string, unknown> {
  const tls = (t: ProxyTransport | undefined, server: string, defaultTls = false) => {
    const on = t ? t.security === 'tls' : defaultTls;
    return on ? { tls: { enabled: true, server_name: t?.sni ?? server } } : {};
  };
  const transport = (t: ProxyTransport | undefined) => {
    if (!t || t.network === 'tcp') return {};
    if (t.network === 'ws')
      return {
        transport: { type: 'ws', path: t.path ?? '/', ...(t.host ? { headers: { Host: t.host } } : {}) },
      };
    return { transport: { type: 'grpc', service_name: t.serviceName ?? '' } };
  };
  const outbounds = subscribable(endpoints).map((e): Record<string, unknown> => {
    const base = { tag: e.name, server: e.server, server_port: e.port };
    switch (e.protocol) {
      case 'vless':
        return {
          ...base,
          type: 'vless',
          uuid: e.uuid,
          ...(e.flow ? { flow: e.flow } : {}),
          ...tls(e.transport, e.server),
          ...transport(e.transport),
        };
      case 'vmess':
        return {
          ...base,
          type: 'vmess',
          uuid: e.uuid,
          security: 'auto',
          alter_id: 0,
          ...tls(e.transport, e.server),
          ...transport(e.transport),
        };
      case 'trojan':
        return {
          ...base,
          type: 'trojan',
          password: e.password,
          ...tls(e.transport, e.server, true),
          ...transport(e.transport),
        };
      case 'shadowsocks':
        return { ...base, type: 'shadowsocks', method: e.method, password: e.password };
      case 'mtproto':
        throw new Error('unreachable');
    }
  });
  const tags = outbounds.map((o) => o.tag as string);
  return {
    log: { level: 'warn' },
    inbounds: [{ type: 'mixed', tag: 'mixed-in', listen: '127.0.0.1', listen_port: 2080 }],
    outbounds: [
      { type: 'selector', tag: 'proxy', outbounds: tags.length > 0 ? tags : ['direct'] },
      ...outbounds,
      { type: 'direct', tag: 'direct' },
    ],
    route: { final: 'proxy' },
  };
}

/**
 * The `subscription-userinfo` header clients read (bytes, expire in epoch seconds; 0 = none).
 *
 * @example subscriptionUserinfo({ upload: 1, download: 2, total: 0, expire: null }) === 'upload=1; download=2; total=0; expire=0'
 */
export function subscriptionUserinfo(u: {
  upload: number;
  download: number;
  total: number | null;
  expire: Date | number | null;
}): string {
  const expire = u.expire === null ? 0 : Math.floor(new Date(u.expire).getTime() / 1000);
  return `upload=${Math.max(0, Math.floor(u.upload))}; download=${Math.max(0, Math.floor(u.download))}; total=${u.total ?? 0}; expire=${expire}`;
}
