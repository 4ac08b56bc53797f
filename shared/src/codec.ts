// The codec of sealed-frame plaintexts and handshake frames. Decoding never throws: it returns a
// typed error that the caller turns into a close code.
import type { z } from 'zod';
import {
  sessionFrameSchema,
  type AgentAuth,
  type AgentHello,
  type ControllerHello,
  type HandshakeError,
  type SessionFrame,
} from './frames.ts';

/** Largest JSON header of a session frame. Bodies (stream data) are bounded by the frame size. */
export const MAX_HEADER_BYTES = 256 * 1024;

/** A decoded session frame and its body (empty unless the frame carries one). */
export interface DecodedFrame {
  frame: SessionFrame;
  body: Buffer;
}

/** Result of decoding untrusted bytes. */
export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Encodes a session frame plaintext: `u32 BE header length | JSON header | body`. */
export function encodeFrame(frame: SessionFrame, body?: Uint8Array): Buffer {
  const head = encodeFrameHead(frame);
  return body && body.byteLength > 0 ? Buffer.concat([head, body]) : head;
}

/**
 * The part of a session frame plaintext before its body: `u32 BE header length | JSON header`.
 * The sender seals it and the body one after the other (FrameSealer.seal(head, body)), so a
 * 64 KiB body is not copied into a joined plaintext first.
 */
export function encodeFrameHead(frame: SessionFrame): Buffer {
  const json = JSON.stringify(frame);
  const length = Buffer.byteLength(json, 'utf8');
  const out = Buffer.allocUnsafe(4 + length);
  out.writeUInt32BE(length, 0);
  out.write(json, 4, 'utf8');
  return out;
}

/** Decodes and validates a session frame plaintext. */
export function decodeFrame(plain: Buffer): DecodeResult<DecodedFrame> {
  if (plain.length < 4) return { ok: false, reason: 'frame shorter than its length prefix' };
  const headerLength = plain.readUInt32BE(0);
  if (headerLength > MAX_HEADER_BYTES || 4 + headerLength > plain.length) {
    return { ok: false, reason: 'bad header length' };
  }
  const parsed = parseJson(plain.subarray(4, 4 + headerLength));
  if (!parsed.ok) return parsed;
  const result = sessionFrameSchema.safeParse(parsed.value);
  if (!result.success) return { ok: false, reason: describeIssues(result.error) };
  const body = plain.subarray(4 + headerLength);
  const type = result.data.type;
  if (body.length > 0 && type !== 'stream.data' && type !== 'chan.data' && type !== 'part') {
    return { ok: false, reason: `frame ${result.data.type} carries no body` };
  }
  return { ok: true, value: { frame: result.data, body } };
}

/** Encodes a handshake frame (JSON). */
export function encodeHandshakeFrame(
  frame: AgentHello | ControllerHello | AgentAuth | HandshakeError,
): Buffer {
  return Buffer.from(JSON.stringify(frame), 'utf8');
}

/**
 * Decodes a handshake frame against a dispatch table of the frames allowed in this state.
 * A type outside the table is an error, whatever its content.
 */
export function decodeHandshakeFrame<T extends Record<string, z.ZodType>>(
  table: T,
  bytes: Buffer,
): DecodeResult<{ [K in keyof T]: z.infer<T[K]> }[keyof T]> {
  if (bytes.length > 4096) return { ok: false, reason: 'handshake frame too large' };
  const parsed = parseJson(bytes);
  if (!parsed.ok) return parsed;
  const type = (parsed.value as { type?: unknown } | null)?.type;
  if (typeof type !== 'string' || !Object.hasOwn(table, type)) {
    return { ok: false, reason: `frame type not allowed here: ${String(type).slice(0, 40)}` };
  }
  const schema = table[type] as z.ZodType;
  const result = schema.safeParse(parsed.value);
  if (!result.success) return { ok: false, reason: describeIssues(result.error) };
  return { ok: true, value: result.data as { [K in keyof T]: z.infer<T[K]> }[keyof T] };
}

function parseJson(bytes: Buffer): DecodeResult<unknown> {
  try {
    return { ok: true, value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
}

function describeIssues(error: z.ZodError): string {
  const first = error.issues[0];
  return first ? `${first.path.join('.') || 'frame'}: ${first.message}` : 'invalid frame';
}
