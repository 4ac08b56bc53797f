// The fleet event bus: how parts of the controller (and later, other replicas over MQTT) learn
// that a host changed. In-process implementation now; the contract is what later adapters keep.
import { EventEmitter } from 'node:events';
import type { HostView } from '../gateway/types.ts';
import type { StoredRecords } from '../gateway/sinks.ts';
import type { JobBusEvent } from '../services/jobs.ts';

/**
 * Something that happened in the fleet, as published on the bus: a host changed or was removed,
 * or a stream sink stored records (for live views; not sent to the console's fleet SSE).
 */
export type FleetEvent =
  | { type: 'host'; host: HostView }
  | { type: 'host.removed'; hostId: string }
  | ({ type: 'stream.stored' } & StoredRecords)
  | JobBusEvent;

/** Publish/subscribe of fleet events. */
export interface FleetBus {
  publish(event: FleetEvent): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: (event: FleetEvent) => void): () => void;
}

/** The in-process bus: one controller process serving a small fleet. */
export function createLocalBus(): FleetBus {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
    publish(event) {
      emitter.emit('event', event);
    },
    subscribe(listener) {
      emitter.on('event', listener);
      return () => emitter.off('event', listener);
    },
  };
}
