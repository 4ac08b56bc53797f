// Calls for the Checks and Alerts pages: JSON over the same-origin API with the session's CSRF
// token on every change; a non-2xx answer throws ApiError with the stable code and message.
import { ApiError, API_BASE } from './api.ts';
import { session } from './session.svelte.ts';

/** Calls `API_BASE + path`; resolves with the JSON body (undefined for 204). */
export async function monitoringCall<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers = new Headers({ accept: 'application/json' });
  if (body !== undefined) headers.set('content-type', 'application/json');
  if (method !== 'GET' && session.csrfToken) headers.set('x-csrf-token', session.csrfToken);
  let res: Response;
  try {
    res = await fetch(`${API_BASE}${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(0, 'network', 'The controller could not be reached.');
  }
  if (res.status === 204) return undefined as T;
  const parsed = (await res.json().catch(() => null)) as
    (T & { error?: { code?: string; message?: string } }) | null;
  if (!res.ok) {
    throw new ApiError(
      res.status,
      parsed?.error?.code ?? `http.${res.status}`,
      parsed?.error?.message ?? `The controller answered ${res.status}.`,
    );
  }
  return parsed as T;
}

/** A fraction 0-1 as a percentage with two decimals, or a dash. */
export function percent(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : `${(v * 100).toFixed(2)} %`;
}

/** A relative time: "3 min ago", "in 2 h". */
export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  const a = Math.abs(s);
  const text =
    a < 60
      ? `${a} s`
      : a < 3600
        ? `${Math.round(a / 60)} min`
        : a < 86_400
          ? `${Math.round(a / 3600)} h`
          : `${Math.round(a / 86_400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

export interface CheckResultView {
  hostId: string;
  at: string;
  ok: boolean;
  latencyMs: number | null;
  status: number | null;
  certExpiresAt: string | null;
  error: string | null;
}

export interface CheckView {
  id: string;
  name: string;
  kind: 'http' | 'tcp' | 'dns';
  target: Record<string, unknown>;
  hostIds: string[];
  intervalSeconds: number;
  timeoutMs: number;
  enabled: boolean;
  /** When the check was last saved (ISO time). */
  updatedAt: string;
  status: 'up' | 'down' | 'unknown';
  last: CheckResultView[];
  uptime: { day: number | null; week: number | null; month: number | null };
  latency: (number | null)[];
}

export interface AlertView {
  id: string;
  ruleId: string;
  ruleName: string;
  kind: string;
  severity: string;
  subject: string;
  hostId: string | null;
  checkId: string | null;
  state: 'pending' | 'firing' | 'resolved';
  value: number | null;
  summary: string;
  silenced: boolean;
  startedAt: string;
  firedAt: string | null;
  resolvedAt: string | null;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
}
