// Agent upgrades: the controller asks an agent to move to another release of itself. The agent
// downloads the bundle from the controller it is enrolled with (never from a URL in the request),
// checks its size and SHA-256, unpacks it beside the running release, writes a trial record that
// its launcher watches, switches `current` and restarts into it. A release that does not reach
// the controller in time, or exits again and again, is switched back by the launcher
// (docs/deployment.md, Agent upgrades).
import { z } from 'zod';
import { defineRequest, lazySchema } from '../definitions.ts';

/** An agent version as release bundles name it (semver, optionally with a pre-release). */
export const AGENT_VERSION_PATTERN = /^\d{1,6}\.\d{1,6}\.\d{1,6}(?:-[0-9A-Za-z.-]{1,40})?$/;
/** The largest agent bundle an agent downloads (today's is ~1.5 MiB). */
export const MAX_AGENT_BUNDLE_BYTES = 64 * 1024 * 1024;
/** The file name of the bundle of `version`. */
export const agentBundleFile = (version: string): string => `keel-agent-${version}.tar.gz`;

export const agentUpgradeParamsSchema = lazySchema(() =>
  z.strictObject({
    /** The release to move to. */
    version: z.string().regex(AGENT_VERSION_PATTERN),
    /** Hex SHA-256 of the bundle; the agent refuses a download that differs. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** The bundle's size in bytes; the download stops past it. */
    size: z.number().int().positive().max(MAX_AGENT_BUNDLE_BYTES),
    /** The new release must reach the controller within this many seconds or it is switched back. */
    confirmSeconds: z.number().int().min(10).max(3600),
    /** The new release may start this many times (the first start included) before it is switched back. */
    maxStarts: z.number().int().min(1).max(20),
  }),
);
export type AgentUpgradeParams = z.infer<typeof agentUpgradeParamsSchema>;

/** Moves the agent to another release; it answers, then restarts into it. */
export const agentUpgradeRequest = defineRequest('agent.upgrade', {
  params: agentUpgradeParamsSchema,
  result: lazySchema(() =>
    z.strictObject({
      /** The release it runs now. */
      previous: z.string().max(64),
      /** The release it restarts into. */
      version: z.string().max(64),
    }),
  ),
  // Download (64 MiB at worst over a slow link) and unpack.
  timeoutMs: 180_000,
});

/** The last upgrade this host's launcher switched back, as the agent keeps it (`upgrade/last-rollback`). */
export const agentRollbackRecordSchema = lazySchema(() =>
  z.strictObject({
    /** The release that was switched back. */
    version: z.string().max(64),
    /** The release it went back to. */
    previous: z.string().max(64),
    /** What the launcher saw: the deadline passed with the controller answering, or too many starts. */
    reason: z.string().max(500),
    /** When the launcher switched back (Unix seconds). */
    at: z.number().int().nonnegative(),
  }),
);
export type AgentRollbackRecord = z.infer<typeof agentRollbackRecordSchema>;

/**
 * Where this agent is in an upgrade. The controller asks when it cannot tell from the host's
 * version alone — a host still on its old release after an `agent.upgrade` whose answer it never
 * saw (the controller restarted, or the link dropped): was the request lost (send it again), is
 * it still under way, or was the new release switched back (halt, with the launcher's reason)?
 */
export const agentUpgradeStatusRequest = defineRequest('agent.upgrade.status', {
  params: lazySchema(() => z.strictObject({})),
  result: lazySchema(() =>
    z.strictObject({
      /** The release running now. */
      version: z.string().max(64),
      /** An upgrade is being downloaded or installed, or a new release is on trial. */
      upgrading: z.boolean(),
      lastRollback: agentRollbackRecordSchema.nullable(),
    }),
  ),
  timeoutMs: 15_000,
  since: '0.2.0',
});

/** Events an agent records about upgrades (host event stream). */
export const agentUpgradeEvents = {
  /** The bundle is verified and unpacked; the agent restarts into it. */
  restarting: 'agent.upgrade.restarting',
  /** The new release reached the controller: the trial is over. */
  confirmed: 'agent.upgrade.confirmed',
  /** The launcher switched back to the previous release ({ version, previous, reason }). */
  rolledBack: 'agent.upgrade.rolled-back',
} as const;
