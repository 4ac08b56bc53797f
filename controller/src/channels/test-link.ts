// An agent's end of channels for tests (controller/src/channels/hub.test.ts,
// controller/src/bus/channels.test.ts): records what the hub sends. Test support only: nothing in
// the controller imports it.
import type { Lane, OutgoingFrame, SessionFrame } from '@keel/shared';
import type { AgentChannelLink } from './hub.ts';

/**
 * An agent link for `hostId` that records control frames and pulls data frames as soon as a lane
 * wakes.
 * @example const agent = recordingLink('h1'); hub = new ChannelHub({ log, linkFor: () => agent.link });
 */
export function recordingLink(hostId: string) {
  const control: SessionFrame[] = [];
  const data: OutgoingFrame[] = [];
  const link: AgentChannelLink = {
    hostId,
    channelKinds: ['echo'],
    sendNow: (frame) => control.push(frame),
    lane(pull): Lane {
      let removed = false;
      return {
        wake: () => {
          for (let out = pull(); out && !removed; out = pull()) data.push(out);
        },
        remove: () => (removed = true),
      };
    },
  };
  return { link, control, data };
}
