// Serving one controller request on the agent: only requests the catalogue defines and this agent
// has a handler for; params validated before the handler runs (a refused value never reaches it);
// the handler's own result validated before it is sent; typed errors for everything else.
import type { Logger } from 'pino';
import {
  describeSchemaError,
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
}

/**
 * Answers one request method; throw a KeelError for a typed error. The params were validated
 * against the catalogue's schema before the call, and the result is validated before it is sent.
 */
export type RequestHandler = (params: never, ctx: RequestContext) => Promise<unknown> | unknown;

/** Largest request result, as JSON, that fits a frame header with room to spare. */
const MAX_RESULT_JSON = 200 * 1024;

/** Runs the handler of a request frame and returns the response frame to send (never throws). */
export async function serveRequest(
  frame: RequestFrame,
  handlers: Readonly<Record<string, RequestHandler>>,
  log: Logger,
): Promise<ResponseFrame> {
  const fail = (code: ErrorCode, message: string): ResponseFrame => ({
    type: 'res',
    id: frame.id,
    ok: false,
    // Bounded to the frame schema: an over-long message would make the whole frame invalid.
    error: { code, message: message.slice(0, 2000) },
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
      Promise.resolve((handler as (p: unknown, ctx: RequestContext) => unknown)(params.data, { signal })),
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
    if (JSON.stringify(value).length > MAX_RESULT_JSON) {
      return fail('request.failed', `the result of ${def.name} is too large to send`);
    }
    return { type: 'res', id: frame.id, ok: true, result: value };
  } catch (err) {
    const code = err instanceof KeelError && isErrorCode(err.code) ? err.code : 'request.failed';
    return fail(code, err instanceof Error ? err.message : String(err));
  }
}
