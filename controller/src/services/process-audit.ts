// Process state changes into the audit trail: every `process.*` event an agent reports on its host
// event stream (started, exited with code/signal, restarting, crash-loop, adopted after an agent
// restart, stopped, healthy, unhealthy, removed) becomes one audit row by `agent:<hostId>`, with
// the event's fields, its capture time and its stream sequence. The host timeline shows the same
// events from the stream itself.
//
// Exactly once: the rows are written by a stored hook of the `events` stream (gateway/sinks.ts),
// after the batch is stored and before it is acked. A controller killed between the two (or an
// audit append that failed) leaves the batch unacked, so the agent resends it and the hook runs
// again over all its records; rows carry `seq` and `ts`, and per host the newest row's pair is
// read once: a record at or below both is already in the trail. (A spool the agent wiped numbers
// from 1 again, but with later times, so its events still go in.)
import type { StoredHook } from '../gateway/sinks.ts';
import type { AuditService } from './audit.ts';
import { decodeHostEvent } from './host-events.ts';

/**
 * The `events` stream's stored hook that writes its process events into the audit trail; it
 * throws when a row could not be appended, so the batch is not acked and comes again.
 * Example: `gateway.sinks.onStored('events', processEventsAuditor({ audit }))`.
 */
export function processEventsAuditor(deps: { audit: AuditService }): StoredHook {
  const { audit } = deps;
  /** Per host: the newest (seq, ts) in the trail, and the chain of writes in order. */
  const hosts = new Map<string, Promise<{ seq: number; ts: number }>>();

  async function newest(hostId: string): Promise<{ seq: number; ts: number }> {
    const [row] = await audit.list({ actor: `agent:${hostId}`, limit: 1 });
    const seq = Number(row?.detail.seq);
    const ts = Number(row?.detail.ts);
    return Number.isFinite(seq) && Number.isFinite(ts) ? { seq, ts } : { seq: 0, ts: 0 };
  }

  return async (hostId, _stream, stored) => {
    const records = stored
      .map((r) => decodeHostEvent(r.seq, r.ts, r.payload))
      .filter((e) => e.kind.startsWith('process.'));
    if (records.length === 0) return;
    // A failed write before this one left no cached pair (see below): read it from the trail.
    const before = hosts.get(hostId) ?? newest(hostId);
    const after = before.then(async (last) => {
      for (const e of records) {
        if (e.seq <= last.seq && e.ts <= last.ts) continue;
        await audit.record(`agent:${hostId}`, e.kind, `host:${hostId}`, {
          ...e.data,
          seq: e.seq,
          ts: e.ts,
        });
        last = { seq: e.seq, ts: e.ts };
      }
      return last;
    });
    hosts.set(hostId, after);
    try {
      await after;
    } catch (err) {
      // What the trail holds is unknown now (the append may have committed): read it again next time.
      if (hosts.get(hostId) === after) hosts.delete(hostId);
      throw err;
    }
  };
}
