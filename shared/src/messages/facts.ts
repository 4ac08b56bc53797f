// Host facts: what an agent reports about its machine on connect and when something changes.
import { z } from 'zod';
import { BASELINE_AGENT_VERSION, defineRequest, lazySchema } from '../definitions.ts';

/**
 * Text that PostgreSQL can store as JSON: no NUL and no unpaired UTF-16 surrogate (both pass
 * JSON.parse but make a jsonb cast fail, which would fail the whole batch they are written in).
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Text of at most `max` characters that PostgreSQL can store (no NUL, no unpaired surrogate). */
export const storableText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\u0000') && !LONE_SURROGATE.test(s), 'must be storable text');
const text = storableText;

export const diskFactSchema = lazySchema(() =>
  z.object({
    mount: text(4096),
    fs: text(4096),
    type: text(64),
    sizeBytes: z.number().nonnegative(),
    usedBytes: z.number().nonnegative(),
  }),
);

/** The facts an agent reports about its host. */
export const hostFactsSchema = lazySchema(() =>
  z.object({
    hostname: text(255),
    os: z.object({
      platform: text(64),
      distro: text(128),
      release: text(128),
      codename: text(128),
      arch: text(32),
    }),
    kernel: text(256),
    cpu: z.object({
      model: text(256),
      cores: z.number().int().nonnegative(),
      physicalCores: z.number().int().nonnegative(),
      speedGHz: z.number().nonnegative(),
    }),
    memory: z.object({ totalBytes: z.number().nonnegative() }),
    disks: z.array(diskFactSchema).max(256),
    agentVersion: text(64),
    bootTime: z.number().nonnegative(),
    uptimeSeconds: z.number().nonnegative(),
  }),
);

export type HostFacts = z.infer<typeof hostFactsSchema>;
export type DiskFact = z.infer<typeof diskFactSchema>;

/** Collect the host's facts now (the controller stores them and publishes the host). */
export const factsRefreshRequest = defineRequest('facts.refresh', {
  params: lazySchema(() => z.strictObject({})),
  result: lazySchema(() => z.strictObject({ facts: hostFactsSchema })),
  timeoutMs: 10_000,
  since: BASELINE_AGENT_VERSION,
});
