// Host facts: what an agent reports about its machine on connect and when something changes.
import { z } from 'zod';

export const diskFactSchema = z.object({
  mount: z.string().max(4096),
  fs: z.string().max(4096),
  type: z.string().max(64),
  sizeBytes: z.number().nonnegative(),
  usedBytes: z.number().nonnegative(),
});

/** The facts an agent reports about its host. */
export const hostFactsSchema = z.object({
  hostname: z.string().max(255),
  os: z.object({
    platform: z.string().max(64),
    distro: z.string().max(128),
    release: z.string().max(128),
    codename: z.string().max(128),
    arch: z.string().max(32),
  }),
  kernel: z.string().max(256),
  cpu: z.object({
    model: z.string().max(256),
    cores: z.number().int().nonnegative(),
    physicalCores: z.number().int().nonnegative(),
    speedGHz: z.number().nonnegative(),
  }),
  memory: z.object({ totalBytes: z.number().nonnegative() }),
  disks: z.array(diskFactSchema).max(256),
  agentVersion: z.string().max(64),
  bootTime: z.number().nonnegative(),
  uptimeSeconds: z.number().nonnegative(),
});

export type HostFacts = z.infer<typeof hostFactsSchema>;
export type DiskFact = z.infer<typeof diskFactSchema>;
