// Health checks of supervised processes: a TCP port that accepts a connection, an HTTP URL that
// answers 2xx/3xx, or a line of output (a game server's "Done"). The supervisor keeps a process in
// `starting` until its check first passes, and restarts a `running` one whose check fails
// `failures` times in a row (see docs/processes.md).
import { connect } from 'node:net';
import type { ProcessHealthCheck } from '@keel/shared';

/** The outcome of one probe: null when healthy, else what failed (shown in the process status). */
export type ProbeResult = string | null;

/** Connects to host:port; healthy when the connection opens within `timeoutMs`. */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => done(`no connection to ${host}:${port} within ${timeoutMs} ms`),
      timeoutMs,
    );
    socket.once('connect', () => done(null));
    socket.once('error', (err) =>
      done(`${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`),
    );
  });
}

/** GETs `url`; healthy on a 2xx or 3xx answer within `timeoutMs` (redirects are not followed). */
export async function probeHttp(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    // The body is not needed: release the connection.
    await res.body?.cancel();
    return res.status >= 200 && res.status < 400 ? null : `${url} answered ${res.status}`;
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError') return `${url}: no answer within ${timeoutMs} ms`;
    return `${url}: ${e.cause?.code ?? e.message}`;
  }
}

/** Probes a TCP or HTTP check (an output check has no probe: lines are matched as they are read). */
export function probe(check: ProcessHealthCheck): Promise<ProbeResult> {
  if (check.type === 'tcp') return probeTcp(check.host, check.port, check.timeoutMs);
  if (check.type === 'http') return probeHttp(check.url, check.timeoutMs);
  return Promise.resolve(null);
}

/** A matcher for an output check: substring, or a regular expression when `regex` is set. */
export function outputMatcher(check: ProcessHealthCheck): ((stream: string, line: string) => boolean) | null {
  if (check.type !== 'output') return null;
  const re = check.regex ? new RegExp(check.match) : null;
  return (stream, line) => {
    if (check.stream !== 'both' && check.stream !== stream) return false;
    return re ? re.test(line) : line.includes(check.match);
  };
}
