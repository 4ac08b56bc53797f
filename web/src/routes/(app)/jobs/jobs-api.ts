// The Jobs page's calls to /api/v1/jobs (docs/jobs.md): same-origin cookie, the CSRF header on
// mutating calls, and the stable error code of a refusal. The shapes mirror the controller's
// JobRunView / JobHostView / ScheduleView (controller/src/services/{jobs,schedules}.ts).
import { ApiError } from '$lib/api.ts';
import { session } from '$lib/session.svelte.ts';

export interface JobCommand {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  user?: string;
}
export interface JobTarget {
  hostIds?: string[];
  groupId?: string;
  tag?: string;
}
export interface JobRun {
  id: string;
  scheduleId: string | null;
  scheduledFor: string | null;
  trigger: string;
  userId: string | null;
  command: JobCommand;
  target: JobTarget;
  status: string;
  note: string | null;
  hostCount: number;
  failedCount: number;
  startedAt: string;
  endedAt: string | null;
  timeoutSeconds: number;
  concurrency: number;
}
export interface JobHost {
  hostId: string;
  hostName: string;
  status: string;
  exitCode: number | null;
  error: string | null;
  durationMs: number | null;
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  stdout?: string;
  stderr?: string;
}
export interface Schedule {
  id: string;
  name: string;
  command: JobCommand;
  target: JobTarget;
  cron: string;
  timezone: string;
  enabled: boolean;
  nextRunAt: string | null;
  concurrency: number;
  timeoutSeconds: number;
  notifyChannelIds: string[];
  lastRun: JobRun | null;
  /** Each host's latest finished result in this schedule's runs. */
  lastResults: {
    hostId: string;
    hostName: string;
    runId: string;
    status: string;
    exitCode: number | null;
  }[];
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET' && session.csrfToken) headers['x-csrf-token'] = session.csrfToken;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1/jobs${path}`, {
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

export const jobsApi = {
  run: (body: { command: JobCommand; target: JobTarget; concurrency: number; timeoutSeconds: number }) =>
    call<{ run: JobRun }>('POST', '/runs', body),
  runs: (limit = 30) => call<{ runs: JobRun[] }>('GET', `/runs?limit=${limit}`),
  get: (id: string) => call<{ run: JobRun; hosts: JobHost[] }>('GET', `/runs/${id}`),
  cancel: (id: string) => call<{ run: JobRun }>('POST', `/runs/${id}/cancel`),
  schedules: () => call<{ schedules: Schedule[] }>('GET', '/schedules'),
  createSchedule: (body: unknown) => call<{ schedule: Schedule }>('POST', '/schedules', body),
  updateSchedule: (id: string, body: unknown) =>
    call<{ schedule: Schedule }>('PATCH', `/schedules/${id}`, body),
  deleteSchedule: (id: string) => call<void>('DELETE', `/schedules/${id}`),
  runSchedule: (id: string) => call<{ run: JobRun }>('POST', `/schedules/${id}/run`),
  /** Notification channels (needs monitoring.view; a refusal means the picker is not shown). */
  async channels(): Promise<{ id: string; name: string; kind: string }[]> {
    const res = await fetch('/api/v1/alerts/channels', { credentials: 'same-origin' });
    if (!res.ok) throw new ApiError(res.status, `http.${res.status}`, res.statusText);
    return ((await res.json()) as { channels: { id: string; name: string; kind: string }[] }).channels;
  },
  /** The run's live view (SSE): snapshot, then output/host/run events. */
  watch: (id: string) => new EventSource(`/api/v1/jobs/runs/${id}/events`),
};

/** A script body run by a named interpreter, or argv lines, as the argv to send. */
export function argvOf(
  mode: 'argv' | 'script',
  argvText: string,
  interpreter: string,
  script: string,
): string[] {
  if (mode === 'argv') return argvText.split('\n').filter((l) => l.length > 0);
  // The interpreter is typed as words (e.g. "/bin/sh -c"); the script is one argument after it.
  return [...interpreter.trim().split(/\s+/).filter(Boolean), script];
}
