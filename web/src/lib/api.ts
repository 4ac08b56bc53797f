// Typed client for the controller's REST API (/api/v1): same-origin cookies, the CSRF header on
// every mutating call, and `ApiError` carrying the stable error code on any non-2xx answer.
import { session } from './session.svelte.ts';
import type { CreatedJoinToken, Host, HostEventsPage, JoinToken, PingResult, SessionInfo } from './types.ts';

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

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

let onUnauthorized: (() => void) | null = null;

/** Called when an authenticated call comes back 401 (session expired or revoked elsewhere). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function readError(res: Response): Promise<ApiError> {
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

/**
 * Call the API and parse the JSON answer.
 * @example const { hosts } = await request<{ hosts: Host[] }>('GET', '/hosts');
 */
export async function request<T>(
  method: Method,
  path: string,
  body?: unknown,
  opts: { signal?: AbortSignal; quiet401?: boolean } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && session.csrfToken) headers['x-csrf-token'] = session.csrfToken;
  let res: Response;
  try {
    res = await fetch(API_BASE + path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === 'AbortError') throw cause;
    throw new ApiError(0, 'network', 'Cannot reach the controller. Check your connection.');
  }
  if (!res.ok) {
    const err = await readError(res);
    if (res.status === 401 && !opts.quiet401) onUnauthorized?.();
    throw err;
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The calls the console makes, one per endpoint in docs/contracts.md. */
export const api = {
  login: (username: string, password: string) =>
    request<SessionInfo>('POST', '/auth/login', { username, password }, { quiet401: true }),
  session: (signal?: AbortSignal) =>
    request<SessionInfo>('GET', '/auth/session', undefined, { signal, quiet401: true }),
  logout: () => request<void>('POST', '/auth/logout'),

  listHosts: (signal?: AbortSignal) => request<{ hosts: Host[] }>('GET', '/hosts', undefined, { signal }),
  getHost: (id: string, signal?: AbortSignal) =>
    request<{ host: Host }>('GET', `/hosts/${encodeURIComponent(id)}`, undefined, { signal }),
  pingHost: (id: string) => request<PingResult>('POST', `/hosts/${encodeURIComponent(id)}/ping`),
  refreshFacts: (id: string) =>
    request<{ host: Host }>('POST', `/hosts/${encodeURIComponent(id)}/refresh-facts`),
  revokeHost: (id: string) => request<{ host: Host }>('POST', `/hosts/${encodeURIComponent(id)}/revoke`),
  hostEvents: (id: string, after = 0, limit = 200, signal?: AbortSignal) =>
    request<HostEventsPage>(
      'GET',
      `/hosts/${encodeURIComponent(id)}/events?after=${after}&limit=${limit}`,
      undefined,
      { signal },
    ),
  /** The newest `count` events of a host. */
  hostEventsTail: (id: string, count: number, signal?: AbortSignal) =>
    request<HostEventsPage>('GET', `/hosts/${encodeURIComponent(id)}/events?tail=${count}`, undefined, {
      signal,
    }),

  createJoinToken: (input: { ttlSeconds: number; uses?: number; note?: string }) =>
    request<CreatedJoinToken>('POST', '/join-tokens', input),
  listJoinTokens: () => request<{ tokens: JoinToken[] }>('GET', '/join-tokens'),
  deleteJoinToken: (id: string) => request<void>('DELETE', `/join-tokens/${encodeURIComponent(id)}`),
};
