// v2ray adapter (Debian's v2ray 4.34): one config.json with VLESS, VMess, Trojan and Shadowsocks
// inbounds and per-user clients, plus a loopback API inbound (HandlerService, StatsService).
// Validated with `v2ray -test -config`. A change that only adds, removes or changes users is made
// through the API (HandlerService.AlterInbound Add/RemoveUserOperation) without a restart, so open
// connections stay up; any other change restarts v2ray. Per-user traffic from StatsService
// (`user>>>ID>>>traffic>>>uplink|downlink`; the user id is the client's email).
//
// v2ray 4.34's Shadowsocks inbound holds a single password: the inbound takes the one user with a
// password assigned to it (more than one is refused; none leaves the inbound out). Use the
// shadowsocks adapter for many Shadowsocks users.
import { join } from 'node:path';
import { KeelError, v2raySettingsSchema, type AdapterSettings, type ProxyUserSpec } from '@keel/shared';
import {
  type AdapterContext,
  type Desired,
  type ProxyAdapterDefinition,
  eventually,
  isRunning,
  reachable,
  requireRunning,
  runCheck,
  runProcess,
  waitForPort,
} from './adapter.ts';
import { grpcUnary, openGrpc, pb, readFields, typed, type GrpcConnection, type PbField } from './grpc.ts';

type Settings = AdapterSettings<'v2ray'>;
type Inbound = Settings['inbounds'][number];
const CONF = 'config.json';
const API_TAG = 'keel-api';

/** The JSON client entry of a user on an inbound, or null when the user lacks that protocol's secret. */
function client(inbound: Inbound, u: ProxyUserSpec): Record<string, unknown> | null {
  switch (inbound.protocol) {
    case 'vless':
      return u.uuid ? { id: u.uuid, email: u.id, level: 0 } : null;
    case 'vmess':
      return u.uuid ? { id: u.uuid, alterId: 0, email: u.id, level: 0 } : null;
    case 'trojan':
      return u.password ? { password: u.password, email: u.id, level: 0 } : null;
    case 'shadowsocks':
      return u.password ? { password: u.password, email: u.id, level: 0 } : null;
  }
}

function usersOf(
  inbound: Inbound,
  users: ProxyUserSpec[],
): { user: ProxyUserSpec; client: Record<string, unknown> }[] {
  const out = [];
  for (const u of users) {
    if (u.inbounds && !u.inbounds.includes(inbound.tag)) continue;
    const c = client(inbound, u);
    if (c) out.push({ user: u, client: c });
  }
  return out;
}

/** The config object (clients included). */
export function v2rayConfig(settings: Settings, users: ProxyUserSpec[]): Record<string, unknown> {
  const inbounds: Record<string, unknown>[] = [
    {
      tag: API_TAG,
      listen: '127.0.0.1',
      port: settings.apiPort,
      protocol: 'dokodemo-door',
      settings: { address: '127.0.0.1' },
    },
  ];
  for (const ib of settings.inbounds) {
    const assigned = usersOf(ib, users);
    let proto: Record<string, unknown>;
    if (ib.protocol === 'shadowsocks') {
      if (assigned.length > 1) {
        throw new KeelError(
          'config.invalid',
          `inbound ${ib.tag}: v2ray's Shadowsocks inbound serves one password; ${assigned.length} users are assigned`,
        );
      }
      if (assigned.length === 0) continue;
      proto = { method: ib.method, ...assigned[0]!.client, network: 'tcp,udp' };
    } else if (ib.protocol === 'vless') {
      proto = { clients: assigned.map((a) => a.client), decryption: 'none' };
    } else {
      proto = { clients: assigned.map((a) => a.client) };
    }
    const stream: Record<string, unknown> = { network: ib.network };
    if (ib.network === 'ws') stream.wsSettings = { path: ib.wsPath ?? '/' };
    if (ib.tls) {
      stream.security = 'tls';
      stream.tlsSettings = {
        certificates: [{ certificateFile: ib.tls.certificatePath, keyFile: ib.tls.keyPath }],
      };
    }
    inbounds.push({
      tag: ib.tag,
      listen: settings.listenAddress,
      port: ib.port,
      protocol: ib.protocol,
      settings: proto,
      streamSettings: stream,
    });
  }
  return {
    log: { loglevel: settings.logLevel, access: 'none' },
    api: { tag: API_TAG, services: ['HandlerService', 'StatsService'] },
    stats: {},
    policy: {
      levels: { '0': { statsUserUplink: true, statsUserDownlink: true } },
      system: { statsInboundUplink: false, statsInboundDownlink: false },
    },
    inbounds,
    outbounds: [
      { tag: 'direct', protocol: 'freedom', settings: {} },
      { tag: 'blocked', protocol: 'blackhole', settings: {} },
    ],
    routing: { rules: [{ type: 'field', inboundTag: [API_TAG], outboundTag: API_TAG }] },
  };
}

/** The config with the clients of user-managed inbounds taken out: equal means only users changed. */
function structure(config: Record<string, unknown>): string {
  const copy = JSON.parse(JSON.stringify(config)) as {
    inbounds: { protocol: string; settings: Record<string, unknown> }[];
  };
  for (const ib of copy.inbounds) {
    if (ib.protocol === 'vless' || ib.protocol === 'vmess' || ib.protocol === 'trojan')
      delete ib.settings.clients;
  }
  return JSON.stringify(copy);
}

/** Clients by email of each API-managed inbound. */
function clientsByInbound(
  config: Record<string, unknown>,
): Map<string, { protocol: string; clients: Map<string, Record<string, unknown>> }> {
  const out = new Map<string, { protocol: string; clients: Map<string, Record<string, unknown>> }>();
  for (const ib of (
    config as {
      inbounds: { tag: string; protocol: string; settings: { clients?: Record<string, unknown>[] } }[];
    }
  ).inbounds) {
    if (!ib.settings.clients) continue;
    out.set(ib.tag, {
      protocol: ib.protocol,
      clients: new Map(ib.settings.clients.map((c) => [String(c.email), c])),
    });
  }
  return out;
}

const HANDLER = '/v2ray.core.app.proxyman.command.HandlerService/AlterInbound';
const STATS = '/v2ray.core.app.stats.command.StatsService/QueryStats';

function account(protocol: string, c: Record<string, unknown>): PbField[] {
  switch (protocol) {
    case 'vless':
      return typed('v2ray.core.proxy.vless.Account', pb([[1, String(c.id)]]));
    case 'vmess':
      return typed('v2ray.core.proxy.vmess.Account', pb([[1, String(c.id)]]));
    default:
      return typed('v2ray.core.proxy.trojan.Account', pb([[1, String(c.password)]]));
  }
}

async function alter(api: GrpcConnection, tag: string, operation: PbField[]): Promise<void> {
  await api.unary(
    HANDLER,
    pb([
      [1, tag],
      [2, operation],
    ]),
  );
}

async function addUser(
  api: GrpcConnection,
  tag: string,
  protocol: string,
  c: Record<string, unknown>,
): Promise<void> {
  const user: PbField[] = [
    [1, 0],
    [2, String(c.email)],
    [3, account(protocol, c)],
  ];
  await alter(api, tag, typed('v2ray.core.app.proxyman.command.AddUserOperation', pb([[1, user]])));
}

async function removeUser(api: GrpcConnection, tag: string, email: string): Promise<void> {
  await alter(api, tag, typed('v2ray.core.app.proxyman.command.RemoveUserOperation', pb([[1, email]])));
}

/** Stats by name matching `pattern` (StatsService.QueryStats, not reset). */
export async function queryStats(port: number, pattern: string): Promise<Map<string, number>> {
  const res = await grpcUnary('127.0.0.1', port, STATS, pb([[1, pattern]]));
  const out = new Map<string, number>();
  for (const stat of readFields(res).get(1) ?? []) {
    const f = readFields(stat as Buffer);
    const name = (f.get(1)?.[0] as Buffer | undefined)?.toString('utf8');
    const value = f.get(2)?.[0] as bigint | undefined;
    if (name) out.set(name, Number(value ?? 0n));
  }
  return out;
}

function spec(ctx: AdapterContext) {
  return {
    argv: [ctx.programs.v2ray, '-config', join(ctx.dir, CONF)],
    env: { V2RAY_LOCATION_ASSET: '/usr/share/v2ray' },
  };
}

export const v2rayAdapter: ProxyAdapterDefinition<Settings> = {
  kind: 'v2ray',
  settingsSchema: v2raySettingsSchema,

  render(settings, users) {
    return [{ name: CONF, content: `${JSON.stringify(v2rayConfig(settings, users), null, 2)}\n` }];
  },

  async validate(stagingDir, next, ctx, previous) {
    // `v2ray -test` costs ~2 ms per client (23 s for 10,000 users on 3 inbounds, bench/proxies-render.ts).
    // When only clients changed, the rest of the file is the one v2ray already accepted and each
    // client entry is built from schema-checked fields (UUID, printable password, id as email).
    if (
      previous &&
      structure(v2rayConfig(previous.settings, previous.users)) ===
        structure(v2rayConfig(next.settings, next.users))
    ) {
      return;
    }
    await runCheck([ctx.programs.v2ray, '-test', '-config', join(stagingDir, CONF)], 120_000);
  },

  async activate(next: Desired<Settings>, previous: Desired<Settings> | null, ctx) {
    if (!isRunning(ctx)) {
      await runProcess(ctx, spec(ctx));
      return 'restart';
    }
    if (previous) {
      const before = v2rayConfig(previous.settings, previous.users);
      const after = v2rayConfig(next.settings, next.users);
      if (structure(before) === structure(after)) {
        const api = openGrpc('127.0.0.1', next.settings.apiPort);
        try {
          const was = clientsByInbound(before);
          let changes = 0;
          for (const [tag, ib] of clientsByInbound(after)) {
            const old = was.get(tag)?.clients ?? new Map<string, Record<string, unknown>>();
            for (const [email, c] of old) {
              const now = ib.clients.get(email);
              if (!now || JSON.stringify(now) !== JSON.stringify(c)) {
                await removeUser(api, tag, email);
                changes++;
              }
            }
            for (const [email, c] of ib.clients) {
              const then = old.get(email);
              if (!then || JSON.stringify(then) !== JSON.stringify(c)) {
                await addUser(api, tag, ib.protocol, c);
                changes++;
              }
            }
          }
          return changes > 0 ? 'api' : 'unchanged';
        } catch (err) {
          ctx.log.warn({ err }, 'v2ray API update failed; restarting v2ray on the new file instead');
        } finally {
          api.close();
        }
      }
    }
    await runProcess(ctx, spec(ctx));
    return 'restart';
  },

  async health(next, ctx) {
    await requireRunning(ctx, 500);
    // v2ray parses its clients at start about as slowly as -test does: allow for it.
    const clients = next.users.length * next.settings.inbounds.length;
    await eventually(
      () => queryStats(next.settings.apiPort, 'user>>>').then(() => {}),
      Math.min(75_000, 5_000 + clients * 2.5),
    );
    await requireRunning(ctx, 0);
    const host = reachable(next.settings.listenAddress);
    const config = v2rayConfig(next.settings, next.users) as { inbounds: { tag: string; port: number }[] };
    for (const ib of config.inbounds) if (ib.tag !== API_TAG) await waitForPort(host, ib.port, 3_000);
    // The API answering proves v2ray itself owns the ports it bound; it exits when one is taken.
    await requireRunning(ctx, 0);
  },

  async traffic(current, ctx) {
    const status = ctx.processes.status(ctx.processName);
    const stats = await queryStats(current.settings.apiPort, 'user>>>');
    const users = current.users.map((u) => ({
      id: u.id,
      upBytes: stats.get(`user>>>${u.id}>>>traffic>>>uplink`) ?? 0,
      downBytes: stats.get(`user>>>${u.id}>>>traffic>>>downlink`) ?? 0,
    }));
    return { counterEpoch: `${status.pid ?? 'none'}@${status.startedAt ?? 0}`, users };
  },
};
