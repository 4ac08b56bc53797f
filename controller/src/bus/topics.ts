// The bus's topic tree on an MQTT broker, under a deployment's prefix (KEEL_MQTT_TOPIC_PREFIX,
// default `keel`). One topic per fleet event, so integrations (n8n, Node-RED, Home Assistant)
// subscribe to what they need with MQTT wildcards; docs/architecture.md, "The bus", documents it.
import type { FleetEvent } from './index.ts';

/** Every event topic is QoS 1 (at least once); receivers are idempotent (snapshots, seq, offsets). */
export const EVENT_QOS = 1;

/**
 * One variable topic level (a host id, a stream name): `/`, `+`, `#` and NUL cannot appear in it, so
 * it is percent-encoded as in a URL. Ids are UUIDs and pass unchanged.
 */
export function topicLevel(value: string): string {
  return encodeURIComponent(value);
}

/** Where an event goes, and whether the broker keeps it for later subscribers. */
export interface EventTopic {
  topic: string;
  retain: boolean;
}

/**
 * The topic of a fleet event under `prefix`.
 * @example topicOf('keel', { type: 'host.removed', hostId: 'h1' }) // { topic: 'keel/hosts/h1/removed', retain: false }
 */
export function topicOf(prefix: string, event: FleetEvent): EventTopic {
  switch (event.type) {
    case 'host':
      // Retained: an integration subscribing later gets each host's last state at once.
      return { topic: `${prefix}/hosts/${topicLevel(event.host.id)}/state`, retain: true };
    case 'host.removed':
      return { topic: `${prefix}/hosts/${topicLevel(event.hostId)}/removed`, retain: false };
    case 'stream.stored':
      return {
        topic: `${prefix}/hosts/${topicLevel(event.hostId)}/streams/${topicLevel(event.stream)}`,
        retain: false,
      };
    case 'job.run':
      return { topic: `${prefix}/jobs/${topicLevel(event.run.id)}/run`, retain: false };
    case 'job.host':
      return {
        topic: `${prefix}/jobs/${topicLevel(event.runId)}/hosts/${topicLevel(event.host.hostId)}`,
        retain: false,
      };
    case 'job.output':
      return {
        topic: `${prefix}/jobs/${topicLevel(event.runId)}/hosts/${topicLevel(event.hostId)}/output`,
        retain: false,
      };
    case 'job.cancel':
      // Asks the replica running the run to cancel it (a cancel made through another replica).
      return { topic: `${prefix}/jobs/${topicLevel(event.runId)}/cancel`, retain: false };
    case 'job.failed':
      return { topic: `${prefix}/jobs/${topicLevel(event.runId)}/failed`, retain: false };
  }
}

/** The retained state topic of a host (cleared with an empty retained message when it is removed). */
export function hostStateTopic(prefix: string, hostId: string): string {
  return `${prefix}/hosts/${topicLevel(hostId)}/state`;
}

/** The filters a replica subscribes to: every fleet event of the deployment. */
export function eventFilters(prefix: string): string[] {
  return [`${prefix}/hosts/#`, `${prefix}/jobs/#`];
}

/** Where requests for the agents a replica holds are sent (request routing between replicas). */
export function requestTopic(prefix: string, replicaId: string): string {
  return `${prefix}/replicas/${topicLevel(replicaId)}/requests`;
}

/** Where a replica receives the answers to the requests it routed. */
export function replyTopic(prefix: string, replicaId: string): string {
  return `${prefix}/replicas/${topicLevel(replicaId)}/replies`;
}

/** Where revocations go, to every replica (the one holding the host's session closes it). */
export function revocationTopic(prefix: string): string {
  return `${prefix}/replicas/revocations`;
}

/** Where a replica receives the messages of the live channels routed through it (bus/channels.ts). */
export function channelTopic(prefix: string, replicaId: string): string {
  return `${prefix}/replicas/${topicLevel(replicaId)}/channels`;
}

/** Where the broker publishes a replica's will (its bus id) when its connection ends without a goodbye. */
export function replicaGoneTopic(prefix: string, busId: string): string {
  return `${prefix}/replicas/${topicLevel(busId)}/gone`;
}

/** The filter every replica's will matches (`+` for the bus id). */
export function replicaGoneFilter(prefix: string): string {
  return `${prefix}/replicas/+/gone`;
}

/**
 * The bus id a will's topic names, or null when it is not one under `prefix`, or not spelled as
 * replicaGoneTopic spells it: a will replayed on another spelling of the same id (`%61` for `a`)
 * would stay retained there, its replica clearing only its own topic, and every replica
 * subscribing later would take it for gone for as long as it runs.
 */
export function busIdOfGoneTopic(prefix: string, topic: string): string | null {
  const head = `${prefix}/replicas/`;
  if (!topic.startsWith(head) || !topic.endsWith('/gone')) return null;
  const level = topic.slice(head.length, -'/gone'.length);
  if (level.length === 0 || level.includes('/')) return null;
  let busId: string;
  try {
    busId = decodeURIComponent(level);
  } catch {
    return null;
  }
  return topicLevel(busId) === level ? busId : null;
}
