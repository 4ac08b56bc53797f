// The host event stream: what happened on the host and to its agent (started, link lost and
// regained, facts changed…), one JSON object `{ kind, ...fields }` per record.
import { BASELINE_AGENT_VERSION, defineStream } from '../definitions.ts';

export const eventsStream = defineStream('events', {
  codec: 'json',
  durability: 'durable',
  since: BASELINE_AGENT_VERSION,
});
