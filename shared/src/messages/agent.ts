// Requests every agent serves whatever its capabilities: the link's own diagnostics.
import { z } from 'zod';
import { BASELINE_AGENT_VERSION, defineRequest } from '../definitions.ts';

/** Round trip to the agent; the result is its clock when it answered (epoch ms). */
export const pingRequest = defineRequest('ping', {
  params: z.strictObject({}),
  result: z.strictObject({ agentTime: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER) }),
  timeoutMs: 10_000,
  since: BASELINE_AGENT_VERSION,
});
