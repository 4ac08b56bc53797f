// Requests every agent serves whatever its capabilities: the link's own diagnostics.
import { z } from 'zod';
import { BASELINE_AGENT_VERSION, defineRequest, lazySchema } from '../definitions.ts';

/** Round trip to the agent; the result is its clock when it answered (epoch ms). */
export const pingRequest = defineRequest('ping', {
  params: lazySchema(() => z.strictObject({})),
  result: lazySchema(() =>
    z.strictObject({ agentTime: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER) }),
  ),
  timeoutMs: 10_000,
  since: BASELINE_AGENT_VERSION,
});
