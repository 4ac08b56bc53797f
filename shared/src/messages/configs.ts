// Proxy configs: the `config.*` requests a controller sends an agent to render, validate, apply,
// health-check and (by itself) roll back a proxy's configuration, the proxy user spec every adapter
// renders, and the settings schema of each adapter (nginx, v2ray, shadowsocks-libev, telemt).
//
// An *instance* is one proxy on one host, named like a process (`edge`, `vpn-1`). Every push
// carries a generation number that only goes up; the agent refuses one that is not newer than the
// generation it applied (`config.stale_generation`). See docs/proxies.md.
import { z } from 'zod';
import { defineRequest, lazySchema } from '../definitions.ts';
import { storableText } from './facts.ts';
import { PROCESS_NAME_PATTERN } from './processes.ts';

/** The proxy kinds an agent has an adapter for (one file each in `agent/src/configs/`). */
export const proxyAdapters = ['nginx', 'v2ray', 'shadowsocks', 'telemt'] as const;
export type ProxyAdapter = (typeof proxyAdapters)[number];
export const proxyAdapterSchema = lazySchema(() => z.enum(proxyAdapters));

/** An instance name: one proxy on one host, same pattern as a process name. */
export const proxyInstanceSchema = lazySchema(() =>
  z
    .string()
    .regex(
      PROCESS_NAME_PATTERN,
      'at most 63 lower-case letters, digits, ".", "_" and "-", starting alphanumeric',
    ),
);

/** A proxy user's id: stable, the telemt [access.users] key and the v2ray client email. */
export const PROXY_USER_ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const proxyUserIdSchema = lazySchema(() =>
  z
    .string()
    .regex(
      PROXY_USER_ID_PATTERN,
      'at most 64 lower-case letters, digits, ".", "_" and "-", starting alphanumeric',
    ),
);

/** An inbound tag (v2ray inbound names; a user may be limited to some). */
export const inboundTagSchema = lazySchema(() =>
  z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, 'at most 64 lower-case letters, digits, ".", "_" and "-"'),
);

const port = lazySchema(() => z.number().int().min(1).max(65_535));
const count = lazySchema(() => z.number().int().min(0).max(1_000_000_000));

/** What an adapter renders for one user. Which secret a protocol uses: see docs/proxies.md. */
export const proxyUserSpecSchema = lazySchema(() =>
  z.strictObject({
    id: proxyUserIdSchema,
    /** MTProxy (telemt) secret: 32 lower-case hex. */
    secret: z
      .string()
      .regex(/^[0-9a-f]{32}$/, '32 lower-case hex digits')
      .optional(),
    /** VLESS / VMess client id. */
    uuid: z
      .string()
      .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'a UUID')
      .optional(),
    /** Trojan / Shadowsocks password. */
    password: z
      .string()
      .min(8)
      .max(128)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional(),
    /** Inbound tags the user is on (v2ray); all inbounds when absent. */
    inbounds: z.array(inboundTagSchema).max(64).optional(),
    /** The user's own port, for a proxy that serves one user per port (shadowsocks-libev). */
    port: port.optional(),
    maxTcpConns: count.optional(),
    maxUniqueIps: count.optional(),
    dataQuotaBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Epoch ms. */
    expiresAt: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  }),
);
export type ProxyUserSpec = z.output<typeof proxyUserSpecSchema>;

/** At most this many users in one push. */
export const MAX_PUSH_USERS = 100_000;
const userListSchema = lazySchema(() => z.array(proxyUserSpecSchema).max(MAX_PUSH_USERS));
/** Lists validated by `checkedUserList` (frozen, so still valid). */
const checkedLists = new WeakSet<object>();

/**
 * Validates a user list once and freezes it, so the same list pushed to 20 nodes is not validated
 * 20 times (10,000 users take 25 ms to validate on an idle core, 200-800 ms on a loaded one).
 * Throws the schema's error (a ZodError) when invalid.
 *
 * @example const users = checkedUserList(specs); // then in every node's config.apply params
 */
export function checkedUserList(list: readonly ProxyUserSpec[]): readonly ProxyUserSpec[] {
  if (checkedLists.has(list)) return list;
  const parsed = userListSchema.parse(list);
  for (const u of parsed) {
    if (u.inbounds) Object.freeze(u.inbounds);
    Object.freeze(u);
  }
  Object.freeze(parsed);
  checkedLists.add(parsed);
  return parsed;
}

/** A push's users: a list from `checkedUserList` passes at once, any other is validated in full. */
const pushUsersSchema = lazySchema(() =>
  z
    .custom<ProxyUserSpec[]>((v) => Array.isArray(v), 'an array of users')
    .superRefine((v, ctx) => {
      if (checkedLists.has(v)) return;
      const r = userListSchema.safeParse(v);
      if (!r.success) for (const issue of r.error.issues) ctx.addIssue({ ...issue } as never);
    }),
);

// ---- settings of each adapter ----------------------------------------------------------------

/**
 * An absolute host path a proxy reads (certificate, key, static root). Restricted to characters
 * that cannot break out of a config file's quoting: no quotes, spaces, `;`, `{`, `}`, `$`, `..`.
 */
export const hostPathSchema = lazySchema(() =>
  z
    .string()
    .max(1024)
    .regex(/^\/[A-Za-z0-9._@+/-]*$/, 'an absolute path of letters, digits and . _ @ + - /')
    .refine((s) => !s.split('/').includes('..'), 'must not contain ".."'),
);

/** A DNS name (or `_` / a wildcard like `*.example.com`, for nginx server names). */
export const domainSchema = lazySchema(() =>
  z
    .string()
    .max(253)
    .regex(
      /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/,
      'a domain name',
    ),
);

/**
 * A proxy node's public address: the DNS name, IPv4 or IPv6 address that share links and
 * subscriptions point users at (not the agent's connect address). No port, no brackets.
 */
export const proxyPublicAddressSchema = lazySchema(() =>
  z
    .string()
    .min(1)
    .max(253)
    .refine(
      (s) =>
        (!/^[\d.]+$/.test(s) &&
          /^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(
            s,
          )) ||
        /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s) ||
        (/^[0-9A-Fa-f:.]+$/.test(s) && s.includes(':') && isIpv6(s)),
      'a DNS name, an IPv4 or an IPv6 address (no port, no brackets)',
    ),
);

/** Whether `s` is an IPv6 address (textual forms of RFC 4291 §2.2, IPv4 tail allowed). */
function isIpv6(s: string): boolean {
  let text = s;
  let groups = 8;
  const v4 = /:((\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}))$/.exec(text);
  if (v4) {
    if (v4.slice(2).some((o) => Number(o) > 255)) return false;
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

/** An IPv4 or IPv6 listen address. */
export const listenAddressSchema = lazySchema(() => z.union([z.ipv4(), z.ipv6()]));

const tlsSchema = lazySchema(() =>
  z.strictObject({
    certificatePath: hostPathSchema,
    keyPath: hostPathSchema,
  }),
);

/** One nginx site: server names -> an upstream (http://host:port) or a static root. */
export const nginxSiteSchema = lazySchema(() =>
  z
    .strictObject({
      serverNames: z
        .array(z.union([domainSchema, z.literal('_')]))
        .min(1)
        .max(32),
      port: port.default(80),
      tls: tlsSchema.optional(),
      /** `http://127.0.0.1:8080` or `https://backend.internal:8443/prefix`. */
      upstream: z
        .string()
        .max(512)
        .regex(
          /^https?:\/\/([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}(\/[A-Za-z0-9._~%/-]*)?$/,
          'http(s)://host:port[/path]',
        )
        .optional(),
      /** A directory of static files. */
      root: hostPathSchema.optional(),
    })
    .refine((s) => (s.upstream === undefined) !== (s.root === undefined), {
      message: 'a site has exactly one of upstream and root',
    }),
);

export const nginxSettingsSchema = lazySchema(() =>
  z.strictObject({
    listenAddress: listenAddressSchema.default('0.0.0.0'),
    workerProcesses: z.number().int().min(1).max(64).default(1),
    sites: z.array(nginxSiteSchema).min(1).max(500),
  }),
);

/** One v2ray inbound. */
export const v2rayInboundSchema = lazySchema(() =>
  z.strictObject({
    tag: inboundTagSchema,
    protocol: z.enum(['vless', 'vmess', 'trojan', 'shadowsocks']),
    port,
    network: z.enum(['tcp', 'ws']).default('tcp'),
    /** WebSocket path when network is `ws`. */
    wsPath: z
      .string()
      .max(256)
      .regex(/^\/[A-Za-z0-9._~/-]*$/)
      .optional(),
    tls: tlsSchema.optional(),
    /** Shadowsocks inbounds: the cipher. v2ray 4.34 serves one password per Shadowsocks inbound. */
    method: z.enum(['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305']).default('chacha20-poly1305'),
  }),
);

export const v2raySettingsSchema = lazySchema(() =>
  z
    .strictObject({
      listenAddress: listenAddressSchema.default('0.0.0.0'),
      /** Loopback port of v2ray's gRPC API (HandlerService, StatsService); never exposed. */
      apiPort: port.default(10_085),
      logLevel: z.enum(['debug', 'info', 'warning', 'error', 'none']).default('warning'),
      inbounds: z.array(v2rayInboundSchema).min(1).max(64),
    })
    .refine((s) => new Set(s.inbounds.map((i) => i.tag)).size === s.inbounds.length, {
      message: 'inbound tags must be unique',
    }),
);

/** shadowsocks-libev: one user per port (each user carries its `port`). */
export const shadowsocksSettingsSchema = lazySchema(() =>
  z.strictObject({
    listenAddress: listenAddressSchema.default('0.0.0.0'),
    method: z
      .enum([
        'aes-128-gcm',
        'aes-192-gcm',
        'aes-256-gcm',
        'chacha20-ietf-poly1305',
        'xchacha20-ietf-poly1305',
      ])
      .default('chacha20-ietf-poly1305'),
    mode: z.enum(['tcp_only', 'tcp_and_udp']).default('tcp_and_udp'),
    timeoutSeconds: z.number().int().min(10).max(3600).default(300),
  }),
);

/** telemt (MTProxy): config.toml. `template` holds extra non-user sections, kept as written. */
export const telemtSettingsSchema = lazySchema(() =>
  z.strictObject({
    port: port.default(443),
    listenAddress: listenAddressSchema.default('0.0.0.0'),
    tlsDomain: domainSchema,
    modes: z
      .strictObject({
        classic: z.boolean().default(false),
        secure: z.boolean().default(false),
        tls: z.boolean().default(true),
      })
      .default({ classic: false, secure: false, tls: true }),
    /** Prometheus endpoint, read by the agent for per-user traffic (loopback). */
    metricsPort: port.default(9090),
    /** TOML text of other sections (e.g. [timeouts], [network]); [access.*] user tables are refused. */
    template: storableText(65_536).optional(),
  }),
);

/** Each adapter's settings schema, for the controller to validate a push and the console to build forms. */
export const adapterSettingsSchemas = {
  nginx: nginxSettingsSchema,
  v2ray: v2raySettingsSchema,
  shadowsocks: shadowsocksSettingsSchema,
  telemt: telemtSettingsSchema,
} as const satisfies Record<ProxyAdapter, z.ZodType>;
export type AdapterSettings<A extends ProxyAdapter> = z.output<(typeof adapterSettingsSchemas)[A]>;

// ---- requests ----------------------------------------------------------------------------------

/** One rendered file of an instance: absolute path on the host and the SHA-256 of its content. */
export const configFileSchema = lazySchema(() =>
  z.strictObject({
    path: storableText(4096),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
);
/** A rendered file with its content (for the controller to store and diff). */
export const configFileContentSchema = lazySchema(() =>
  configFileSchema.extend({
    content: storableText(16 * 1024 * 1024),
  }),
);

/** How a change reached the running proxy, from what keeps connections to what drops them. */
export const applyMethods = ['unchanged', 'api', 'hot-reload', 'reload', 'restart'] as const;

/** Render, validate, write, reload, health-check; roll back by itself on any failure. */
export const configApplyRequest = defineRequest('config.apply', {
  params: lazySchema(() =>
    z.strictObject({
      instance: proxyInstanceSchema,
      adapter: proxyAdapterSchema,
      generation: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
      /** Validated by the agent against `adapterSettingsSchemas[adapter]`. */
      settings: z.record(z.string(), z.unknown()),
      users: pushUsersSchema,
      reason: storableText(500).optional(),
    }),
  ),
  result: lazySchema(() =>
    z.strictObject({
      instance: proxyInstanceSchema,
      generation: z.number().int().min(1),
      method: z.enum(applyMethods),
      files: z.array(configFileContentSchema).max(64),
      appliedAt: z.number().int().nonnegative(),
    }),
  ),
  timeoutMs: 90_000,
});

/** A file changed on the host since it was applied. */
export const configDriftSchema = lazySchema(() =>
  z.strictObject({
    path: storableText(4096),
    /** Unified diff applied -> on disk, trimmed. */
    diff: storableText(65_536),
  }),
);

/** Every instance on the host: applied generation, files, drift. */
export const configStatusRequest = defineRequest('config.status', {
  params: lazySchema(() => z.strictObject({})),
  result: lazySchema(() =>
    z.strictObject({
      instances: z
        .array(
          z.strictObject({
            instance: proxyInstanceSchema,
            adapter: proxyAdapterSchema,
            generation: z.number().int().min(1),
            appliedAt: z.number().int().nonnegative(),
            files: z.array(configFileSchema).max(64),
            drift: z.array(configDriftSchema).max(64),
          }),
        )
        .max(1_000),
    }),
  ),
  timeoutMs: 15_000,
});

/**
 * Resolves drift: `adopt` keeps the host's edit as the applied content (the files come back with
 * content so the controller stores a generation made "by host edit"); `overwrite` writes the
 * applied generation back (and reloads).
 */
export const configDriftResolveRequest = defineRequest('config.drift.resolve', {
  params: lazySchema(() =>
    z.strictObject({ instance: proxyInstanceSchema, action: z.enum(['adopt', 'overwrite']) }),
  ),
  result: lazySchema(() =>
    z.strictObject({
      instance: proxyInstanceSchema,
      generation: z.number().int().min(1),
      action: z.enum(['adopt', 'overwrite']),
      files: z.array(configFileContentSchema).max(64),
    }),
  ),
  timeoutMs: 60_000,
});

/** Per-user traffic counters, cumulative since `counterEpoch` (changes when the proxy's counters restart). */
export const configTrafficRequest = defineRequest('config.traffic', {
  params: lazySchema(() => z.strictObject({ instance: proxyInstanceSchema })),
  result: lazySchema(() =>
    z.strictObject({
      instance: proxyInstanceSchema,
      counterEpoch: storableText(200),
      users: z
        .array(
          z.strictObject({
            id: proxyUserIdSchema,
            upBytes: z.number().int().nonnegative(),
            downBytes: z.number().int().nonnegative(),
          }),
        )
        .max(100_000),
    }),
  ),
  timeoutMs: 30_000,
});

/**
 * The event an agent sends on the `events` stream when an applied file is edited on the host.
 * Like every event record it is `{ kind, ...fields }` (the contract's `type` is this `kind`).
 */
export const configDriftEventSchema = lazySchema(() =>
  z.strictObject({
    kind: z.literal('config.drift'),
    instance: proxyInstanceSchema,
    path: storableText(4096),
    diff: storableText(65_536),
  }),
);
export type ConfigDriftEvent = z.infer<typeof configDriftEventSchema>;

/** The config requests, by name (spread into the catalogue). */
export const configRequests = {
  [configApplyRequest.name]: configApplyRequest,
  [configStatusRequest.name]: configStatusRequest,
  [configDriftResolveRequest.name]: configDriftResolveRequest,
  [configTrafficRequest.name]: configTrafficRequest,
} as const;
