// Large request params and results on the agent's end of the link (protocol 3, see
// shared/src/parts.ts): a request whose header declares `size` is held until its params arrive in
// `part` frames (gathered against a byte budget), then served like any other; a result too large
// for a frame header goes as the header with `size` and then its JSON in parts, taking turns with
// stream and channel data on the session's fair scheduler, each part under half the controller's
// frame maximum.
import {
  closeCodes,
  MAX_PAYLOAD_BYTES,
  PartAssembler,
  PartBudget,
  partBytesFor,
  parsePayload,
  partsOf,
  PARTS_PROTOCOL_VERSION,
  schedulerFor,
  type PartFrame,
  type RequestFrame,
  type ResponseFrame,
  type SealedChannel,
} from '@keel/shared';
import { MAX_INLINE_RESULT_JSON } from './requests.ts';

/** Params bytes gathered at once on this agent (two requests of the largest size). */
const BUDGET_BYTES = 2 * MAX_PAYLOAD_BYTES;

interface SessionParts {
  gather: PartAssembler;
  /** Request headers whose params are still arriving, by id. */
  waiting: Map<string, RequestFrame>;
  /** Bytes of JSON per part this session's controller takes. */
  partBytes: number;
}

/** Per-session gathering of request params and the frame limit for result parts. */
export class LinkParts {
  #budget = new PartBudget(BUDGET_BYTES);
  #sessions = new WeakMap<SealedChannel, SessionParts>();

  #of(channel: SealedChannel): SessionParts {
    let s = this.#sessions.get(channel);
    if (!s) {
      s = { gather: new PartAssembler(this.#budget), waiting: new Map(), partBytes: partBytesFor(65_536) };
      this.#sessions.set(channel, s);
    }
    return s;
  }

  /** The session's welcome named the controller's frame maximum: result parts stay under half. */
  welcome(channel: SealedChannel, maxFrameBytes: number): void {
    this.#of(channel).partBytes = partBytesFor(maxFrameBytes);
  }

  /** Largest result JSON this session carries. */
  maxResultBytes(channel: SealedChannel): number {
    return channel.session.version >= PARTS_PROTOCOL_VERSION ? MAX_PAYLOAD_BYTES : MAX_INLINE_RESULT_JSON;
  }

  /** A request header: served at once, or held until its params' parts are in. */
  onRequest(channel: SealedChannel, frame: RequestFrame, serve: (frame: RequestFrame) => void): void {
    if (frame.size === undefined) return serve(frame);
    const s = this.#of(channel);
    if (!s.gather.begin(frame.id, frame.size)) {
      channel.send({
        type: 'res',
        id: frame.id,
        ok: false,
        error: {
          code: 'request.too_large',
          message: `params of ${frame.size} bytes do not fit what this agent gathers at once (${BUDGET_BYTES} bytes)`,
        },
      });
      return;
    }
    s.waiting.set(frame.id, frame);
  }

  /** A part of a request's params. */
  onPart(channel: SealedChannel, part: PartFrame, body: Buffer, serve: (frame: RequestFrame) => void): void {
    const s = this.#of(channel);
    const out = s.gather.add(part.id, part.offset, body);
    if (out.kind === 'unknown') return;
    if (out.kind === 'bad') {
      s.waiting.delete(part.id);
      return channel.fail(closeCodes.malformed, out.reason);
    }
    if (out.kind === 'more') return;
    const header = s.waiting.get(part.id);
    s.waiting.delete(part.id);
    if (!header) return;
    const parsed = parsePayload(out.json);
    if (!parsed.ok)
      return channel.fail(closeCodes.malformed, `params of ${part.id.slice(0, 64)} are not JSON`);
    const { size: _size, ...rest } = header;
    serve({ ...rest, params: parsed.value });
  }

  /** Sends an answer: in its header, or the header with `size` and the result's JSON in parts. */
  respond(channel: SealedChannel, answer: { frame: ResponseFrame; json: Buffer | null }): void {
    if (!answer.json || !answer.frame.ok || channel.session.version < PARTS_PROTOCOL_VERSION) {
      channel.send(answer.frame);
      return;
    }
    const scheduler = schedulerFor(channel);
    // The header's own result is null: it follows in parts.
    scheduler.sendNow({ ...answer.frame, result: null, size: answer.json.length });
    const parts = partsOf(answer.frame.id, answer.json, this.#of(channel).partBytes);
    const lane = scheduler.lane(() => {
      const next = channel.closed ? null : parts.next();
      if (!next || next.done) {
        lane.remove();
        return null;
      }
      return next.value;
    });
    lane.wake();
  }

  /** The session ended: what was being gathered is dropped. */
  end(channel: SealedChannel): void {
    const s = this.#sessions.get(channel);
    if (!s) return;
    s.gather.dropAll();
    s.waiting.clear();
    this.#sessions.delete(channel);
  }

  /** Params bytes being gathered now (tests). */
  get gatheringBytes(): number {
    return this.#budget.used;
  }
}
