// Large request params and results (protocol 3): a `req` or `res` frame whose JSON value is larger
// than fits a frame header comes as the header with `size` (bytes of the value's JSON) and a null value,
// then `part` frames in order, each carrying the next bytes of that JSON in its body, under the hard
// frame maximum. The receiver gathers the parts against the declared size and a byte budget, and
// hands the whole frame on once the last part is in. A value is at most MAX_PAYLOAD_BYTES. See
// docs/protocol.md, "Large params and results".
import { z } from 'zod';

/** Largest request params or result, as JSON bytes (16 MiB). Larger fails with `request.too_large`. */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** Params or results up to this many JSON bytes ride in the frame header, as in protocol 2. */
export const INLINE_PAYLOAD_BYTES = 128 * 1024;
/** Bytes of JSON per `part` frame (at most half the peer's frame maximum). */
export const PART_BYTES = 256 * 1024;
/** The first protocol version that carries large params and results in parts. */
export const PARTS_PROTOCOL_VERSION = 3;

/** Either side: the next bytes of a request's params (controller) or result (agent); body = bytes. */
export const partFrameSchema = z.strictObject({
  type: z.literal('part'),
  id: z.string().min(1).max(64),
  /** Where the body starts in the value's JSON; parts come in order, so it is the bytes so far. */
  offset: z.number().int().nonnegative().max(MAX_PAYLOAD_BYTES),
});
export type PartFrame = z.infer<typeof partFrameSchema>;

/** Size of a value's JSON, to declare in a header when it is too large to inline. */
export const payloadSizeSchema = z.number().int().positive().max(MAX_PAYLOAD_BYTES);

/** The part frames that carry `json` after its header, `chunkBytes` at a time. */
export function* partsOf(
  id: string,
  json: Buffer,
  chunkBytes = PART_BYTES,
): Generator<{ frame: PartFrame; body: Buffer }> {
  const step = Math.max(1024, chunkBytes);
  for (let offset = 0; offset < json.length; offset += step) {
    yield { frame: { type: 'part', id, offset }, body: json.subarray(offset, offset + step) };
  }
}

/** Bytes of a part a peer may send: half its frame maximum, at most PART_BYTES. */
export function partBytesFor(maxFrameBytes: number): number {
  return Math.max(1024, Math.min(PART_BYTES, Math.floor(maxFrameBytes / 2)));
}

/** What adding a part did. */
export type PartOutcome =
  | { kind: 'more' }
  | { kind: 'done'; json: Buffer }
  /** A part of a value nobody is gathering (refused, finished or given up on): drop it. */
  | { kind: 'unknown' }
  /** Out of order or beyond the declared size: a protocol violation. */
  | { kind: 'bad'; reason: string };

interface Gathering {
  size: number;
  received: number;
  chunks: Buffer[];
}

/**
 * Gathers the parts of values declared in headers, bounded per value (MAX_PAYLOAD_BYTES) and in
 * total (`budgetBytes` of declared sizes at once, shared across sessions when the same budget
 * object is passed), so a peer that declares and never sends cannot grow memory past the budget.
 *
 * @example
 * const gather = new PartAssembler(new PartBudget(32 * 1024 * 1024), processBudget);
 * if (!gather.begin(id, size)) refuse(id);
 * const out = gather.add(part.id, part.offset, body); // 'done' -> JSON.parse(out.json)
 */
export class PartAssembler {
  #open = new Map<string, Gathering>();
  #budgets: PartBudget[];

  /** Every budget must have room for a value (e.g. one per session and one per process). */
  constructor(...budgets: PartBudget[]) {
    this.#budgets = budgets;
  }

  /** Values being gathered now. */
  get size(): number {
    return this.#open.size;
  }

  /** Starts gathering `size` bytes for `id`; false (nothing reserved) when over a bound. */
  begin(id: string, size: number): boolean {
    if (this.#open.has(id) || size > MAX_PAYLOAD_BYTES) return false;
    if (!this.#budgets.every((b) => b.used + size <= b.max)) return false;
    for (const b of this.#budgets) b.used += size;
    this.#open.set(id, { size, received: 0, chunks: [] });
    return true;
  }

  /** Adds the body of a part frame. */
  add(id: string, offset: number, body: Buffer): PartOutcome {
    const g = this.#open.get(id);
    if (!g) return { kind: 'unknown' };
    if (offset !== g.received || body.length === 0 || g.received + body.length > g.size) {
      this.drop(id);
      return { kind: 'bad', reason: `part of ${id.slice(0, 64)} at ${offset} does not follow ${g.received}` };
    }
    // The body is a view into the opened frame: kept as is (the frame is not reused).
    g.chunks.push(body);
    g.received += body.length;
    if (g.received < g.size) return { kind: 'more' };
    this.drop(id);
    return { kind: 'done', json: g.chunks.length === 1 ? g.chunks[0]! : Buffer.concat(g.chunks, g.size) };
  }

  /** Gives up on one value (its deadline passed, its request was settled). */
  drop(id: string): void {
    const g = this.#open.get(id);
    if (!g) return;
    this.#open.delete(id);
    for (const b of this.#budgets) b.used = Math.max(0, b.used - g.size);
  }

  /** Gives up on everything (the session ended). */
  dropAll(): void {
    for (const id of [...this.#open.keys()]) this.drop(id);
  }
}

/** Declared bytes being gathered at once, against a bound (one per process or per session). */
export class PartBudget {
  used = 0;
  constructor(readonly max: number) {}
}

/** Parses a gathered value; null when it is not JSON. */
export function parsePayload(json: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(json.toString('utf8')) as unknown };
  } catch {
    return { ok: false };
  }
}
