// Plugs channels into the agent gateway: the chan.* frames from agents go to the hub through the
// gateway's frame router, every agent session gets a fair send scheduler for its channel data
// (control frames first, then channels in turn), and a session that ends ends its channels.
import { schedulerFor } from '@keel/shared';
import type { AgentSession, Gateway } from '../gateway/index.ts';
import type { AgentChannelLink, ChannelHub } from './hub.ts';

const links = new WeakMap<AgentSession, AgentChannelLink>();

/** The channel link of an agent session (made on first use, one per session). */
export function channelLinkOf(session: AgentSession): AgentChannelLink {
  let link = links.get(session);
  if (!link) {
    const scheduler = schedulerFor(session.channel);
    link = {
      hostId: session.hostId!,
      channelKinds: session.capabilities?.channels ?? null,
      sendNow: (frame) => scheduler.sendNow(frame),
      lane: (pull) => scheduler.lane(pull),
    };
    links.set(session, link);
  }
  return link;
}

/** Registers the channel frames on the gateway and ends channels with their sessions. */
export function wireChannels(gateway: Gateway, hub: ChannelHub): void {
  for (const type of ['chan.opened', 'chan.data', 'chan.credit', 'chan.close'] as const) {
    gateway.router.register(type, (frame, body, session) =>
      hub.onAgentFrame(channelLinkOf(session), frame, body),
    );
  }
  gateway.onSessionEnded((session) => {
    const link = links.get(session);
    if (link) hub.sessionEnded(link);
  });
}

/** The hub's way to find a host's ready session on this gateway. */
export function linkForHost(gateway: Gateway): (hostId: string) => AgentChannelLink | undefined {
  return (hostId) => {
    const session = gateway.sessionOf(hostId);
    return session ? channelLinkOf(session) : undefined;
  };
}
