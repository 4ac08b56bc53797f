// Typed client for the controller's REST API (/api/v1), built with `hc<AppType>` from the
// controller's own route types: same-origin cookies, the CSRF header on every mutating call, and
// `ApiError` carrying the stable error code on any non-2xx answer.
import type { AppType } from '@keel/controller';
import { hc, type ClientResponse } from 'hono/client';
import type { SuccessStatusCode } from 'hono/utils/http-status';
import { parseHost, parseHosts, type Host } from './host.ts';
import type { TonProof } from './ton-proof.ts';
import { session } from './session.svelte.ts';

/** Prefix of every API path. */
export const API_BASE = '/api/v1';

/** A failed API call: `code` is the stable code from `{ error: { code, message } }`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized: (() => void) | null = null;

/** Called when an authenticated call comes back 401 (session expired or revoked elsewhere). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function readError(res: Pick<Response, 'status' | 'statusText' | 'json'>): Promise<ApiError> {
  let code = `http.${res.status}`;
  let message = res.statusText || `Request failed with status ${res.status}`;
  try {
    const body: unknown = await res.json();
    const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (err && typeof err.code === 'string') code = err.code;
    if (err && typeof err.message === 'string') message = err.message;
  } catch {
    // Not JSON (a proxy's error page, say): keep the status text.
  }
  return new ApiError(res.status, code, message);
}

// hc builds the URL, method and JSON body from the route types; this adds what every call needs.
// The CSRF token is read per request, so a token from a later sign-in is picked up.
const client = hc<AppType>('/', {
  fetch: (input: RequestInfo | URL, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set('accept', 'application/json');
    const method = init.method ?? 'GET';
    if (method !== 'GET' && session.csrfToken) headers.set('x-csrf-token', session.csrfToken);
    return fetch(input, { ...init, headers, credentials: 'same-origin' });
  },
}).api.v1;

/** The JSON body of a call's 2xx answers (undefined for a 204). */
type Ok<R> =
  R extends ClientResponse<infer Body, infer Status, infer Format>
    ? Status extends SuccessStatusCode
      ? Format extends 'json'
        ? Body
        : undefined
      : never
    : never;

/**
 * Await an `hc` call and return its parsed 2xx body; any other answer throws `ApiError`.
 * @example const { hosts } = await call(client.hosts.$get());
 */
async function call<R extends ClientResponse<unknown>>(
  pending: Promise<R>,
  opts: { quiet401?: boolean } = {},
): Promise<Ok<R>> {
  let res: R;
  try {
    res = await pending;
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === 'AbortError') throw cause;
    throw new ApiError(0, 'network', 'Cannot reach the controller. Check your connection.');
  }
  if (!res.ok) {
    const err = await readError(res);
    if (res.status === 401 && !opts.quiet401) onUnauthorized?.();
    throw err;
  }
  if (res.status === 204) return undefined as Ok<R>;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as Ok<R>;
}

/** Per-call fetch options: the caller's abort signal. */
const withSignal = (signal?: AbortSignal) => ({ init: { signal } });

/** Path parameter for `/{id}` routes; hc does not encode it. */
const byId = (id: string) => ({ param: { id: encodeURIComponent(id) } });

/** An answer the console cannot read (a proxy's page, a newer or broken controller). */
function unreadable(what: string): ApiError {
  return new ApiError(0, 'console.unreadable', `The controller sent ${what} the console cannot read.`);
}

/** The host of a `{ host }` answer, read at the boundary (host.ts). */
async function oneHost(pending: Promise<{ host: unknown }>): Promise<{ host: Host }> {
  const host = parseHost(((await pending) as { host?: unknown } | null | undefined)?.host);
  if (!host) throw unreadable('a host');
  return { host };
}

/** The calls the console makes, one per endpoint in docs/contracts.md. */
export const api = {
  login: (username: string, password: string) =>
    call(client.auth.login.$post({ json: { username, password } }), { quiet401: true }),
  session: (signal?: AbortSignal) =>
    call(client.auth.session.$get(undefined, withSignal(signal)), { quiet401: true }),
  logout: async (): Promise<void> => {
    await call(client.auth.logout.$post());
  },

  // Hosts pass through host.ts: whatever the database holds, the pages get a renderable shape.
  listHosts: async (signal?: AbortSignal): Promise<{ hosts: Host[] }> => {
    const body: unknown = await call(client.hosts.$get(undefined, withSignal(signal)));
    const raw = (body as { hosts?: unknown } | null | undefined)?.hosts;
    if (!Array.isArray(raw)) throw unreadable('a host list');
    return { hosts: parseHosts(raw) };
  },
  /** One host, with the caller's permissions on it (an unreadable list reads as none). */
  getHost: async (id: string, signal?: AbortSignal): Promise<{ host: Host; permissions: string[] }> => {
    const body: unknown = await call(client.hosts[':id'].$get(byId(id), withSignal(signal)));
    const { host } = await oneHost(Promise.resolve(body as { host: unknown }));
    const raw = (body as { permissions?: unknown } | null | undefined)?.permissions;
    const permissions = Array.isArray(raw) ? raw.filter((p): p is string => typeof p === 'string') : [];
    return { host, permissions };
  },
  pingHost: (id: string) => call(client.hosts[':id'].ping.$post(byId(id))),
  refreshFacts: (id: string) => oneHost(call(client.hosts[':id']['refresh-facts'].$post(byId(id)))),
  revokeHost: (id: string) => oneHost(call(client.hosts[':id'].revoke.$post(byId(id)))),
  hostEvents: (id: string, after = 0, limit = 200, signal?: AbortSignal) =>
    call(
      client.hosts[':id'].events.$get(
        { ...byId(id), query: { after: String(after), limit: String(limit) } },
        withSignal(signal),
      ),
    ),
  /** A host's metrics over [from, to) as uPlot columns, at most 2 points per pixel of `width`. */
  hostMetrics: (
    id: string,
    q: { from: number; to: number; width: number; series: string[] },
    signal?: AbortSignal,
  ) =>
    call(
      client.hosts[':id'].metrics.$get(
        {
          ...byId(id),
          query: {
            from: String(q.from),
            to: String(q.to),
            width: String(q.width),
            series: q.series.join(','),
          },
        },
        withSignal(signal),
      ),
    ),
  /** A host's transfer in its current billing cycle, per interface. */
  hostTraffic: (id: string, signal?: AbortSignal) =>
    call(client.hosts[':id'].traffic.$get({ ...byId(id), query: {} }, withSignal(signal))),
  /** The newest `count` events of a host. */
  hostEventsTail: (id: string, count: number, signal?: AbortSignal) =>
    call(
      client.hosts[':id'].events.$get({ ...byId(id), query: { tail: String(count) } }, withSignal(signal)),
    ),

  createJoinToken: (input: { ttlSeconds: number; uses?: number; note?: string }) =>
    call(client['join-tokens'].$post({ json: input })),
  listJoinTokens: () => call(client['join-tokens'].$get()),
  deleteJoinToken: async (id: string): Promise<void> => {
    await call(client['join-tokens'][':id'].$delete(byId(id)));
  },

  /** One page of the audit trail, newest first; `before` is the previous page's `nextBefore`. */
  listAudit: (
    filter: { before?: number; limit?: number; action?: string; target?: string } = {},
    signal?: AbortSignal,
  ) =>
    call(
      client.audit.$get(
        {
          query: {
            before: filter.before?.toString(),
            limit: filter.limit?.toString(),
            action: filter.action || undefined,
            target: filter.target || undefined,
          },
        },
        withSignal(signal),
      ),
    ),
  verifyAudit: () => call(client.audit.verify.$get()),

  ...processCalls(),
  ...metricsCalls(),
  ...processTemplateCalls(),
  ...proxyCalls(),
  ...accessCalls(),
};

/** Users, groups, grants, API tokens, 2FA and sessions (settings/account, admin/users). */
function accessCalls() {
  const user = client.users[':id'];
  return {
    secondFactor: (input: { code: string } | { recoveryCode: string }) =>
      call(client.auth['two-factor'].$post({ json: input }), { quiet401: true }),
    changePassword: async (currentPassword: string, newPassword: string): Promise<void> => {
      await call(client.auth.password.$post({ json: { currentPassword, newPassword } }));
    },
    twoFactorStatus: () => call(client['two-factor'].$get()),
    twoFactorSetup: (password: string) => call(client['two-factor'].setup.$post({ json: { password } })),
    twoFactorConfirm: (code: string) => call(client['two-factor'].confirm.$post({ json: { code } })),
    /** A fresh set of recovery codes (the old ones stop working), for the password or a current code. */
    twoFactorRecoveryCodes: (proof: { password: string } | { code: string }) =>
      call(client['two-factor']['recovery-codes'].$post({ json: proof })),
    twoFactorDisable: async (password: string, code: string): Promise<void> => {
      await call(client['two-factor'].disable.$post({ json: { password, code } }));
    },
    listSessions: () => call(client.sessions.$get()),
    revokeSession: async (sessionId: string): Promise<void> => {
      await call(client.sessions[':sessionId'].$delete({ param: { sessionId } }));
    },
    listTokens: () => call(client.tokens.$get({ query: {} })),
    createToken: (input: Parameters<typeof client.tokens.$post>[0]['json']) =>
      call(client.tokens.$post({ json: input })),
    revokeToken: (id: string) => call(client.tokens[':id'].$delete(byId(id))),
    /** Every user's tokens with their owner (user managers). */
    listAllTokens: () => call(client.tokens.all.$get()),
    listUsers: () => call(client.users.$get()),
    createUser: (input: Parameters<typeof client.users.$post>[0]['json']) =>
      call(client.users.$post({ json: input })),
    deleteUser: async (id: string): Promise<void> => {
      await call(user.$delete(byId(id)));
    },
    userGrants: (id: string) => call(user.grants.$get(byId(id))),
    grant: (id: string, groupId: string, role: 'admin' | 'operator' | 'viewer') =>
      call(user.grants.$post({ ...byId(id), json: { groupId, role } })),
    revokeGrant: async (id: string, grantId: string): Promise<void> => {
      await call(user.grants[':grantId'].$delete({ param: { id, grantId } }));
    },
    listGroups: () => call(client.groups.$get()),
    createGroup: (input: { name: string; tags?: string[]; hostIds?: string[] }) =>
      call(client.groups.$post({ json: input })),
    deleteGroup: async (id: string): Promise<void> => {
      await call(client.groups[':id'].$delete(byId(id)));
    },
    /** Change a user's role or scope. */
    updateUser: (id: string, input: { role?: 'owner' | 'admin' | 'operator' | 'viewer'; scoped?: boolean }) =>
      call(user.$patch({ ...byId(id), json: input })),
    /** Rename a group, set its tags or its hand-picked hosts. */
    updateGroup: (id: string, input: { name?: string; tags?: string[]; hostIds?: string[] }) =>
      call(client.groups[':id'].$patch({ ...byId(id), json: input })),
    hostTags: (id: string) => call(client['host-tags'][':id'].$get(byId(id))),
    setHostTags: (id: string, tags: string[]) =>
      call(client['host-tags'][':id'].$put({ ...byId(id), json: { tags } })),
    /** Wallet sign-in: whether it is on (public), a nonce to sign, link and unlink (My account). */
    walletStatus: () => call(client.auth.wallet.$get()),
    walletLoginChallenge: (wallet: { address: string; chainId?: number }) =>
      call(client.auth.wallet.challenge.$post({ json: wallet })),
    walletLogin: (message: string, signature: string) =>
      call(client.auth.wallet.login.$post({ json: { message, signature } }), { quiet401: true }),
    listWallets: () => call(client.wallets.$get()),
    walletLinkChallenge: (wallet: { address: string; chainId?: number }) =>
      call(client.wallets.challenge.$post({ json: wallet })),
    linkWallet: (input: { message: string; signature: string; password: string }) =>
      call(client.wallets.$post({ json: input })),
    /** TON wallets: a ton_proof whose payload is a nonce (`link`: for My account; else sign-in). */
    tonChallenge: (purpose: 'login' | 'link') => {
      // No body: the nonce alone (the typed client insists on the optional EIP-4361 address).
      const none = {} as { json: { address: string } };
      return call(
        purpose === 'link' ? client.wallets.challenge.$post(none) : client.auth.wallet.challenge.$post(none),
      );
    },
    tonWalletLogin: (proof: TonProof) =>
      call(client.auth.wallet.ton.login.$post({ json: proof }), { quiet401: true }),
    linkTonWallet: (input: TonProof & { password: string }) =>
      call(client.wallets.ton.$post({ json: input })),
    unlinkWallet: async (address: string): Promise<void> => {
      await call(client.wallets[':address'].$delete({ param: { address } }));
    },
    twoFactorPolicy: () => call(client['two-factor'].policy.$get()),
    setTwoFactorPolicy: (roles: ('owner' | 'admin' | 'operator' | 'viewer')[]) =>
      call(client['two-factor'].policy.$put({ json: { roles } })),
    walletPolicy: () => call(client.wallets.policy.$get()),
    setWalletPolicy: (input: { enabled: boolean; chainIds: number[] }) =>
      call(client.wallets.policy.$put({ json: input })),
  };
}

/** The processes capability's calls (web/src/routes/(app)/hosts/[id]/processes). */
function processCalls() {
  const one = (id: string, name: string) => ({
    param: { id: encodeURIComponent(id), name: encodeURIComponent(name) },
  });
  const proc = client.hosts[':id'].processes;
  return {
    listProcesses: (id: string, signal?: AbortSignal) => call(proc.$get(byId(id), withSignal(signal))),
    applyProcess: (id: string, spec: Parameters<typeof proc.$post>[0]['json']) =>
      call(proc.$post({ ...byId(id), json: spec })),
    processAction: (id: string, name: string, action: 'start' | 'stop' | 'restart' | 'kill') =>
      call(proc[':name'][action].$post(one(id, name))),
    deleteProcess: async (id: string, name: string): Promise<void> => {
      await call(proc[':name'].$delete(one(id, name)));
    },
    processStdin: (id: string, name: string, line: string) =>
      call(proc[':name'].stdin.$post({ ...one(id, name), json: { line } })),
    processLogsTail: (id: string, name: string, tail: number, signal?: AbortSignal) =>
      call(proc[':name'].logs.$get({ ...one(id, name), query: { tail: String(tail) } }, withSignal(signal))),
    /** A page of stored output: the newest `tail` lines, or lines after `after` (filters: contains, since, until). */
    processLogs: (
      id: string,
      name: string,
      q: { after?: number; limit?: number; tail?: number; contains?: string; since?: number; until?: number },
      signal?: AbortSignal,
    ) => {
      const query: Record<string, string> = {};
      for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') query[k] = String(v);
      return call(proc[':name'].logs.$get({ ...one(id, name), query }, withSignal(signal)));
    },
    /** A ticket for a live channel of `kind` on a host (then a WebSocket to its `url`). */
    openChannel: (id: string, kind: string, params: Record<string, unknown>) =>
      call(client.hosts[':id'].channels.$post({ ...byId(id), json: { kind, params } })),
  };
}

/** Process templates: catalogue, import, install on a host (hosts/[id]/processes, /processes). */
function processTemplateCalls() {
  const templates = client['process-templates'];
  return {
    listTemplates: (signal?: AbortSignal) => call(templates.$get(undefined, withSignal(signal))),
    importTemplate: (input: Parameters<typeof templates.import.$post>[0]['json']) =>
      call(templates.import.$post({ json: input })),
    deleteTemplate: async (templateId: string): Promise<void> => {
      await call(templates[':templateId'].$delete({ param: { templateId: encodeURIComponent(templateId) } }));
    },
    /** Every process on the hosts the caller sees (filters: host, state, name). */
    listFleetProcesses: (query: { hostId?: string; state?: string; name?: string }, signal?: AbortSignal) =>
      call(
        client.processes.$get(
          {
            query: {
              ...(query.hostId ? { hostId: query.hostId } : {}),
              ...(query.state ? { state: query.state as never } : {}),
              ...(query.name ? { name: query.name } : {}),
            },
          },
          withSignal(signal),
        ),
      ),
    /** One action on many processes of many hosts. */
    fleetProcessAction: (
      action: 'start' | 'stop' | 'restart' | 'kill',
      targets: { hostId: string; name: string }[],
    ) => call(client.processes.actions.$post({ json: { action, targets } })),
    /** A process's log retention, as set (null: the default) and in force. */
    processLogRetention: (id: string, name: string, signal?: AbortSignal) =>
      call(
        client.hosts[':id'].processes[':name']['log-retention'].$get(
          { param: { id: encodeURIComponent(id), name: encodeURIComponent(name) } },
          withSignal(signal),
        ),
      ),
    setProcessLogRetention: (
      id: string,
      name: string,
      limits: { maxAgeDays: number | null; maxBytes: number | null },
    ) =>
      call(
        client.hosts[':id'].processes[':name']['log-retention'].$put({
          param: { id: encodeURIComponent(id), name: encodeURIComponent(name) },
          json: limits,
        }),
      ),
    installTemplate: (
      id: string,
      input: Parameters<(typeof client.hosts)[':id']['processes']['from-template']['$post']>[0]['json'],
    ) => call(client.hosts[':id'].processes['from-template'].$post({ ...byId(id), json: input })),
  };
}

/** Metrics settings, supervised-process series, billing plan and the fleet overview. */
function metricsCalls() {
  const host = client.hosts[':id'];
  return {
    /** Supervised processes' CPU and RSS over [from, to) as uPlot columns. */
    hostProcessMetrics: (id: string, q: { from: number; to: number; width: number }, signal?: AbortSignal) =>
      call(
        host.metrics.processes.$get(
          { ...byId(id), query: { from: String(q.from), to: String(q.to), width: String(q.width) } },
          withSignal(signal),
        ),
      ),
    hostMetricsSettings: (id: string, signal?: AbortSignal) =>
      call(host['metrics-settings'].$get(byId(id), withSignal(signal))),
    setHostMetricsSettings: (id: string, intervalSeconds: number | null) =>
      call(host['metrics-settings'].$put({ ...byId(id), json: { intervalSeconds } })),
    setTrafficPlan: (id: string, plan: { resetDay: number; quotaBytes: number | null }) =>
      call(host['traffic-plan'].$put({ ...byId(id), json: plan })),
    /** Every visible host's sparklines (CPU, memory %) and newest figures, in one call. */
    fleetMetrics: (signal?: AbortSignal) => call(client.fleet.metrics.$get(undefined, withSignal(signal))),
  };
}

/** Proxy nodes, generations, drift and rollouts (hosts/[id]/proxies and /proxies). */
function proxyCalls() {
  const one = (id: string, instance: string) => ({
    param: { id: encodeURIComponent(id), instance: encodeURIComponent(instance) },
  });
  const node = client.hosts[':id'].proxies[':instance'];
  const rollouts = client.proxies.rollouts;
  const rollout = (rolloutId: string) => ({ param: { rolloutId: encodeURIComponent(rolloutId) } });
  return {
    listProxyNodes: (signal?: AbortSignal) => call(client.proxies.$get(undefined, withSignal(signal))),
    hostProxyNodes: (id: string, signal?: AbortSignal) =>
      call(client.hosts[':id'].proxies.$get(byId(id), withSignal(signal))),
    createProxyNode: (
      id: string,
      input: Parameters<(typeof client.hosts)[':id']['proxies']['$post']>[0]['json'],
    ) => call(client.hosts[':id'].proxies.$post({ ...byId(id), json: input })),
    updateProxyNode: (id: string, instance: string, input: Parameters<typeof node.$put>[0]['json']) =>
      call(node.$put({ ...one(id, instance), json: input })),
    deleteProxyNode: async (id: string, instance: string): Promise<void> => {
      await call(node.$delete(one(id, instance)));
    },
    applyProxyNode: (id: string, instance: string, reason?: string) =>
      call(node.apply.$post({ ...one(id, instance), json: reason ? { reason } : {} })),
    proxyGenerations: (id: string, instance: string, signal?: AbortSignal) =>
      call(node.generations.$get({ ...one(id, instance), query: { limit: '100' } }, withSignal(signal))),
    proxyDiff: (id: string, instance: string, from: number, to: number, signal?: AbortSignal) =>
      call(
        node.diff.$get(
          { ...one(id, instance), query: { from: String(from), to: String(to) } },
          withSignal(signal),
        ),
      ),
    rollbackProxyNode: (id: string, instance: string, generation: number) =>
      call(node.rollback.$post({ ...one(id, instance), json: { generation } })),
    proxyDrift: (id: string, instance: string, signal?: AbortSignal) =>
      call(node.drift.$get(one(id, instance), withSignal(signal))),
    resolveProxyDrift: (id: string, instance: string, action: 'adopt' | 'overwrite') =>
      call(node.drift.$post({ ...one(id, instance), json: { action } })),
    listProxyRollouts: (signal?: AbortSignal) =>
      call(rollouts.$get({ query: { limit: '20' } }, withSignal(signal))),
    startProxyRollout: (input: Parameters<typeof rollouts.$post>[0]['json']) =>
      call(rollouts.$post({ json: input })),
    resumeProxyRollout: (rolloutId: string) => call(rollouts[':rolloutId'].resume.$post(rollout(rolloutId))),
    cancelProxyRollout: (rolloutId: string) => call(rollouts[':rolloutId'].cancel.$post(rollout(rolloutId))),
  };
}

/** A host as the API declares it in `GET /hosts`, before the boundary reads it (host.ts). */
export type ApiHost = Ok<Awaited<ReturnType<typeof client.hosts.$get>>>['hosts'][number];

/** What a call resolves to, e.g. `Answer<'listAudit'>` is one page of the audit trail. */
export type Answer<K extends keyof typeof api> = Awaited<ReturnType<(typeof api)[K]>>;
