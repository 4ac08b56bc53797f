// The Fleet upgrades page's calls to /api/v1/agent-rollouts (docs/operations.md, Agent upgrades):
// same-origin cookie, the CSRF header on mutating calls, and the stable error code of a refusal.
// The shapes mirror the controller's RolloutView (controller/src/services/agent-upgrades.ts).
import { ApiError } from '$lib/api.ts';
import { session } from '$lib/session.svelte.ts';

export type RolloutState = 'running' | 'paused' | 'halted' | 'cancelled' | 'done';
export type RolloutHostState = 'pending' | 'upgrading' | 'ok' | 'failed' | 'rolled-back' | 'cancelled';

export interface RolloutHost {
  hostId: string;
  name: string;
  position: number;
  state: RolloutHostState;
  fromVersion: string | null;
  reason: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}
export interface Rollout {
  id: string;
  version: string;
  sha256: string;
  state: RolloutState;
  canary: number;
  batchSize: number;
  confirmSeconds: number;
  reason: string | null;
  createdBy: string;
  createdAt: string;
  finishedAt: string | null;
  counts: Record<string, number>;
  hosts: RolloutHost[];
}
export interface Overview {
  bundles: { version: string; sha256: string; size: number }[];
  fleet: { version: string; hosts: number; online: number }[];
  rollouts: Rollout[];
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET' && session.csrfToken) headers['x-csrf-token'] = session.csrfToken;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1/agent-rollouts${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok)
    throw new ApiError(
      res.status,
      json?.error?.code ?? `http.${res.status}`,
      json?.error?.message ?? res.statusText,
    );
  return json as T;
}

export const upgradesApi = {
  overview: () => call<Overview>('GET', ''),
  get: (id: string) => call<{ rollout: Rollout }>('GET', `/${id}`),
  start: (body: {
    version: string;
    hostIds?: string[];
    canary?: number;
    batchSize?: number;
    confirmSeconds?: number;
  }) => call<{ rollout: Rollout }>('POST', '', body),
  act: (id: string, action: 'pause' | 'resume' | 'cancel') =>
    call<{ rollout: Rollout }>('POST', `/${id}/${action}`),
};
