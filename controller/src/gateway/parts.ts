// Large request params and results on the controller's end of the link (protocol 3, see
// shared/src/parts.ts): params too large for a frame header go after it in `part` frames, taking
// turns with stream and channel data on the session's fair scheduler; a result an agent announces
// with `size` is gathered from its parts against a per-session and a per-process byte budget and
// handed to the request broker whole. Agents are untrusted: a part out of order closes the session,
// a result over the bounds fails its request with `request.too_large`.
import {
  closeCodes,
  INLINE_PAYLOAD_BYTES,
  KeelError,
  MAX_PAYLOAD_BYTES,
  PART_BYTES,
  PartAssembler,
  PartBudget,
  parsePayload,
  partsOf,
  PARTS_PROTOCOL_VERSION,
  schedulerFor,
  type PartFrame,
  type RequestFrame,
  type ResponseFrame,
} from '@keel/shared';
import type { RequestBroker } from './requests.ts';
import type { AgentSession } from './session.ts';

/** Result bytes gathered at once from one agent (two values of the largest size). */
const SESSION_BUDGET_BYTES = 2 * MAX_PAYLOAD_BYTES;
/** Result bytes gathered at once from all agents on this controller. */
const PROCESS_BUDGET_BYTES = 256 * 1024 * 1024;
const processBudget = new PartBudget(PROCESS_BUDGET_BYTES);
const gathering = new WeakMap<AgentSession, PartAssembler>();

/** JSON of frozen arrays met in params (a users list pushed to 20 nodes is encoded once). */
const frozenJson = new WeakMap<object, string>();
/**
 * The JSON of request params. A frozen array at the top level of params (a validated users list,
 * `checkedUserList`) is encoded once and spliced into every request that carries it.
 */
export function encodeParams(params: unknown): Buffer {
  let text: string;
  if (params && typeof params === 'object' && !Array.isArray(params)) {
    const spliced: [string, string][] = [];
    const shallow: Record<string, unknown> = { ...(params as Record<string, unknown>) };
    for (const [key, value] of Object.entries(shallow)) {
      if (!Array.isArray(value) || !Object.isFrozen(value) || value.length < 100) continue;
      let json = frozenJson.get(value);
      if (json === undefined) frozenJson.set(value, (json = JSON.stringify(value)));
      const mark = `\u0000keel-splice-${spliced.length}\u0000`;
      shallow[key] = mark;
      spliced.push([JSON.stringify(mark), json]);
    }
    text = JSON.stringify(shallow);
    for (const [mark, json] of spliced) text = text.replace(mark, () => json);
  } else {
    text = JSON.stringify(params ?? null);
  }
  return Buffer.from(text, 'utf8');
}

/**
 * Checks request params against the documented limit (before they are validated: validating a
 * value far over it would hold the event loop). Throws `request.too_large` over MAX_PAYLOAD_BYTES.
 */
export function checkParamsSize(method: string, params: unknown): void {
  const bytes = encodeParams(params).length;
  if (bytes > MAX_PAYLOAD_BYTES) {
    throw new KeelError(
      'request.too_large',
      `The params of ${method} are ${mib(bytes)} of JSON; a request carries at most ${mib(MAX_PAYLOAD_BYTES)}.`,
    );
  }
}

/**
 * Sends a request frame on a ready session: in its header when the params are small, else the
 * header with `size` and then the params' JSON in parts. Throws `request.too_large` when the agent
 * speaks a protocol before parts and the params do not fit a header.
 */
export function sendRequest(s: AgentSession, frame: RequestFrame): void {
  const json = encodeParams(frame.params);
  if (json.length <= INLINE_PAYLOAD_BYTES) {
    s.channel.send(frame);
    return;
  }
  if (s.channel.session.version < PARTS_PROTOCOL_VERSION) {
    throw new KeelError(
      'request.too_large',
      `The params of ${frame.method} are ${mib(json.length)}; this agent speaks protocol ${s.channel.session.version}, which carries at most ${mib(INLINE_PAYLOAD_BYTES)} (upgrade the agent).`,
    );
  }
  const scheduler = schedulerFor(s.channel);
  // The header's own params are null: they follow in parts.
  scheduler.sendNow({ ...frame, params: null, size: json.length });
  const parts = partsOf(frame.id, json, PART_BYTES);
  const lane = scheduler.lane(() => {
    if (s.ended) return null;
    const next = parts.next();
    if (next.done) {
      lane.remove();
      return null;
    }
    return next.value;
  });
  lane.wake();
}

function gatherOf(s: AgentSession): PartAssembler {
  let g = gathering.get(s);
  if (!g) {
    g = new PartAssembler(new PartBudget(SESSION_BUDGET_BYTES), processBudget);
    gathering.set(s, g);
  }
  return g;
}

/** A `res` header from an agent: an answer now, or the start of a result that comes in parts. */
export function onResponseHeader(s: AgentSession, frame: ResponseFrame, broker: RequestBroker): void {
  const hostId = s.hostId!;
  if (!frame.ok || frame.size === undefined) return broker.onResponse(hostId, frame);
  if (!broker.awaits(hostId, frame.id)) return; // its parts are dropped as unknown
  if (!gatherOf(s).begin(frame.id, frame.size)) {
    broker.onResponse(hostId, {
      type: 'res',
      id: frame.id,
      ok: false,
      error: {
        code: 'request.too_large',
        message: `The agent's answer is ${mib(frame.size)}; the controller takes at most ${mib(MAX_PAYLOAD_BYTES)} per answer and ${mib(SESSION_BUDGET_BYTES)} per agent at once.`,
      },
    });
  }
}

/** A `part` of a result from an agent. */
export function onResultPart(s: AgentSession, frame: PartFrame, body: Buffer, broker: RequestBroker): void {
  const out = gatherOf(s).add(frame.id, frame.offset, body);
  if (out.kind === 'bad') return s.channel.fail(closeCodes.malformed, out.reason);
  if (out.kind !== 'done') return;
  const parsed = parsePayload(out.json);
  broker.onResponse(
    s.hostId!,
    parsed.ok
      ? { type: 'res', id: frame.id, ok: true, result: parsed.value }
      : {
          type: 'res',
          id: frame.id,
          ok: false,
          error: { code: 'agent.bad_result', message: 'The agent answered with parts that are not JSON.' },
        },
  );
}

/** Gives up on what a session's agent was still sending (the session ended). */
export function dropParts(s: AgentSession): void {
  gathering.get(s)?.dropAll();
  gathering.delete(s);
}

/** Result bytes being gathered on this controller now (for tests and /metrics). */
export function partBytesGathering(): number {
  return processBudget.used;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
