// The Proxy users page's calls to /api/v1/proxy-users (docs/proxies.md, "Proxy users and links"):
// same-origin cookie, the CSRF header on mutating calls, the stable error code of a refusal. The
// shapes mirror ProxyUserView and ProxyUserLink in controller/src/services/proxy-users.ts.
import { ApiError } from '$lib/api.ts';
import { session } from '$lib/session.svelte.ts';

export type ProxyUserStatus = 'active' | 'disabled' | 'limited' | 'expired';
export type ResetPeriod = 'none' | 'daily' | 'weekly' | 'monthly';

export interface ProxyUserNodeRef {
  hostId: string;
  instance: string;
  inbounds: string[] | null;
  port?: number | null;
}
export interface ProxyUser {
  id: string;
  name: string;
  ownerId: string | null;
  status: ProxyUserStatus;
  secret: string;
  uuid: string;
  password: string;
  dataLimitBytes: number | null;
  resetPeriod: ResetPeriod;
  lastResetAt: string;
  expiresAt: string | null;
  maxConnections: number | null;
  maxUniqueIps: number | null;
  note: string;
  usedUpBytes: number;
  usedDownBytes: number;
  usedBytes: number;
  lifetimeBytes: number;
  lastSeenAt: string | null;
  createdAt: string;
  nodes: ProxyUserNodeRef[];
  subscriptionUrl: string;
}
export interface ProxyUserLink {
  hostName: string;
  instance: string;
  protocol: string;
  inbound: string | null;
  name: string;
  link: string;
  webLink: string | null;
  qr: string;
}
export interface AssignableNode {
  hostId: string;
  hostName: string;
  instance: string;
  adapter: string;
  inbounds: { tag: string; protocol: string }[];
}
export interface ProxyUserInput {
  name?: string;
  status?: 'active' | 'disabled';
  dataLimitBytes?: number | null;
  resetPeriod?: ResetPeriod;
  expiresAt?: string | null;
  maxConnections?: number | null;
  maxUniqueIps?: number | null;
  note?: string;
  nodes?: { hostId: string; instance: string; inbounds?: string[] | null }[];
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET' && session.csrfToken) headers['x-csrf-token'] = session.csrfToken;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1/proxy-users${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return undefined as T;
  const json = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok)
    throw new ApiError(
      res.status,
      json?.error?.code ?? `http.${res.status}`,
      json?.error?.message ?? res.statusText,
    );
  return json as T;
}

export const proxyUsersApi = {
  list: (q: { search?: string; status?: string; limit: number; offset: number }) => {
    const p = new URLSearchParams({ limit: String(q.limit), offset: String(q.offset) });
    if (q.search) p.set('search', q.search);
    if (q.status) p.set('status', q.status);
    return call<{ users: ProxyUser[]; total: number }>('GET', `?${p.toString()}`);
  },
  nodes: () => call<{ nodes: AssignableNode[] }>('GET', '/nodes'),
  create: (body: ProxyUserInput) => call<{ user: ProxyUser }>('POST', '', body),
  update: (id: string, body: ProxyUserInput) => call<{ user: ProxyUser }>('PATCH', `/${id}`, body),
  remove: (id: string) => call<void>('DELETE', `/${id}`),
  regenerate: (id: string, which: 'secret' | 'uuid' | 'password' | 'all') =>
    call<{ user: ProxyUser }>('POST', `/${id}/regenerate`, { which }),
  rotate: (id: string) => call<{ user: ProxyUser }>('POST', `/${id}/rotate-subscription`),
  bulk: (ids: string[], action: 'disable' | 'enable' | 'delete' | 'reset-usage') =>
    call<{ count: number }>('POST', '/bulk', { ids, action }),
  links: (id: string) =>
    call<{ links: ProxyUserLink[]; subscriptionUrl: string; subscriptionQr: string }>('GET', `/${id}/links`),
  usage: (id: string, hours: number) =>
    call<{ points: { at: number; up: number; down: number }[] }>('GET', `/${id}/usage?hours=${hours}`),
};
