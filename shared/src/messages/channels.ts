// Live channels: interactive, non-durable bytes both ways between a browser (or an API client) and
// an agent, relayed by the controller. These are the sealed frames of the agent link that carry
// them, the flow-control constants both ends use, and the channel kinds with their params.
//
// Life of a channel (ids are chosen by the controller, unique per agent session):
//   controller -> agent  chan.open   {id, kind, params}
//   agent -> controller  chan.opened {id}                  (or chan.close with the refusal)
//   either way           chan.data   {id} + binary body    (at most CHANNEL_CHUNK_BYTES)
//   either way           chan.credit {id, bytes}           (the reader consumed `bytes` more)
//   either way           chan.close  {id, reason, code?, exitCode?}
// A sender never has more than its credit in flight: it starts with CHANNEL_WINDOW_BYTES and
// gets more only as the reader consumes, so a slow reader costs each hop at most one window.
// The window is 512 KiB: under load on our 2-core machine a credit takes 10-20 ms to come back,
// and 256 KiB held one channel to ~6 MB/s there (1 MiB: ~22 MB/s). With 128 channels per agent
// session, a controller holds at most 128 MiB for one agent whose every channel has stalled readers.
import { z } from 'zod';
import { lazySchema } from '../definitions.ts';

/** Credit each side starts with for a channel, per direction, in bytes. */
export const CHANNEL_WINDOW_BYTES = 512 * 1024;
/** Largest body of one chan.data frame; a longer write is split. */
export const CHANNEL_CHUNK_BYTES = 64 * 1024;
/**
 * Least credit one chan.data frame costs, however small its body: a window then holds at most
 * window / 256 frames, so a peer sending one-byte frames cannot make a relay keep hundreds of
 * thousands of tiny buffers (each costs far more memory than its byte).
 */
export const CHANNEL_FRAME_MIN_CREDIT = 256;
/** Channels one agent session may have open at once. */
export const MAX_CHANNELS_PER_SESSION = 128;

const channelId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);
const channelKind = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/);

/** Controller -> agent: open a channel of `kind` with kind-specific params. */
export const channelOpenFrameSchema = z.strictObject({
  type: z.literal('chan.open'),
  id: channelId,
  kind: channelKind,
  params: z.unknown(),
});

/** Agent -> controller: the channel is open; data may flow. */
export const channelOpenedFrameSchema = z.strictObject({
  type: z.literal('chan.opened'),
  id: channelId,
});

/** Either way: bytes of a channel, in the frame body. */
export const channelDataFrameSchema = z.strictObject({
  type: z.literal('chan.data'),
  id: channelId,
});

/** Either way: the reader consumed `bytes` more; the sender may send that much more. */
export const channelCreditFrameSchema = z.strictObject({
  type: z.literal('chan.credit'),
  id: channelId,
  bytes: z
    .number()
    .int()
    .positive()
    .max(64 * 1024 * 1024),
});

/**
 * Either way: the channel is over. `code` is a stable error code when it ended in error (e.g.
 * `channel.refused`), `exitCode` the exit status of what ran behind it (a shell, a command).
 */
export const channelCloseFrameSchema = z.strictObject({
  type: z.literal('chan.close'),
  id: channelId,
  reason: z.string().max(500),
  code: z.string().max(64).optional(),
  exitCode: z.number().int().min(-1).max(255).optional(),
});

export type ChannelOpenFrame = z.infer<typeof channelOpenFrameSchema>;
export type ChannelOpenedFrame = z.infer<typeof channelOpenedFrameSchema>;
export type ChannelDataFrame = z.infer<typeof channelDataFrameSchema>;
export type ChannelCreditFrame = z.infer<typeof channelCreditFrameSchema>;
export type ChannelCloseFrame = z.infer<typeof channelCloseFrameSchema>;
export type ChannelFrame =
  ChannelOpenFrame | ChannelOpenedFrame | ChannelDataFrame | ChannelCreditFrame | ChannelCloseFrame;

/** How a channel ended, as every side reports it. */
export interface ChannelEnd {
  reason: string;
  code?: string;
  exitCode?: number;
}

// ---- channel kinds -------------------------------------------------------------------------

/** A channel kind: its name and the schema of the params it is opened with. */
export interface ChannelKindDefinition<P extends z.ZodType = z.ZodType> {
  kind: string;
  params: P;
}

/** Declares a channel kind once, for both the controller (validation) and the agent. */
export function defineChannel<P extends z.ZodType>(
  kind: string,
  def: { params: P },
): ChannelKindDefinition<P> {
  return { kind, params: def.params };
}

/**
 * `echo` (diagnostic capability): `echo` sends every byte back; `sink` discards what it reads and
 * closes with the count once the client closes its side; `source` sends `bytes` bytes and closes.
 * Used to measure the channel primitive before the terminal and live logs build on it.
 */
export const echoChannel = defineChannel('echo', {
  params: lazySchema(() =>
    z
      .strictObject({
        mode: z.enum(['echo', 'sink', 'source']).default('echo'),
        /** For `source`: how many bytes to send (at most 16 GiB). */
        bytes: z
          .number()
          .int()
          .nonnegative()
          .max(16 * 1024 ** 3)
          .default(0),
      })
      .default({ mode: 'echo', bytes: 0 }),
  ),
});
export type EchoChannelParams = z.infer<typeof echoChannel.params>;

// ---- the browser side ----------------------------------------------------------------------

/**
 * Text messages the controller sends to a browser on a channel WebSocket (binary messages are the
 * channel's bytes): `opened` once the agent accepted, `close` just before the socket closes.
 */
export const channelClientMessageSchema = lazySchema(() =>
  z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('opened'), id: channelId }),
    z.strictObject({
      type: z.literal('close'),
      reason: z.string().max(500),
      code: z.string().max(64).optional(),
      exitCode: z.number().int().optional(),
    }),
  ]),
);
export type ChannelClientMessage = z.infer<typeof channelClientMessageSchema>;

/** Close code of a channel WebSocket that ended normally or by the agent's side (see the text message). */
export const CHANNEL_WS_CLOSE_NORMAL = 1000;
/** Close code when the agent went away (link lost, host revoked). */
export const CHANNEL_WS_CLOSE_AGENT_GONE = 4502;
/** Close code when the controller is shutting down. */
export const CHANNEL_WS_CLOSE_GOING_AWAY = 1001;
/** Close code when the client broke the channel protocol (e.g. a text message). */
export const CHANNEL_WS_CLOSE_PROTOCOL = 4400;
