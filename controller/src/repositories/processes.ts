// Process definitions per host, and reads of the `logs` stream by process. Log lines are stored
// by the stream sink as compressed chunks of consecutive records (stream_chunks, one stream per
// host); reads here page through those chunks and keep the lines of one process.
import { and, asc, eq, sql } from 'drizzle-orm';
import { decodeLogLine, type ProcessSpec } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { processDefinitions, type ProcessDefinitionRow } from '../db/schema/processes.ts';
import type { StreamGap, StreamRepository } from './streams.ts';

/** The stream the agents send process output on. */
export const LOGS_STREAM = 'logs';
/** Records decoded per page while scanning for one process's lines. */
const SCAN_PAGE = 5_000;

export interface LogLineView {
  seq: number;
  ts: number;
  stream: 'stdout' | 'stderr';
  /** The line as text (invalid UTF-8 replaced). */
  text: string;
  /** The line was split (longer than 64 KiB, or a partial line): the next one continues it. */
  continued: boolean;
}

export interface LogPage {
  lines: LogLineView[];
  /** Gaps in the host's logs stream within the range read (lines lost on the agent). */
  gaps: StreamGap[];
  /** Read on after this seq for more (the host's stream seq the scan reached). */
  nextAfter: number;
  /** True when the scan reached the end of what is stored. */
  end: boolean;
}

export interface LogQuery {
  /** Lines with seq > afterSeq. */
  afterSeq: number;
  limit: number;
  /** Only lines containing this text. */
  contains?: string;
  /** Only lines captured at or after this time (epoch ms). */
  since?: number;
  /** Only lines captured before this time (epoch ms); the scan stops at the first one after it. */
  until?: number;
  /** Stop scanning after this many records of the host (bounds one request's work). */
  scanLimit?: number;
}

/** Process definitions and log reads. */
export function createProcessRepository(db: Db, streams: StreamRepository) {
  return {
    async list(hostId: string): Promise<ProcessDefinitionRow[]> {
      return db
        .select()
        .from(processDefinitions)
        .where(eq(processDefinitions.hostId, hostId))
        .orderBy(asc(processDefinitions.name));
    },

    async get(hostId: string, name: string): Promise<ProcessDefinitionRow | null> {
      const [row] = await db
        .select()
        .from(processDefinitions)
        .where(and(eq(processDefinitions.hostId, hostId), eq(processDefinitions.name, name)));
      return row ?? null;
    },

    /** Creates or replaces the definition named `spec.name` on a host. */
    async upsert(hostId: string, spec: ProcessSpec): Promise<ProcessDefinitionRow> {
      const [row] = await db
        .insert(processDefinitions)
        .values({ hostId, name: spec.name, spec })
        .onConflictDoUpdate({
          target: [processDefinitions.hostId, processDefinitions.name],
          set: { spec, updatedAt: sql`now()` },
        })
        .returning();
      return row!;
    },

    async remove(hostId: string, name: string): Promise<boolean> {
      const rows = await db
        .delete(processDefinitions)
        .where(and(eq(processDefinitions.hostId, hostId), eq(processDefinitions.name, name)))
        .returning({ id: processDefinitions.id });
      return rows.length > 0;
    },

    /** The host's logs stream cursor (highest stored seq). */
    logsCursor(hostId: string): Promise<number> {
      return streams.cursor(hostId, LOGS_STREAM);
    },

    /** Lines of one process after `afterSeq`, optionally only those containing `contains`. */
    async readLogs(hostId: string, process: string, q: LogQuery): Promise<LogPage> {
      const lines: LogLineView[] = [];
      const gaps: StreamGap[] = [];
      const scanLimit = q.scanLimit ?? 200_000;
      let after = q.afterSeq;
      let scanned = 0;
      for (;;) {
        const page = await streams.read(hostId, LOGS_STREAM, after, SCAN_PAGE);
        gaps.push(...page.gaps);
        // A page stopped early returns the gaps up to where it stopped; the next page returns the rest.
        const upTo = (at: number) => gaps.filter((g) => g.fromSeq <= at);
        for (const r of page.records) {
          after = r.seq;
          if (q.until !== undefined && r.ts >= q.until)
            return { lines, gaps: upTo(after), nextAfter: after, end: true };
          if (q.since !== undefined && r.ts < q.since) continue;
          const l = decodeLogLine(r.payload);
          if (!l || l.process !== process) continue;
          const text = Buffer.from(l.line).toString('utf8');
          if (q.contains !== undefined && !text.includes(q.contains)) continue;
          lines.push({ seq: r.seq, ts: r.ts, stream: l.stream, text, continued: l.continued });
          if (lines.length >= q.limit) return { lines, gaps: upTo(after), nextAfter: after, end: false };
        }
        scanned += page.records.length;
        if (page.records.length < SCAN_PAGE) return { lines, gaps, nextAfter: after, end: true };
        if (scanned >= scanLimit) return { lines, gaps, nextAfter: after, end: false };
      }
    },
  };
}

export type ProcessRepository = ReturnType<typeof createProcessRepository>;
