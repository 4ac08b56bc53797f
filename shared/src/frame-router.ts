// Dispatch of sealed session frames by `type` through a registry, used by both link ends (the
// controller's gateway and the agent's link). A new frame family plugs in with one
// `router.register(type, handler)` instead of another case in a switch; a frame with no handler
// is refused by the caller (the session closes with `unexpected`).
import type { SessionFrame } from './frames.ts';

/** Every sealed frame type. */
export type SessionFrameType = SessionFrame['type'];

/** The frame of one type. */
export type FrameOf<T extends SessionFrameType> = Extract<SessionFrame, { type: T }>;

/** Handles one frame type; `ctx` is what the link end passes (the session, the channel…). */
export type FrameHandler<T extends SessionFrameType, C> = (frame: FrameOf<T>, body: Buffer, ctx: C) => void;

/**
 * A registry of handlers by frame type.
 *
 * @example
 * const router = new FrameRouter<AgentSession>();
 * router.register('facts', (frame, _body, session) => presence.queue(session.hostId, frame.facts));
 * if (!router.dispatch(frame, body, session)) session.channel.fail(closeCodes.unexpected, '…');
 */
export class FrameRouter<C> {
  #handlers = new Map<SessionFrameType, FrameHandler<SessionFrameType, C>>();

  /** Registers the handler of `type`; a second handler for the same type is a programming error. */
  register<T extends SessionFrameType>(type: T, handler: FrameHandler<T, C>): this {
    if (this.#handlers.has(type)) throw new Error(`frame type ${type} already has a handler`);
    this.#handlers.set(type, handler as unknown as FrameHandler<SessionFrameType, C>);
    return this;
  }

  /** True when `type` has a handler. */
  has(type: string): boolean {
    return this.#handlers.has(type as SessionFrameType);
  }

  /** Frame types with a handler (for tests and docs). */
  get types(): SessionFrameType[] {
    return [...this.#handlers.keys()];
  }

  /** Runs the handler of `frame.type`; false when there is none (the caller refuses the frame). */
  dispatch(frame: SessionFrame, body: Buffer, ctx: C): boolean {
    const handler = this.#handlers.get(frame.type);
    if (!handler) return false;
    handler(frame, body, ctx);
    return true;
  }
}
