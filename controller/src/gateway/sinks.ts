// Stream sinks: where each stream kind's records go on the controller. A kind is declared once in
// shared (`defineStream`); its sink stores a batch and returns the seq to ack, then publishes what
// it stored on the bus for live views. Today every kind is stored as chunks (`events`, and logs
// next); metrics will bring a row-per-tick sink, registered here with one line.
//
// What must follow from stored records exactly once (the audit rows of process events) is a
// stored hook, not a bus listener: hooks run after the store and before the ack, so a controller
// killed between the two leaves the batch unacked, the agent resends it, and the hooks run again
// over the whole batch (resent records included) and skip what they already did.
import { decodeRecords, type RecordBatch } from '@keel/shared';
import type { GatewayStore } from './store.ts';

/** What a sink answers for a batch (the store's append result: the seq to ack, a restart mark). */
export type SinkResult = Awaited<ReturnType<GatewayStore['appendStream']>>;

/** Records a sink stored, as published for live views. */
export interface StoredRecords {
  hostId: string;
  stream: string;
  /** The stream's cursor after this append (what the agent is acked). */
  ackedSeq: number;
  /** The newly stored records, oldest first (seq is the agent's numbering). */
  records: { seq: number; ts: number; payload: Buffer }[];
}

/** Stores one stream kind's batches. */
export interface StreamSink {
  /** Stores `batch` (de-duplicating what is already stored) and returns the seq to ack. */
  append(hostId: string, stream: string, batch: RecordBatch): Promise<SinkResult>;
}

/**
 * The chunk sink: consecutive records stored as compressed blocks (the `stream_chunks` table), then
 * the records this append added published through `publish`.
 */
export function chunkSink(opts: {
  store: Pick<GatewayStore, 'appendStream'>;
  publish?: (stored: StoredRecords) => void;
}): StreamSink {
  // The highest seq published per host and stream, so a batch resent after a reconnect is not
  // published twice (after a controller restart the first batch may repeat what an earlier run
  // published: live views de-duplicate by seq).
  const published = new Map<string, number>();
  return {
    async append(hostId, stream, batch) {
      const result = await opts.store.appendStream(hostId, stream, batch);
      if (!opts.publish) return result;
      const key = `${hostId}\u0000${stream}`;
      const after = result.restart ? batch.firstSeq - 1 : (published.get(key) ?? batch.firstSeq - 1);
      const records = decodeRecords(batch.body, batch.count)
        .map((r, i) => ({ seq: batch.firstSeq + i, ts: r.ts, payload: Buffer.from(r.payload) }))
        .filter((r) => r.seq > after);
      published.set(key, Math.max(after, batch.firstSeq + batch.count - 1));
      if (records.length > 0) opts.publish({ hostId, stream, ackedSeq: result.ackedSeq, records });
      return result;
    },
  };
}

/**
 * Work that must follow from a stored batch before it is acked: it gets every record of the batch
 * (the agent's numbering, resent ones too) and must be idempotent; when it throws, the batch is
 * not acked (the session closes, the agent resends).
 */
export type StoredHook = (
  hostId: string,
  stream: string,
  records: { seq: number; ts: number; payload: Buffer }[],
) => Promise<void>;

/** The sink of each stream kind, with a fallback for kinds that registered none. */
export class StreamSinks {
  #byKind = new Map<string, StreamSink>();
  #hooks = new Map<string, StoredHook[]>();
  #fallback: StreamSink;

  constructor(fallback: StreamSink) {
    this.#fallback = fallback;
  }

  /** Registers the sink of a stream kind (one per kind). */
  register(kind: string, sink: StreamSink): this {
    if (this.#byKind.has(kind)) throw new Error(`stream kind ${kind} already has a sink`);
    this.#byKind.set(kind, sink);
    return this;
  }

  /** The sink for a stream name. */
  sinkFor(stream: string): StreamSink {
    return this.#byKind.get(stream) ?? this.#fallback;
  }

  /** Adds a hook run after each batch of a stream kind is stored and before it is acked. */
  onStored(kind: string, hook: StoredHook): this {
    this.#hooks.set(kind, [...(this.#hooks.get(kind) ?? []), hook]);
    return this;
  }

  /** Stores a batch through its kind's sink, then runs the kind's stored hooks (before the ack). */
  async append(hostId: string, stream: string, batch: RecordBatch): Promise<SinkResult> {
    const result = await this.sinkFor(stream).append(hostId, stream, batch);
    const hooks = this.#hooks.get(stream);
    if (hooks) {
      const records = decodeRecords(batch.body, batch.count).map((r, i) => ({
        seq: batch.firstSeq + i,
        ts: r.ts,
        payload: Buffer.from(r.payload),
      }));
      for (const hook of hooks) await hook(hostId, stream, records);
    }
    return result;
  }
}
