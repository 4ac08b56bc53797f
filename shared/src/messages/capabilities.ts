// Capabilities: what an agent serves (requests), sends (streams) and opens (channels), announced
// once per session so the controller never sends what the agent cannot serve and the console
// shows per host what it supports. From protocol version 2 the agent's first sealed frame is the
// announcement; an agent that speaks only version 1 (0.1.0, before announcements) is assumed to
// serve the baseline: every request and stream whose `since` is the baseline version, no channels.
import { z } from 'zod';
import { BASELINE_AGENT_VERSION } from '../definitions.ts';
import { requestCatalogue, streamCatalogue } from '../catalogue.ts';

const name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9._:-]*$/);

/** The announcement's content. */
export const capabilitiesSchema = z.strictObject({
  agentVersion: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[0-9A-Za-z.+-]+$/),
  requests: z.array(name).max(512),
  streams: z.array(name).max(64),
  channels: z.array(name).max(128),
});
export type AgentCapabilities = z.infer<typeof capabilitiesSchema>;

/** Agent -> controller, first sealed frame of a protocol-2 session. */
export const capabilitiesFrameSchema = capabilitiesSchema.extend({ type: z.literal('capabilities') });
export type CapabilitiesFrame = z.infer<typeof capabilitiesFrameSchema>;

/** A host's capabilities as the controller keeps and shows them. */
export interface HostCapabilities {
  /** The agent's version as announced; null when the agent announced nothing. */
  agentVersion: string | null;
  requests: string[];
  streams: string[];
  channels: string[];
  /** False for an agent that announced nothing: the lists are the assumed baseline. */
  announced: boolean;
}

/** Orders dotted versions numerically (`0.10.0` > `0.9.1`); a pre-release suffix is ignored. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) =>
    v
      .split(/[-+]/)[0]!
      .split('.')
      .map((p) => Number.parseInt(p, 10) || 0);
  const x = parts(a);
  const y = parts(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * What an agent that announces nothing is assumed to serve: the requests and streams of the first
 * release (their `since` is the baseline version), and no channels (channels came later).
 */
export function baselineCapabilities(): HostCapabilities {
  const atBaseline = (since: string) => compareVersions(since, BASELINE_AGENT_VERSION) <= 0;
  return {
    agentVersion: null,
    requests: Object.values(requestCatalogue)
      .filter((d) => atBaseline(d.since))
      .map((d) => d.name),
    streams: Object.values(streamCatalogue)
      .filter((d) => atBaseline(d.since))
      .map((d) => d.name),
    channels: [],
    announced: false,
  };
}
