// A host's event stream as the console reads it: stored records of the `events` stream decoded
// from their UTF-8 JSON payloads (`{ "kind": "...", ...fields }`), with the gaps in between.
import type { StreamGapReason } from '../db/schema/streams.ts';
import type { StreamRepository } from '../repositories/streams.ts';

/** The stream agents send host events on. */
export const EVENTS_STREAM = 'events';

export interface HostEvent {
  seq: number;
  ts: number;
  kind: string;
  data: Record<string, unknown>;
}

export interface HostEventPage {
  events: HostEvent[];
  /** `lost`: records the agent lost; `restart`: its numbering went back (spool wiped or restored). */
  gaps: { fromSeq: number; toSeq: number; reason: StreamGapReason; at: string }[];
}

/** Decodes one payload; a payload that is not a JSON object becomes kind `unreadable`. */
export function decodeHostEvent(seq: number, ts: number, payload: Uint8Array): HostEvent {
  try {
    const value: unknown = JSON.parse(Buffer.from(payload).toString('utf8'));
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const { kind, ...data } = value as Record<string, unknown>;
      return { seq, ts, kind: typeof kind === 'string' ? kind : 'unknown', data };
    }
  } catch {
    // fall through: keep the record visible rather than hide it
  }
  return { seq, ts, kind: 'unreadable', data: { bytes: payload.byteLength } };
}

/** Reads pages of a host's events. */
export function createHostEventsReader(streams: StreamRepository) {
  return {
    /** The newest `count` events (oldest of them first), without paging through the stream. */
    async tail(hostId: string, count: number): Promise<HostEventPage> {
      const cursor = await streams.cursor(hostId, EVENTS_STREAM);
      return this.read(hostId, Math.max(0, cursor - count), count);
    },

    async read(hostId: string, afterSeq: number, limit: number): Promise<HostEventPage> {
      const { records, gaps } = await streams.read(hostId, EVENTS_STREAM, afterSeq, limit);
      return {
        events: records.map((r) => decodeHostEvent(r.seq, r.ts, r.payload)),
        gaps: gaps.map((g) => ({
          fromSeq: g.fromSeq,
          toSeq: g.toSeq,
          reason: g.reason,
          at: g.at.toISOString(),
        })),
      };
    },
  };
}

export type HostEventsReader = ReturnType<typeof createHostEventsReader>;
