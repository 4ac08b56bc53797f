// Process state changes into the audit trail: every `process.*` event an agent reports on its host
// event stream (started, exited with code/signal, restarting, crash-loop, adopted after an agent
// restart, stopped, healthy, unhealthy, removed) becomes one audit row by `agent:<hostId>`, with
// the event's fields, its capture time and its stream sequence. The host timeline shows the same
// events from the stream itself.
//
// Exactly once: the bus publishes what the events sink stored; after a controller restart the
// first batch an agent resends may be published again, so rows carry `seq` and `ts`, and per host
// the newest row's pair is read once: a record at or below both is already in the trail. (A spool
// the agent wiped numbers from 1 again, but with later times, so its events still go in.)
import type { FleetBus } from '../bus/index.ts';
import type { AuditService } from './audit.ts';
import { EVENTS_STREAM, decodeHostEvent } from './host-events.ts';

/** Subscribes the audit trail to process events on the bus; returns the unsubscribe function. */
export function auditProcessEvents(deps: { bus: FleetBus; audit: AuditService }): () => void {
  const { bus, audit } = deps;
  /** Per host: the newest (seq, ts) in the trail, and the chain of writes in order. */
  const hosts = new Map<string, Promise<{ seq: number; ts: number }>>();

  async function newest(hostId: string): Promise<{ seq: number; ts: number }> {
    const [row] = await audit.list({ actor: `agent:${hostId}`, limit: 1 });
    const seq = Number(row?.detail.seq);
    const ts = Number(row?.detail.ts);
    return Number.isFinite(seq) && Number.isFinite(ts) ? { seq, ts } : { seq: 0, ts: 0 };
  }

  return bus.subscribe((event) => {
    if (event.type !== 'stream.stored' || event.stream !== EVENTS_STREAM) return;
    const records = event.records
      .map((r) => decodeHostEvent(r.seq, r.ts, r.payload))
      .filter((e) => e.kind.startsWith('process.'));
    if (records.length === 0) return;
    const { hostId } = event;
    const before = hosts.get(hostId) ?? newest(hostId).catch(() => ({ seq: 0, ts: 0 }));
    const after = before.then(async (last) => {
      for (const e of records) {
        if (e.seq <= last.seq && e.ts <= last.ts) continue;
        try {
          await audit.record(`agent:${hostId}`, e.kind, `host:${hostId}`, {
            ...e.data,
            seq: e.seq,
            ts: e.ts,
          });
          last = { seq: e.seq, ts: e.ts };
        } catch {
          // audit.record logged it; the next event still goes in
        }
      }
      return last;
    });
    hosts.set(hostId, after);
  });
}
