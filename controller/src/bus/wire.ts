// Fleet events as they travel over the broker: a JSON envelope naming the replica that published
// the event, and the event with its binary parts in base64. A broker is untrusted input (any
// client with its credentials can publish), so what arrives is checked against these schemas and
// dropped, never thrown, when it does not match.
//
// Facts, capabilities and a job's command and target are checked as objects only: replicas of two
// versions run side by side during an upgrade, and a field one added must not drop the other's events.
//
// Every message is authenticated: the publishing replica's origin, a sequence number and the time
// are in the envelope, and `mac`, its last member, is HMAC-SHA256 under a key derived from the
// master key the replicas share (secrets.deriveKey(EVENT_MAC_PURPOSE)) over the message's bytes
// without it (the JSON up to `,"mac":` closed by `}`). The payload stays readable: an integration
// reads `event` and may ignore `mac`. A client allowed to publish under the prefix, without the
// master key, cannot make the replicas show a false host state.
import { createHmac, timingSafeEqual } from 'node:crypto';
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
  z.object({ type: z.literal('job.cancel'), runId: id, userId: id, at: text }),
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

/** What the fleet events' MAC key is derived for (secrets.deriveKey). */
export const EVENT_MAC_PURPOSE = 'keel.bus.events';

const envelope = z.object({
  v: z.literal(WIRE_VERSION),
  origin: id,
  // Optional here so that a message without them is counted as unverified, not malformed.
  seq: count.optional(),
  at: z.number().optional(),
  event: wireEvent,
  mac: z.string().optional(),
});

/** A received message, checked: the replica that published it, its sequence and time, the event. */
export interface Received {
  origin: string;
  seq: number;
  at: number;
  event: FleetEvent;
}

/** Why a message was dropped: not a fleet event, or not published by a replica holding the key. */
export type Dropped = 'malformed' | 'unverified';

const MAC_SUFFIX = /,"mac":"([0-9a-f]{64})"\}$/;

function macOf(key: Buffer, signed: string): Buffer {
  return createHmac('sha256', key).update(signed, 'utf8').digest();
}

/**
 * The message body for `event` published by replica `origin` as its `seq`-th event at `at` (epoch
 * ms), authenticated under `key`.
 */
export function encodeEvent(key: Buffer, origin: string, seq: number, at: number, event: FleetEvent): string {
  const wire =
    event.type === 'stream.stored'
      ? { ...event, records: event.records.map((r) => ({ ...r, payload: r.payload.toString('base64') })) }
      : event;
  const signed = JSON.stringify({ v: WIRE_VERSION, origin, seq, at, event: wire });
  return `${signed.slice(0, -1)},"mac":"${macOf(key, signed).toString('hex')}"}`;
}

/**
 * Checks a message body: the event, or why it is dropped (not JSON or not a fleet event of this
 * wire version: malformed; no MAC or a MAC not made under `key`: unverified). Freshness and
 * replays are the receiver's to check (mqtt.ts).
 * @example decodeEvent(key, Buffer.from(encodeEvent(key, 'r1', 0, Date.now(), { type: 'host.removed', hostId: 'h1' })))
 */
export function decodeEvent(key: Buffer, body: Buffer): Received | Dropped {
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return 'malformed';
  }
  const parsed = envelope.safeParse(json);
  if (!parsed.success) return 'malformed';
  const { origin, seq, at, event, mac } = parsed.data;
  const suffix = MAC_SUFFIX.exec(text);
  if (mac === undefined || seq === undefined || at === undefined || !suffix) return 'unverified';
  const expected = macOf(key, `${text.slice(0, suffix.index)}}`);
  if (!timingSafeEqual(expected, Buffer.from(suffix[1]!, 'hex'))) return 'unverified';
  if (event.type === 'stream.stored') {
    const records = event.records.map((r) => ({ ...r, payload: Buffer.from(r.payload, 'base64') }));
    return { origin, seq, at, event: { ...event, records } };
  }
  return { origin, seq, at, event: event as FleetEvent };
}
