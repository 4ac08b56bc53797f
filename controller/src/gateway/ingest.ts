// Stream ingest for one host session: validates each batch, stores batches in order (one store
// call at a time per stream, merging batches that queued up meanwhile into one write), and acks
// the stored sequence cumulatively (never past what the agent sent; a restart of the agent's
// numbering is logged). Flow control bounds what can queue: the agent may have at most the
// window in flight, and a peer that ignores it is disconnected.
import type { Logger } from 'pino';
import { closeCodes, indexRecords, type RecordBatch, type StreamDataFrame } from '@keel/shared';
import type { GatewayStore } from './store.ts';

/** A batch with its records' offsets (`indexRecords`), which the stream repository takes as they are. */
type IndexedBatch = RecordBatch & { offsets: Uint32Array };

/** Hard bound on queued bytes per stream, whatever the window: a misbehaving agent is cut off. */
const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** Streams one session may open; each has its own window, so this bounds a host's memory too. */
export const MAX_STREAMS_PER_SESSION = 64;

interface StreamQueue {
  batches: IndexedBatch[];
  bytes: number;
  /** Received and not yet acknowledged (queued or being stored): what the window bounds. */
  unacked: number;
  running: Promise<void> | null;
}

export interface StreamIngestOptions {
  hostId: string;
  /** Where batches go: the gateway passes its stream sinks (sinks.ts). */
  store: Pick<GatewayStore, 'appendStream'>;
  ack(stream: string, seq: number): void;
  fail(code: number, reason: string): void;
  log: Logger;
  /** The window offered in the welcome; an agent with more unacknowledged bytes is cut off. */
  windowBytes?: number;
  /** Slack over the window: one frame may be in the pipe when an ack crosses it. */
  maxFrameBytes?: number;
}

export class StreamIngest {
  #opts: StreamIngestOptions;
  #streams = new Map<string, StreamQueue>();
  #stopped = false;

  constructor(opts: StreamIngestOptions) {
    this.#opts = opts;
  }

  /** Accepts one stream.data frame. */
  push(frame: StreamDataFrame, body: Buffer): void {
    if (this.#stopped) return;
    const offsets = indexRecords(body, frame.count);
    if (!offsets) {
      this.#opts.fail(
        closeCodes.malformed,
        `stream ${frame.stream}: body does not hold ${frame.count} records`,
      );
      return;
    }
    let q = this.#streams.get(frame.stream);
    if (!q && this.#streams.size >= MAX_STREAMS_PER_SESSION) {
      this.#opts.fail(closeCodes.unexpected, `more than ${MAX_STREAMS_PER_SESSION} streams in one session`);
      this.stop();
      return;
    }
    if (!q) {
      q = { batches: [], bytes: 0, unacked: 0, running: null };
      this.#streams.set(frame.stream, q);
    }
    q.batches.push({ firstSeq: frame.firstSeq, count: frame.count, body, offsets });
    q.bytes += body.length;
    q.unacked += body.length;
    const limit = Math.min(
      MAX_QUEUED_BYTES,
      (this.#opts.windowBytes ?? MAX_QUEUED_BYTES) + (this.#opts.maxFrameBytes ?? 0),
    );
    if (q.unacked > limit) {
      this.#opts.fail(closeCodes.malformed, `stream ${frame.stream}: agent ignored flow control`);
      this.stop();
      return;
    }
    if (!q.running) q.running = this.#run(frame.stream, q);
  }

  /** Waits until everything queued so far is stored. */
  async drain(): Promise<void> {
    await Promise.all([...this.#streams.values()].map((q) => q.running));
  }

  /** Drops what is queued and stores nothing more (session over; the agent will resend). */
  stop(): void {
    this.#stopped = true;
    for (const q of this.#streams.values()) {
      q.batches = [];
      q.bytes = 0;
      q.unacked = 0;
    }
  }

  async #run(stream: string, q: StreamQueue): Promise<void> {
    try {
      while (q.batches.length > 0 && !this.#stopped) {
        const batch = takeContiguous(q);
        const { ackedSeq, restart } = await this.#opts.store.appendStream(this.#opts.hostId, stream, batch);
        if (restart) {
          // Visible in the stream as a `restart` gap; said here too, since it means a host's
          // spool was wiped or restored from an older copy.
          this.#opts.log.warn(
            { host: this.#opts.hostId, stream, agentSeq: batch.firstSeq, atSeq: restart.atSeq },
            "stream restarted: the agent's numbering went backwards (spool wiped or restored); new records are kept after the marker",
          );
        }
        q.unacked -= batch.body.length;
        if (!this.#stopped) this.#opts.ack(stream, ackedSeq);
      }
    } catch (err) {
      this.#opts.log.error({ err, host: this.#opts.hostId, stream }, 'storing stream batch failed');
      // The agent keeps the data in its spool and resends after reconnect.
      this.#opts.fail(closeCodes.internal, 'storage error');
      this.stop();
    } finally {
      q.running = null;
    }
  }
}

/**
 * Removes the leading run of contiguous batches (up to ~4 MiB) and merges it into one, with its
 * records' offsets (found once, in `push`: the repository takes them instead of indexing again).
 */
function takeContiguous(q: StreamQueue): IndexedBatch {
  const first = q.batches.shift()!;
  q.bytes -= first.body.length;
  const run = [first];
  let count = first.count;
  let size = first.body.length;
  while (q.batches.length > 0 && size < 4 * 1024 * 1024) {
    const next = q.batches[0]!;
    if (next.firstSeq !== first.firstSeq + count) break;
    q.batches.shift();
    q.bytes -= next.body.length;
    run.push(next);
    count += next.count;
    size += next.body.length;
  }
  if (run.length === 1) return first;
  const offsets = new Uint32Array(count + 1);
  let at = 0;
  let base = 0;
  for (const b of run) {
    for (let i = 0; i < b.count; i++) offsets[at + i] = base + b.offsets[i]!;
    at += b.count;
    base += b.body.length;
  }
  offsets[count] = base;
  return {
    firstSeq: first.firstSeq,
    count,
    body: Buffer.concat(
      run.map((b) => b.body),
      size,
    ),
    offsets,
  };
}
