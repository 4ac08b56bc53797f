// Every frame of the agent channel, as schemas with their inferred types. Handshake frames are
// JSON in binary WebSocket messages; after the handshake every frame is sealed (see sealed.ts)
// and its plaintext is `u32 BE header length | JSON header | optional binary body`.
import { z } from 'zod';
import { hostFactsSchema } from './messages/facts.ts';
import { capabilitiesFrameSchema } from './messages/capabilities.ts';
import {
  channelCloseFrameSchema,
  channelCreditFrameSchema,
  channelDataFrameSchema,
  channelOpenedFrameSchema,
  channelOpenFrameSchema,
} from './messages/channels.ts';
import { partFrameSchema, payloadSizeSchema } from './parts.ts';

/**
 * Protocol versions this build speaks, newest last. 3: request params and results too large for a
 * frame header come in `part` frames (`parts.ts`); 2: the agent's first sealed frame is its
 * capabilities announcement (`messages/capabilities.ts`); 1: no announcement (agents up to 0.1.0).
 */
export const PROTOCOL_VERSIONS = [1, 2, 3] as const;

const b64u = (bytes: number) =>
  z
    .string()
    .length(Math.ceil((bytes * 4) / 3))
    .regex(/^[A-Za-z0-9_-]+$/);

// ---- handshake (pre-auth) ------------------------------------------------------------------

/** Agent -> controller, first frame. */
export const agentHelloSchema = z.strictObject({
  type: z.literal('hello'),
  versions: z.array(z.number().int().min(1).max(255)).min(1).max(16),
  mode: z.enum(['connect', 'enroll']),
  agentKey: b64u(32),
  ephemeralKey: b64u(32),
  nonce: b64u(32),
});

/** Controller -> agent, answer to hello, signed over the transcript. */
export const controllerHelloSchema = z.strictObject({
  type: z.literal('hello.controller'),
  version: z.number().int().min(1).max(255),
  controllerKey: b64u(32),
  ephemeralKey: b64u(32),
  nonce: b64u(32),
  signature: z.string().max(200),
});

/** Agent -> controller, proves the agent key over the same transcript. */
export const agentAuthSchema = z.strictObject({
  type: z.literal('auth'),
  signature: z.string().max(200),
});

/**
 * Either side, before closing during the handshake: why. From protocol 2 a refusal the agent should
 * stop on is signed by the controller key over the agent's hello (`refusalFrame` in handshake.ts).
 */
export const handshakeErrorSchema = z.strictObject({
  type: z.literal('error'),
  code: z.string().max(64),
  message: z.string().max(500),
  controllerKey: b64u(32).optional(),
  signature: z.string().max(200).optional(),
});

export type AgentHello = z.infer<typeof agentHelloSchema>;
export type ControllerHello = z.infer<typeof controllerHelloSchema>;
export type AgentAuth = z.infer<typeof agentAuthSchema>;
export type HandshakeError = z.infer<typeof handshakeErrorSchema>;

/**
 * The only frames the controller dispatches before the handshake completes, by type. Anything
 * else closes the connection. (A test asserts this table is exactly the handshake messages.)
 */
export const controllerPreAuthFrames = {
  hello: agentHelloSchema,
  auth: agentAuthSchema,
} as const;

/** The only frames the agent accepts before the handshake completes. */
export const agentPreAuthFrames = {
  'hello.controller': controllerHelloSchema,
  error: handshakeErrorSchema,
} as const;

// ---- session (sealed) ----------------------------------------------------------------------

const requestId = z.string().min(1).max(64);
const streamName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9._:-]*$/);
const seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const wireErrorSchema = z.strictObject({ code: z.string().max(64), message: z.string().max(2000) });

/** Controller -> agent: do something and answer before `timeoutMs`. */
export const requestFrameSchema = z.strictObject({
  type: z.literal('req'),
  id: requestId,
  method: z.string().min(1).max(64),
  timeoutMs: z.number().int().positive().max(86_400_000),
  params: z.unknown(),
  /** Protocol 3: the params' JSON is this many bytes, sent after this header (params null) in `part` frames. */
  size: payloadSizeSchema.optional(),
});

/** Agent -> controller: the typed result or typed error of a request. */
export const responseFrameSchema = z.discriminatedUnion('ok', [
  z.strictObject({
    type: z.literal('res'),
    id: requestId,
    ok: z.literal(true),
    result: z.unknown(),
    /** Protocol 3: the result's JSON is this many bytes, sent after this header (result null) in `part` frames. */
    size: payloadSizeSchema.optional(),
  }),
  z.strictObject({ type: z.literal('res'), id: requestId, ok: z.literal(false), error: wireErrorSchema }),
]);

/** Agent -> controller: records `firstSeq .. firstSeq+count-1` of a stream; body = records. */
export const streamDataFrameSchema = z.strictObject({
  type: z.literal('stream.data'),
  stream: streamName,
  firstSeq: seq.min(1),
  count: z.number().int().positive().max(1_000_000),
});

/** Controller -> agent: everything up to `seq` of `stream` is durably stored. */
export const streamAckFrameSchema = z.strictObject({
  type: z.literal('stream.ack'),
  stream: streamName,
  seq,
});

/** Controller -> agent, first sealed frame: who the agent is and where each stream stands. */
export const welcomeFrameSchema = z.strictObject({
  type: z.literal('welcome'),
  hostId: z.string().max(64),
  cursors: z.record(streamName, seq),
  /** Largest sealed frame the controller accepts, in bytes. */
  maxFrameBytes: z.number().int().positive(),
  /** Stream window: bytes the agent may have in flight, unacknowledged, per stream. */
  windowBytes: z.number().int().positive(),
});

/** Agent -> controller: current host facts (on connect and when they change). */
export const factsFrameSchema = z.strictObject({ type: z.literal('facts'), facts: hostFactsSchema });

/** Agent -> controller (enroll mode only): redeem a join token. */
export const enrollFrameSchema = z.strictObject({
  type: z.literal('enroll'),
  token: z.string().min(1).max(256),
  name: z.string().max(255).optional(),
  facts: hostFactsSchema,
});

/** Controller -> agent: enrollment accepted. */
export const enrolledFrameSchema = z.strictObject({
  type: z.literal('enrolled'),
  hostId: z.string().max(64),
});

/** Either side: a fatal error, sent just before closing. */
export const errorFrameSchema = z.strictObject({ type: z.literal('error'), error: wireErrorSchema });

/** Every sealed frame, one discriminated union on `type`. */
export const sessionFrameSchema = z.discriminatedUnion('type', [
  requestFrameSchema,
  responseFrameSchema,
  streamDataFrameSchema,
  streamAckFrameSchema,
  welcomeFrameSchema,
  factsFrameSchema,
  enrollFrameSchema,
  enrolledFrameSchema,
  errorFrameSchema,
  capabilitiesFrameSchema,
  channelOpenFrameSchema,
  channelOpenedFrameSchema,
  channelDataFrameSchema,
  channelCreditFrameSchema,
  channelCloseFrameSchema,
  partFrameSchema,
]);

export type RequestFrame = z.infer<typeof requestFrameSchema>;
export type ResponseFrame = z.infer<typeof responseFrameSchema>;
export type StreamDataFrame = z.infer<typeof streamDataFrameSchema>;
export type StreamAckFrame = z.infer<typeof streamAckFrameSchema>;
export type WelcomeFrame = z.infer<typeof welcomeFrameSchema>;
export type FactsFrame = z.infer<typeof factsFrameSchema>;
export type EnrollFrame = z.infer<typeof enrollFrameSchema>;
export type EnrolledFrame = z.infer<typeof enrolledFrameSchema>;
export type ErrorFrame = z.infer<typeof errorFrameSchema>;
export type SessionFrame = z.infer<typeof sessionFrameSchema>;

/** Frames that carry a binary body after the header. */
export type BodyFrame =
  StreamDataFrame | z.infer<typeof channelDataFrameSchema> | z.infer<typeof partFrameSchema>;
