// Log search across the fleet: a substring or a regular expression, within a time range, over one
// process, one host or every host the caller may read logs of (logs.read, per host). Results are
// produced as they are found (an async generator the route streams as NDJSON) and bounded: at
// most `limit` matches, at most `maxSeconds` of scanning, stopped as soon as the client goes.
//
// Regular expressions are JavaScript's, which can backtrack catastrophically (`(a+)+$` on a long
// line of `a`s takes longer than the universe). So a pattern is at most 512 characters, and it
// runs in a worker thread: each batch of lines (at most 1 MiB of text) must come back within
// REGEX_BATCH_MS, or the worker is terminated — the controller's event loop never runs a
// user's pattern — and the search ends with reason `pattern-too-slow`.
import { Worker } from 'node:worker_threads';
import { KeelError, decodeLogLine } from '@keel/shared';
import type { HostRepository } from '../repositories/hosts.ts';
import type { LogRecord, LogSearchRepository } from '../repositories/log-search.ts';
import { hasHostPermission, requireAccess, requireHostAccess } from './access.ts';
import type { ProcessActor } from './processes.ts';

/** What to look for, and where. */
export interface LogSearchQuery {
  q: string;
  regex?: boolean;
  caseSensitive?: boolean;
  hostId?: string;
  process?: string;
  stream?: 'stdout' | 'stderr' | 'both';
  since?: number;
  until?: number;
  limit?: number;
  maxSeconds?: number;
}

/** One line found, with the ranges that matched ([start, end) in UTF-16 units of `text`). */
export interface LogSearchMatch {
  type: 'match';
  hostId: string;
  hostName: string;
  process: string;
  seq: number;
  ts: number;
  stream: 'stdout' | 'stderr';
  text: string;
  /** The line was longer than MAX_TEXT and `text` is its start. */
  cut: boolean;
  ranges: [number, number][];
}

export type LogSearchEvent =
  | LogSearchMatch
  | { type: 'host'; hostId: string; hostName: string; matches: number; scannedLines: number }
  | {
      type: 'end';
      matches: number;
      scannedLines: number;
      /** Records read from storage (all processes of the chunks read). */
      readRecords: number;
      hosts: number;
      /** done: everything in range was read; limit / time: a bound ended it; pattern-too-slow: see above. */
      reason: 'done' | 'limit' | 'time' | 'pattern-too-slow' | 'cancelled';
      elapsedMs: number;
    };

export const MAX_PATTERN = 512;
export const MAX_MATCHES = 2_000;
export const MAX_SECONDS = 120;
/** Longest line text sent back (the match ranges are clipped to it). */
const MAX_TEXT = 4_096;
/** A regex batch must come back within this, or the pattern is stopped. */
export const REGEX_BATCH_MS = 2_000;
/** Largest batch of line text sent to the regex worker at once. */
const REGEX_BATCH_BYTES = 1024 * 1024;
/** Ranges reported per line. */
const MAX_RANGES = 32;

// Plain JavaScript (CommonJS) evaluated as the worker: no loader needed, bundles as a string.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const re = new RegExp(workerData.pattern, workerData.flags);
parentPort.on('message', ({ id, text, lengths }) => {
  const out = [];
  let start = 0;
  for (let i = 0; i < lengths.length; i++) {
    const t = text.slice(start, start + lengths[i]);
    start += lengths[i];
    re.lastIndex = 0;
    const ranges = [];
    let hit = false;
    let m;
    while ((m = re.exec(t)) !== null) {
      hit = true;
      if (m[0].length === 0) {
        re.lastIndex++;
        if (re.lastIndex > t.length) break;
        continue;
      }
      ranges.push([m.index, m.index + m[0].length]);
      if (ranges.length >= ${MAX_RANGES}) break;
    }
    if (hit) out.push([i, ranges]);
  }
  parentPort.postMessage({ id, out });
});
`;

/** Whether `buf[at, at + length)` holds exactly the bytes of `want`. */
function sameBytes(buf: Buffer, at: number, length: number, want: Buffer): boolean {
  if (length !== want.length) return false;
  for (let i = 0; i < length; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}

type Matcher = {
  /** Index -> ranges for the texts that match; null when the pattern ran out of time. */
  match(texts: string[]): Promise<Map<number, [number, number][]> | null>;
  close(): void;
};

function substringMatcher(needle: string, caseSensitive: boolean): Matcher {
  const n = caseSensitive ? needle : needle.toLowerCase();
  return {
    match(texts) {
      const out = new Map<number, [number, number][]>();
      texts.forEach((t, i) => {
        const hay = caseSensitive ? t : t.toLowerCase();
        const ranges: [number, number][] = [];
        for (
          let at = hay.indexOf(n);
          at >= 0 && ranges.length < MAX_RANGES;
          at = hay.indexOf(n, at + n.length)
        ) {
          ranges.push([at, at + n.length]);
        }
        if (ranges.length > 0) out.set(i, ranges);
      });
      return Promise.resolve(out);
    },
    close() {},
  };
}

function regexMatcher(pattern: string, caseSensitive: boolean): Matcher {
  const flags = `g${caseSensitive ? '' : 'i'}u`;
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { pattern, flags } });
  worker.unref();
  let nextId = 0;
  let dead = false;
  const pending = new Map<number, (out: [number, [number, number][]][] | null) => void>();
  worker.on('message', ({ id, out }: { id: number; out: [number, [number, number][]][] }) => {
    pending.get(id)?.(out);
    pending.delete(id);
  });
  const fail = () => {
    dead = true;
    for (const resolve of pending.values()) resolve(null);
    pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', fail);
  return {
    async match(texts) {
      if (dead) return null;
      const id = nextId++;
      const result = await new Promise<[number, [number, number][]][] | null>((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(null);
          void worker.terminate();
        }, REGEX_BATCH_MS);
        pending.set(id, (out) => {
          clearTimeout(timer);
          resolve(out);
        });
        // One string and the lengths beside it: cloning one string costs far less than thousands.
        const lengths = new Uint32Array(texts.length);
        for (let i = 0; i < texts.length; i++) lengths[i] = texts[i]!.length;
        worker.postMessage({ id, text: texts.join(''), lengths }, [lengths.buffer]);
      });
      return result ? new Map(result) : null;
    },
    close() {
      void worker.terminate();
    },
  };
}

/** Fleet log search. */
export function createLogSearchService(deps: { hosts: HostRepository; logs: LogSearchRepository }) {
  const { hosts, logs } = deps;
  return {
    /**
     * Checks the query and the caller's access (throws before anything is streamed), then returns
     * the search as an async generator of events; `signal` aborts it (the client went away).
     */
    async start(
      actor: ProcessActor,
      query: LogSearchQuery,
      signal?: AbortSignal,
    ): Promise<AsyncGenerator<LogSearchEvent>> {
      requireAccess(actor, 'logs.read');
      if (!query.q || query.q.length > MAX_PATTERN) {
        throw new KeelError('request.invalid', `The search text is 1 to ${MAX_PATTERN} characters.`);
      }
      if (query.regex) {
        try {
          new RegExp(query.q, 'gu');
        } catch (err) {
          throw new KeelError(
            'search.invalid_pattern',
            `Not a valid regular expression: ${(err as Error).message}`,
          );
        }
      }
      let targets: { id: string; name: string }[];
      if (query.hostId) {
        requireHostAccess(actor, 'logs.read', [query.hostId]);
        const host = await hosts.get(query.hostId);
        if (!host) throw new KeelError('host.not_found');
        targets = [{ id: host.id, name: host.name }];
      } else {
        targets = (await hosts.list())
          .filter((h) => hasHostPermission(actor, 'logs.read', h.id))
          .map((h) => ({ id: h.id, name: h.name }));
      }
      const limit = Math.min(query.limit ?? 500, MAX_MATCHES);
      const deadline = Date.now() + Math.min(query.maxSeconds ?? 30, MAX_SECONDS) * 1000;
      const caseSensitive = query.caseSensitive ?? false;
      const stream = query.stream ?? 'both';
      const processName = query.process === undefined ? null : Buffer.from(query.process, 'utf8');
      return (async function* run(): AsyncGenerator<LogSearchEvent> {
        const started = Date.now();
        const matcher = query.regex
          ? regexMatcher(query.q, caseSensitive)
          : substringMatcher(query.q, caseSensitive);
        let matches = 0;
        let scannedLines = 0;
        let readRecords = 0;
        let reason: Extract<LogSearchEvent, { type: 'end' }>['reason'] = 'done';
        try {
          scan: for (const host of targets) {
            let hostMatches = 0;
            let hostLines = 0;
            const pages = logs.pages(host.id, {
              since: query.since,
              until: query.until,
              process: query.process,
            });
            try {
              for await (const records of pages) {
                readRecords += records.length;
                if (signal?.aborted) {
                  reason = 'cancelled';
                  break scan;
                }
                if (Date.now() > deadline) {
                  reason = 'time';
                  break scan;
                }
                // The lines of this page that are in range, then matched in batches of bounded size.
                // Only a line that matches becomes an object (most lines of a search do not).
                let batch: LogRecord[] = [];
                let texts: string[] = [];
                let bytes = 0;
                const yieldQueue: LogSearchEvent[] = [];
                const flush = async (): Promise<boolean> => {
                  if (batch.length === 0) return true;
                  const found = await matcher.match(texts);
                  if (found === null) {
                    reason = 'pattern-too-slow';
                    return false;
                  }
                  for (const [i, ranges] of [...found.entries()].sort((a, b) => a[0] - b[0])) {
                    if (signal?.aborted) {
                      reason = 'cancelled';
                      return false;
                    }
                    const r = batch[i]!;
                    const l = decodeLogLine(r.payload)!;
                    const text = texts[i]!;
                    matches++;
                    hostMatches++;
                    yieldQueue.push({
                      type: 'match',
                      hostId: host.id,
                      hostName: host.name,
                      process: l.process,
                      seq: r.seq,
                      ts: r.ts,
                      stream: l.stream,
                      text: text.slice(0, MAX_TEXT),
                      cut: text.length > MAX_TEXT,
                      ranges: ranges
                        .filter(([s]) => s < MAX_TEXT)
                        .map(([s, e]) => [s, Math.min(e, MAX_TEXT)] as [number, number]),
                    });
                    if (matches >= limit) {
                      reason = 'limit';
                      return false;
                    }
                  }
                  batch = [];
                  texts = [];
                  bytes = 0;
                  return true;
                };
                let go = true;
                for (const r of records) {
                  if (query.since !== undefined && r.ts < query.since) continue;
                  if (query.until !== undefined && r.ts >= query.until) continue;
                  // The record's header read in place (encodeLogLine: flags, name length, name, line).
                  const p = r.payload;
                  if (p.length < 2) continue;
                  const nameLength = p[1]!;
                  if (p.length < 2 + nameLength) continue;
                  if (processName && !sameBytes(p, 2, nameLength, processName)) continue;
                  if (stream !== 'both' && ((p[0]! & 1) === 1) !== (stream === 'stderr')) continue;
                  hostLines++;
                  scannedLines++;
                  const text = p.toString('utf8', 2 + nameLength);
                  batch.push(r);
                  texts.push(text);
                  bytes += text.length;
                  if (bytes >= REGEX_BATCH_BYTES) {
                    go = await flush();
                    for (const e of yieldQueue.splice(0)) {
                      if (signal?.aborted) break;
                      yield e;
                    }
                    if (!go) break;
                  }
                }
                if (go) {
                  go = await flush();
                  for (const e of yieldQueue.splice(0)) {
                    if (signal?.aborted) {
                      reason = 'cancelled';
                      go = false;
                      break;
                    }
                    yield e;
                  }
                }
                if (!go) break scan;
              }
            } finally {
              await pages.return(undefined);
            }
            yield {
              type: 'host',
              hostId: host.id,
              hostName: host.name,
              matches: hostMatches,
              scannedLines: hostLines,
            };
          }
          if (signal?.aborted) reason = 'cancelled';
        } finally {
          matcher.close();
        }
        yield {
          type: 'end',
          matches,
          scannedLines,
          readRecords,
          hosts: targets.length,
          reason,
          elapsedMs: Date.now() - started,
        };
      })();
    },
  };
}

export type LogSearchService = ReturnType<typeof createLogSearchService>;
