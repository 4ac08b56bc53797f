// Fleet events as they travel over the broker: a JSON envelope naming the replica that published
// the event, and the event with its binary parts in base64. A broker is untrusted input (any
// client with its credentials can publish), so what arrives is checked against these schemas and
// dropped, never thrown, when it does not match.
//
// Facts, capabilities and a job's command and target are checked as objects only: replicas of two
// versions run side by side during an upgrade, and a field one added must not drop the other's events.
import { z } from 'zod';
import type { FleetEvent } from './index.ts';

/** The envelope's version; a receiver drops other versions. */
export const WIRE_VERSION = 1;

const isoOrNull = z.string().max(64).nullable();
const id = z.string().min(1).max(200);
const text = z.string().max(10_000);
const anObject = z.record(z.string(), z.unknown());

const hostView = z.object({
  id,
  name: text,
  online: z.boolean(),
  connectedAt: isoOrNull,
  lastSeenAt: isoOrNull,
  enrolledAt: z.string().max(64),
  revokedAt: isoOrNull,
  agentVersion: text.nullable(),
  facts: anObject.nullable(),
  capabilities: anObject.nullable(),
});

const count = z.number().int().nonnegative();

const jobHostView = z.object({
  hostId: id,
  hostName: text,
  status: text,
  exitCode: z.number().int().nullable(),
  error: z.string().nullable(),
  startedAt: isoOrNull,
  endedAt: isoOrNull,
  durationMs: z.number().nonnegative().nullable(),
  stdoutBytes: count,
  stderrBytes: count,
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  stdout: z.string().optional(),
  stderr: z.string().optional(),
});

const jobRunView = z.object({
  id,
  scheduleId: id.nullable(),
  scheduledFor: isoOrNull,
  trigger: text,
  userId: id.nullable(),
  command: anObject,
  target: anObject,
  concurrency: count,
  timeoutSeconds: count,
  maxOutputBytes: count,
  status: text,
  note: z.string().nullable(),
  hostCount: count,
  failedCount: count,
  startedAt: z.string().max(64),
  endedAt: isoOrNull,
});

/** An event on the wire: a FleetEvent with stream record payloads in base64. */
const wireEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('host'), host: hostView }),
  z.object({ type: z.literal('host.removed'), hostId: id }),
  z.object({
    type: z.literal('stream.stored'),
    hostId: id,
    stream: id,
    ackedSeq: count,
    records: z.array(z.object({ seq: count, ts: z.number(), payload: z.base64() })),
  }),
  z.object({ type: z.literal('job.run'), run: jobRunView }),
  z.object({ type: z.literal('job.host'), runId: id, host: jobHostView }),
  z.object({
    type: z.literal('job.output'),
    runId: id,
    hostId: id,
    stream: z.enum(['stdout', 'stderr']),
    offset: count,
    text: z.string(),
  }),
  z.object({
    type: z.literal('job.failed'),
    runId: id,
    scheduleId: id.nullable(),
    scheduleName: text.nullable(),
    trigger: text,
    status: text,
    failedHosts: z.array(
      z.object({
        hostId: id,
        hostName: text,
        status: text,
        exitCode: z.number().int().nullable(),
        error: z.string().nullable(),
      }),
    ),
    at: z.string().max(64),
  }),
]);

const envelope = z.object({ v: z.literal(WIRE_VERSION), origin: id, event: wireEvent });

/** A received message, checked: the replica that published it and the event. */
export interface Received {
  origin: string;
  event: FleetEvent;
}

/** The message body for `event` published by replica `origin`. */
export function encodeEvent(origin: string, event: FleetEvent): string {
  const wire =
    event.type === 'stream.stored'
      ? { ...event, records: event.records.map((r) => ({ ...r, payload: r.payload.toString('base64') })) }
      : event;
  return JSON.stringify({ v: WIRE_VERSION, origin, event: wire });
}

/**
 * Checks a message body; null when it is not JSON or not a fleet event of this wire version.
 * @example decodeEvent(Buffer.from(encodeEvent('r1', { type: 'host.removed', hostId: 'h1' })))
 */
export function decodeEvent(body: Buffer): Received | null {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  const parsed = envelope.safeParse(json);
  if (!parsed.success) return null;
  const { origin, event } = parsed.data;
  if (event.type === 'stream.stored') {
    const records = event.records.map((r) => ({ ...r, payload: Buffer.from(r.payload, 'base64') }));
    return { origin, event: { ...event, records } };
  }
  return { origin, event: event as FleetEvent };
}
