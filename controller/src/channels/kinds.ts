// The channel kinds the controller relays, each with the permission it needs and the schema of its
// params (from the shared definition). One line per kind; the permission walk test fails on a kind
// without a permission.
import { echoChannel, processLogsChannel, terminalChannel, type ChannelKindDefinition } from '@keel/shared';
import type { Permission } from '../services/access.ts';

/** A channel kind as the controller sees it. */
export interface ControllerChannelKind extends ChannelKindDefinition {
  permission: Permission;
}

/** Every channel kind, by name. */
export const channelKinds: Readonly<Record<string, ControllerChannelKind>> = {
  echo: { ...echoChannel, permission: 'channel.echo' },
  [processLogsChannel.kind]: { ...processLogsChannel, permission: 'logs.read' },
  [terminalChannel.kind]: { ...terminalChannel, permission: 'terminal.open' },
};
