// Record batches: the one byte format that streams use on the wire, in the agent's spool and in
// the controller's stored chunks. Each record is `u32 BE length | f64 BE epoch-ms | payload`.

/** Bytes of header in front of every record payload. */
export const RECORD_HEADER_BYTES = 12;

/** One stream record: its payload bytes and the time it was produced (epoch ms). */
export interface StreamRecord {
  ts: number;
  payload: Uint8Array;
}

/** A run of consecutive records of one stream, starting at `firstSeq`. */
export interface RecordBatch {
  firstSeq: number;
  count: number;
  body: Buffer;
}

/** Encodes records back to back into one buffer. */
export function encodeRecords(records: readonly StreamRecord[]): Buffer {
  let size = 0;
  for (const r of records) size += RECORD_HEADER_BYTES + r.payload.byteLength;
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (const r of records) {
    out.writeUInt32BE(r.payload.byteLength, off);
    out.writeDoubleBE(r.ts, off + 4);
    out.set(r.payload, off + RECORD_HEADER_BYTES);
    off += RECORD_HEADER_BYTES + r.payload.byteLength;
  }
  return out;
}

/**
 * Walks a batch body and checks that it holds exactly `count` whole records.
 * Returns the byte offset where each record starts (plus the end), or null when malformed.
 */
export function indexRecords(body: Uint8Array, count: number): Uint32Array | null {
  const view = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const offsets = new Uint32Array(count + 1);
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + RECORD_HEADER_BYTES > view.length) return null;
    offsets[i] = off;
    off += RECORD_HEADER_BYTES + view.readUInt32BE(off);
    if (off > view.length) return null;
  }
  if (off !== view.length) return null;
  offsets[count] = off;
  return offsets;
}

/** Decodes a batch body into records; throws RangeError when the body is malformed. */
export function decodeRecords(body: Uint8Array, count?: number): StreamRecord[] {
  const view = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const out: StreamRecord[] = [];
  let off = 0;
  while (off < view.length && (count === undefined || out.length < count)) {
    if (off + RECORD_HEADER_BYTES > view.length) throw new RangeError('truncated record header');
    const len = view.readUInt32BE(off);
    const ts = view.readDoubleBE(off + 4);
    const start = off + RECORD_HEADER_BYTES;
    if (start + len > view.length) throw new RangeError('truncated record payload');
    out.push({ ts, payload: view.subarray(start, start + len) });
    off = start + len;
  }
  if (count !== undefined && out.length !== count) throw new RangeError('record count mismatch');
  return out;
}

/** Drops the first `skip` records of a batch (used to trim what a peer already has). */
export function sliceRecords(batch: RecordBatch, skip: number): RecordBatch {
  if (skip <= 0) return batch;
  if (skip >= batch.count) return { firstSeq: batch.firstSeq + batch.count, count: 0, body: Buffer.alloc(0) };
  let off = 0;
  for (let i = 0; i < skip; i++) off += RECORD_HEADER_BYTES + batch.body.readUInt32BE(off);
  return { firstSeq: batch.firstSeq + skip, count: batch.count - skip, body: batch.body.subarray(off) };
}

/** Time range of a batch body: [first record ts, last record ts]. */
export function recordTimeRange(body: Buffer, count: number): [number, number] {
  if (count === 0) return [0, 0];
  const first = body.readDoubleBE(4);
  let off = 0;
  let last = first;
  for (let i = 0; i < count; i++) {
    last = body.readDoubleBE(off + 4);
    off += RECORD_HEADER_BYTES + body.readUInt32BE(off);
  }
  return [first, last];
}
