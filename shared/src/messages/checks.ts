// Service checks: what the controller hands each agent (`checks.apply`: the whole set of checks
// this host runs, with a generation number so an older push never replaces a newer one), and the
// `checks` stream of results the agent sends back (durable: results made while the controller is
// unreachable are spooled and arrive later, stamped with the time they were made).
import { z } from 'zod';
import { defineRequest, defineStream, lazySchema } from '../definitions.ts';
import { storableText } from './facts.ts';

/** Kinds of service check. */
export const checkKinds = ['http', 'tcp', 'dns'] as const;
export type CheckKind = (typeof checkKinds)[number];

const hostName = lazySchema(() =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9.:_-]+$/, 'a host name or an IP address'),
);

/** HTTP(S): status, an optional body match, latency, and the TLS certificate's expiry. */
export const httpCheckTargetSchema = lazySchema(() =>
  z.strictObject({
    url: z
      .url({ protocol: /^https?$/ })
      .max(2048)
      .refine((s) => !s.includes('\u0000'), 'must be storable text'),
    method: z.enum(['GET', 'HEAD']).default('GET'),
    /** Statuses that count as up; empty: 200-399. */
    expectStatus: z.array(z.number().int().min(100).max(599)).max(20).default([]),
    /** The body (first 64 KiB) must contain this text. */
    bodyContains: storableText(1024).optional(),
    /** Accept a certificate that does not verify (self-signed); its expiry is still read. */
    insecure: z.boolean().default(false),
  }),
);

/** TCP: a connection is accepted within the timeout. */
export const tcpCheckTargetSchema = lazySchema(() =>
  z.strictObject({
    host: hostName,
    port: z.number().int().min(1).max(65_535),
  }),
);

/** DNS: a name resolves (through `server` when set), optionally to an expected address. */
export const dnsCheckTargetSchema = lazySchema(() =>
  z.strictObject({
    name: hostName,
    recordType: z.enum(['A', 'AAAA']).default('A'),
    /** Resolver address (`1.1.1.1` or `127.0.0.1:5353`); the host's resolvers when absent. */
    server: z
      .string()
      .max(64)
      .regex(/^[0-9A-Fa-f.:[\]]+$/, 'an IP address, optionally with a port')
      .optional(),
    /** One of the answers must be this address. */
    expect: z
      .string()
      .max(64)
      .regex(/^[0-9A-Fa-f.:]+$/, 'an IP address')
      .optional(),
  }),
);

/** One check as an agent runs it. */
export const checkSpecSchema = lazySchema(() =>
  z.discriminatedUnion('kind', [
    z.strictObject({
      id: z.uuid(),
      kind: z.literal('http'),
      intervalSeconds: z.number().int().min(5).max(86_400),
      timeoutMs: z.number().int().min(100).max(60_000),
      target: httpCheckTargetSchema,
    }),
    z.strictObject({
      id: z.uuid(),
      kind: z.literal('tcp'),
      intervalSeconds: z.number().int().min(5).max(86_400),
      timeoutMs: z.number().int().min(100).max(60_000),
      target: tcpCheckTargetSchema,
    }),
    z.strictObject({
      id: z.uuid(),
      kind: z.literal('dns'),
      intervalSeconds: z.number().int().min(5).max(86_400),
      timeoutMs: z.number().int().min(100).max(60_000),
      target: dnsCheckTargetSchema,
    }),
  ]),
);
export type CheckSpec = z.output<typeof checkSpecSchema>;
export type CheckSpecInput = z.input<typeof checkSpecSchema>;

/** The most checks one host runs. */
export const MAX_CHECKS_PER_HOST = 500;

/** Replaces the host's check set when `generation` is newer than the one it holds. */
export const checksApplyRequest = defineRequest('checks.apply', {
  params: lazySchema(() =>
    z.strictObject({
      generation: z.number().int().nonnegative(),
      checks: z.array(checkSpecSchema).max(MAX_CHECKS_PER_HOST),
    }),
  ),
  result: lazySchema(() =>
    z.strictObject({
      /** The generation the agent holds now (higher than the one sent: the push was stale). */
      generation: z.number().int().nonnegative(),
      count: z.number().int().nonnegative(),
    }),
  ),
  timeoutMs: 10_000,
});

/** One result: one run of one check on one host. */
export const checkResultSchema = lazySchema(() =>
  z.strictObject({
    checkId: z.uuid(),
    /** When the run started, epoch ms. */
    t: z.number().int().nonnegative(),
    ok: z.boolean(),
    /** Time to the answer (HTTP: the whole response; TCP: connect; DNS: the lookup), ms. */
    latencyMs: z.number().nonnegative().nullable(),
    /** HTTP status. */
    status: z.number().int().min(0).max(999).optional(),
    /** The TLS certificate's notAfter, epoch ms (HTTPS). */
    certExpiresAt: z.number().int().optional(),
    /** Addresses a DNS check got. */
    addresses: z.array(z.string().max(64)).max(32).optional(),
    /** Why it is down, one line. */
    error: storableText(500).optional(),
  }),
);
export type CheckResult = z.infer<typeof checkResultSchema>;

/** The durable stream of check results. */
export const checksStream = defineStream('checks', { codec: 'json', durability: 'durable' });
