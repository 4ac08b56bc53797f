// The terminal capability's channel: a shell on a PTY of the host, relayed to a browser or an API
// client through the controller. Agent -> client bytes are the terminal's output, as the PTY gives
// them. Client -> agent bytes are a stream of small records, because the relay may split or merge
// messages and a resize must never be taken for typed input:
//   u8 type | u16 BE length | payload
//   type 0 (input):  payload = bytes typed (at most 65,535 per record)
//   type 1 (resize): payload = u16 BE cols | u16 BE rows
// The controller reads the same records to record the session (resizes, and input by policy).
import { z } from 'zod';
import { lazySchema } from '../definitions.ts';
import { defineChannel } from './channels.ts';

/** The largest terminal: anything wider or taller is a mistake or an attack on the PTY. */
export const TERMINAL_MAX_COLS = 1000;
export const TERMINAL_MAX_ROWS = 500;

const terminalSize = () => ({
  cols: z.number().int().min(2).max(TERMINAL_MAX_COLS).default(80),
  rows: z.number().int().min(1).max(TERMINAL_MAX_ROWS).default(24),
});

/** `terminal` (terminal capability, permission `terminal.open`): a login shell on a PTY. */
export const terminalChannel = defineChannel('terminal', {
  params: lazySchema(() => z.strictObject(terminalSize()).default({ cols: 80, rows: 24 })),
});
export type TerminalChannelParams = z.infer<typeof terminalChannel.params>;

/** Record types of the client -> agent stream. */
export const TERMINAL_RECORD_INPUT = 0;
export const TERMINAL_RECORD_RESIZE = 1;
const HEADER_BYTES = 3;
const MAX_RECORD_PAYLOAD = 0xffff;

/** One client -> agent record, decoded. */
export type TerminalRecord =
  | { type: 'input'; data: Buffer }
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'unknown'; code: number };

/** Encodes typed bytes as input records (split at 65,535 bytes). Works in the browser too. */
export function encodeTerminalInput(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const records = Math.ceil(bytes.length / MAX_RECORD_PAYLOAD);
  const out = new Uint8Array(bytes.length + records * HEADER_BYTES);
  const view = new DataView(out.buffer);
  let to = 0;
  for (let at = 0; at < bytes.length; at += MAX_RECORD_PAYLOAD) {
    const piece = bytes.subarray(at, at + MAX_RECORD_PAYLOAD);
    view.setUint8(to, TERMINAL_RECORD_INPUT);
    view.setUint16(to + 1, piece.length);
    out.set(piece, to + HEADER_BYTES);
    to += HEADER_BYTES + piece.length;
  }
  return out;
}

/** Encodes a resize record. Works in the browser too. */
export function encodeTerminalResize(cols: number, rows: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + 4);
  const view = new DataView(out.buffer);
  view.setUint8(0, TERMINAL_RECORD_RESIZE);
  view.setUint16(1, 4);
  view.setUint16(3, cols);
  view.setUint16(5, rows);
  return out;
}

/**
 * Reads client -> agent records from chunks cut anywhere; keeps at most one partial record.
 * @example const reader = new TerminalRecordReader(); for (const r of reader.push(chunk)) …
 */
export class TerminalRecordReader {
  #pending: Buffer = Buffer.alloc(0);

  /** Bytes held back waiting for the rest of a record. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** Feeds a chunk; returns the records it completed. */
  push(chunk: Uint8Array): TerminalRecord[] {
    let buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk);
    const out: TerminalRecord[] = [];
    while (buf.length >= HEADER_BYTES) {
      const type = buf.readUInt8(0);
      const length = buf.readUInt16BE(1);
      if (buf.length < HEADER_BYTES + length) break;
      const payload = buf.subarray(HEADER_BYTES, HEADER_BYTES + length);
      if (type === TERMINAL_RECORD_INPUT) out.push({ type: 'input', data: payload });
      else if (type === TERMINAL_RECORD_RESIZE && length === 4) {
        out.push({
          type: 'resize',
          cols: clamp(payload.readUInt16BE(0), 2, TERMINAL_MAX_COLS),
          rows: clamp(payload.readUInt16BE(2), 1, TERMINAL_MAX_ROWS),
        });
      } else out.push({ type: 'unknown', code: type });
      buf = buf.subarray(HEADER_BYTES + length);
    }
    this.#pending = Buffer.from(buf);
    return out;
  }
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}
