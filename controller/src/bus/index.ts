// The fleet event bus: how parts of the controller, and other controller replicas, learn that a
// host changed. The in-process bus serves one controller; with KEEL_MQTT_URL the replicas share
// their events over an MQTT broker (bus/mqtt.ts) behind the same contract.
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

/** What a bus has counted since start (the MQTT bus; the in-process one counts nothing). */
export interface BusStats {
  /** Events this replica sent to the broker. */
  sent: number;
  /** Events from other replicas delivered to this one's subscribers. */
  received: number;
  /** Messages dropped as malformed (not JSON, not a fleet event, wrong topic). */
  malformed: number;
  /** Messages dropped as unverified: no valid MAC under the shared key, too old or replayed. */
  unverified: number;
  /** Events not sent because the broker was unreachable at the time. */
  unsent: number;
}

/**
 * The bus as a controller replica holds it. `subscribe` hears every replica's events (what live
 * views need: the console's fleet SSE, a job's live output); `local` hears only the events this
 * replica published, for reactions that must happen once and where the agent's session is
 * (audit rows, pushing checks or intervals to an agent that came online here).
 */
export interface ReplicaBus extends FleetBus {
  readonly local: FleetBus;
  /** True while events reach the other replicas (always true for the in-process bus). */
  readonly connected: boolean;
  stats(): BusStats;
  /** Called each time the broker comes back after a loss (never in process); returns the unsubscribe. */
  onReconnected(listener: () => void): () => void;
  /** Stops talking to the broker (a no-op in process). */
  close(): Promise<void>;
}

/** The in-process bus as a replica bus: one controller, so every event is its own. */
export function createLocalReplicaBus(): ReplicaBus {
  const bus = createLocalBus();
  return {
    ...bus,
    local: bus,
    connected: true,
    stats: () => ({ sent: 0, received: 0, malformed: 0, unverified: 0, unsent: 0 }),
    onReconnected: () => () => {},
    close: async () => {},
  };
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
