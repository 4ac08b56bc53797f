// The adapters by proxy kind: adding a kind is its file plus one line here (and its settings
// schema in shared/src/messages/configs.ts).
import type { ProxyAdapter } from '@keel/shared';
import type { ProxyAdapterDefinition } from './adapter.ts';
import { nginxAdapter } from './nginx.ts';
import { v2rayAdapter } from './v2ray.ts';
import { shadowsocksAdapter } from './shadowsocks.ts';
import { telemtAdapter } from './telemt.ts';

const adapters: Record<ProxyAdapter, ProxyAdapterDefinition<never>> = {
  nginx: nginxAdapter as ProxyAdapterDefinition<never>,
  v2ray: v2rayAdapter as ProxyAdapterDefinition<never>,
  shadowsocks: shadowsocksAdapter as ProxyAdapterDefinition<never>,
  telemt: telemtAdapter as ProxyAdapterDefinition<never>,
};

/** The adapter of a proxy kind. */
export function adapterFor(kind: ProxyAdapter): ProxyAdapterDefinition<never> {
  return adapters[kind];
}
