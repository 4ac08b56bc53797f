// Serving one controller request on the agent: only requests the catalogue defines and this agent
// has a handler for; params validated before the handler runs (a refused value never reaches it);
// the handler's own result validated before it is sent; typed errors for everything else.
import type { Logger } from 'pino';
import {
  describeSchemaError,
  INLINE_PAYLOAD_BYTES,
  isErrorCode,
  KeelError,
  requestDefinition,
  type ErrorCode,
  type RequestFrame,
  type ResponseFrame,
} from '@keel/shared';

/** What a request handler gets beside its params. */
export interface RequestContext {
  /** Aborted at the request's deadline. */
  signal: AbortSignal;
  /**
   * Largest result, as JSON bytes, this session carries (MAX_PAYLOAD_BYTES from protocol 3, about
   * 200 KiB before): a handler with an optional bulky part (e.g. file contents) can leave it out.
   */
  maxResultBytes: number;
}

/**
 * Answers one request method; throw a KeelError for a typed error. The params were validated
 * against the catalogue's schema before the call, and the result is validated before it is sent.
 */
export type RequestHandler = (params: never, ctx: RequestContext) => Promise<unknown> | unknown;

/** Largest request result, as JSON, that fits a frame header with room to spare (protocol 1-2). */
export const MAX_INLINE_RESULT_JSON = 200 * 1024;

/** Runs the handler of a request frame and returns the response frame to send (never throws). */
export async function serveRequest(
  frame: RequestFrame,
  handlers: Readonly<Record<string, RequestHandler>>,
  log: Logger,
  opts: { maxResultBytes?: number } = {},
): Promise<ResponseFrame> {
  return (await answerRequest(frame, handlers, log, opts)).frame;
}

/**
 * Like serveRequest, and also answers the result's JSON when it is larger than a frame header
 * takes (the caller then sends the header with `size` and the JSON in parts).
 */
export async function answerRequest(
  frame: RequestFrame,
  handlers: Readonly<Record<string, RequestHandler>>,
  log: Logger,
  opts: { maxResultBytes?: number } = {},
): Promise<{ frame: ResponseFrame; json: Buffer | null }> {
  const maxResultBytes = opts.maxResultBytes ?? MAX_INLINE_RESULT_JSON;
  const fail = (code: ErrorCode, message: string) => ({
    frame: {
      type: 'res',
      id: frame.id,
      ok: false,
      // Bounded to the frame schema: an over-long message would make the whole frame invalid.
      error: { code, message: message.slice(0, 2000) },
    } satisfies ResponseFrame,
    json: null,
  });
  const def = requestDefinition(frame.method);
  const handler = def && Object.hasOwn(handlers, frame.method) ? handlers[frame.method] : undefined;
  if (!def || !handler) return fail('request.unknown_method', `unknown method ${frame.method.slice(0, 64)}`);
  const params = def.params.safeParse(frame.params);
  if (!params.success) {
    return fail('request.invalid', `bad params for ${def.name}: ${describeSchemaError(params.error)}`);
  }
  const signal = AbortSignal.timeout(frame.timeoutMs);
  try {
    const result = await Promise.race([
      Promise.resolve(
        (handler as (p: unknown, ctx: RequestContext) => unknown)(params.data, { signal, maxResultBytes }),
      ),
      new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(new KeelError('request.deadline_exceeded')), {
          once: true,
        }),
      ),
    ]);
    const checked = def.result.safeParse(result ?? null);
    if (!checked.success) {
      log.error(
        { method: def.name, why: describeSchemaError(checked.error) },
        'a request handler produced a result that does not match its schema',
      );
      return fail('request.failed', `the agent produced an invalid result for ${def.name}`);
    }
    const value: unknown = checked.data;
    const json = Buffer.from(JSON.stringify(value), 'utf8');
    if (json.length > maxResultBytes) {
      return fail(
        'request.too_large',
        `the result of ${def.name} is ${json.length} bytes of JSON; this link carries at most ${maxResultBytes}`,
      );
    }
    return {
      frame: { type: 'res', id: frame.id, ok: true, result: value },
      json: json.length > INLINE_PAYLOAD_BYTES ? json : null,
    };
  } catch (err) {
    const code = err instanceof KeelError && isErrorCode(err.code) ? err.code : 'request.failed';
    return fail(code, err instanceof Error ? err.message : String(err));
  }
}
