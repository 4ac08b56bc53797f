// The console's client boundary for hosts. Whatever GET /hosts, GET /hosts/:id, an action's answer
// or a `host` event on the live stream carries is read here, once, into the shape the pages
// render: every field present, text made safe to show, numbers finite, anything else null. An
// agent is untrusted and the database holds what older controllers stored, so a host with null,
// partial or odd facts still renders (with placeholders) and never breaks the fleet page. A host
// without an id cannot be shown or linked to and is left out.
import { z } from 'zod';
import type { ApiHost } from './api.ts';

/** Longest text the console keeps from a host field; more is cut with an ellipsis. */
export const MAX_TEXT = 1024;

// C0 and C1 controls (NUL among them) and the bidi controls that could reorder what a line reads.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSHOWABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Text as the console shows it: controls and lone surrogates become U+FFFD, and anything longer
 * than `max` is cut with an ellipsis.
 * @example showableText('web\u0000-1') // 'web\uFFFD-1'
 */
export function showableText(s: string, max = MAX_TEXT): string {
  const long = s.length > max;
  const kept = (long ? s.slice(0, max - 1) : s)
    .replace(UNSHOWABLE, '\uFFFD')
    .replace(LONE_SURROGATE, '\uFFFD');
  return long ? `${kept}…` : kept;
}

/** Any value: showable text, or null for a non-string or an empty string. */
const text = z
  .string()
  .transform((s) => (s ? showableText(s) : null))
  .nullable()
  .catch(null);
/** Any value: a finite number >= 0, or null. */
const amount = z.number().nonnegative().nullable().catch(null);
/** Any value: a whole number >= 0, or null. */
const count = z.number().int().nonnegative().nullable().catch(null);
/** Any value: an ISO 8601 string or epoch ms as sent, or null (format.ts reads both). */
const timestamp = z
  .union([z.string().max(64), z.number()])
  .nullable()
  .catch(null);
/** Any value: the strings of an array (each made showable), or an empty list. */
const names = z
  .array(z.unknown())
  .catch([])
  .transform((list) =>
    list.filter((v): v is string => typeof v === 'string' && v !== '').map((v) => showableText(v, 256)),
  );

const diskSchema = z.object({
  mount: text,
  fs: text,
  type: text,
  sizeBytes: amount,
  usedBytes: amount,
});

const emptyOs = { platform: null, distro: null, release: null, codename: null, arch: null };

const factsSchema = z.object({
  hostname: text,
  os: z.object({ platform: text, distro: text, release: text, codename: text, arch: text }).catch(emptyOs),
  kernel: text,
  cpu: z
    .object({ model: text, cores: count, physicalCores: count, speedGHz: amount })
    .catch({ model: null, cores: null, physicalCores: null, speedGHz: null }),
  memory: z.object({ totalBytes: amount }).catch({ totalBytes: null }),
  disks: z
    .array(diskSchema.nullable().catch(null))
    .catch([])
    .transform((disks) => disks.filter((d) => d !== null).slice(0, 256)),
  agentVersion: text,
  bootTime: amount,
  uptimeSeconds: amount,
});

const capabilitiesSchema = z.object({
  agentVersion: text,
  requests: names,
  streams: names,
  channels: names,
  /** False: the agent announced nothing (it predates announcements) and the lists are assumed. */
  announced: z.boolean().catch(true),
});

const hostSchema = z.object({
  id: z.string().min(1).max(256),
  name: text,
  online: z.boolean().catch(false),
  connectedAt: timestamp,
  lastSeenAt: timestamp,
  enrolledAt: timestamp,
  revokedAt: timestamp,
  agentVersion: text,
  facts: factsSchema.nullable().catch(null),
  capabilities: capabilitiesSchema.nullable().catch(null),
});

/** What an agent reported about its machine, each field null where it was missing or unusable. */
export type HostFacts = z.output<typeof factsSchema>;

/** One disk of a host. */
export type DiskFacts = HostFacts['disks'][number];

/** What a host's agent supports, as its live session announced it (null: not connected). */
export type HostCapabilities = z.output<typeof capabilitiesSchema>;

/** An enrolled host as the console renders it; `name` falls back to the id. */
export type Host = Omit<z.output<typeof hostSchema>, 'name'> & { name: string };

// Every field the API declares for a host is read here: a new one is a type error until it is.
type Unread = Exclude<keyof ApiHost, keyof Host>;
const everyFieldRead: [Unread] extends [never] ? true : Unread = true;
void everyFieldRead;

/** Reads one host from any value; null when it has no usable id. */
export function parseHost(raw: unknown): Host | null {
  const parsed = hostSchema.safeParse(raw);
  if (!parsed.success) return null;
  const host = parsed.data;
  return { ...host, id: host.id, name: host.name ?? showableText(host.id) };
}

/** Reads a host list from any value: the hosts with a usable id, others left out. */
export function parseHosts(raw: unknown): Host[] {
  if (!Array.isArray(raw)) return [];
  return raw.map(parseHost).filter((h): h is Host => h !== null);
}
