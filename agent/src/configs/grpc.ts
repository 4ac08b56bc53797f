// A minimal gRPC unary client over node:http2 with hand-encoded protobuf: enough for v2ray's
// HandlerService (AlterInbound) and StatsService (QueryStats) on its loopback API port, without
// pulling @grpc/grpc-js and a .proto toolchain into the agent. Messages are built with `pb`
// (field number + value) and read with `readFields`.
import { connect, constants } from 'node:http2';

/** A protobuf field value: string/bytes (length-delimited), varint, or an embedded message. */
export type PbValue = string | Uint8Array | number | bigint | boolean | PbField[];
export type PbField = [field: number, value: PbValue];

function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** Encodes fields into protobuf bytes (proto3: zero/empty values are left out). */
export function pb(fields: PbField[]): Buffer {
  const parts: Buffer[] = [];
  for (const [no, value] of fields) {
    if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
      const n = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
      if (n === 0n) continue;
      parts.push(Buffer.from([...varint(BigInt(no << 3)), ...varint(n)]));
      continue;
    }
    const bytes = Array.isArray(value)
      ? pb(value)
      : typeof value === 'string'
        ? Buffer.from(value, 'utf8')
        : Buffer.from(value);
    if (bytes.length === 0 && !Array.isArray(value)) continue;
    parts.push(Buffer.from([...varint(BigInt((no << 3) | 2)), ...varint(BigInt(bytes.length))]), bytes);
  }
  return Buffer.concat(parts);
}

/** Reads the fields of a protobuf message: field number -> raw values (varints as bigint, the rest as bytes). */
export function readFields(buf: Uint8Array): Map<number, (bigint | Buffer)[]> {
  const out = new Map<number, (bigint | Buffer)[]>();
  let i = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf varint');
      const b = buf[i++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('protobuf varint too long');
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const no = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value: bigint | Buffer;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const len = Number(readVarint());
      if (i + len > buf.length) throw new Error('truncated protobuf field');
      value = Buffer.from(buf.subarray(i, i + len));
      i += len;
    } else if (wire === 1) {
      value = Buffer.from(buf.subarray(i, i + 8));
      i += 8;
    } else if (wire === 5) {
      value = Buffer.from(buf.subarray(i, i + 4));
      i += 4;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
    const list = out.get(no) ?? [];
    list.push(value);
    out.set(no, list);
  }
  return out;
}

/** A v2ray `TypedMessage { type = 1; value = 2 }`. */
export function typed(type: string, value: Buffer): PbField[] {
  return [
    [1, type],
    [2, value],
  ];
}

/** A gRPC connection: unary calls share one HTTP/2 session (many user changes, one connection). */
export interface GrpcConnection {
  unary(path: string, message: Buffer, timeoutMs?: number): Promise<Buffer>;
  close(): void;
}

/** Opens an HTTP/2 session to `http://host:port` for gRPC calls. */
export function openGrpc(host: string, port: number): GrpcConnection {
  const session = connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
  let broken: Error | null = null;
  session.on('error', (err) => {
    broken = err;
  });
  return {
    close: () => session.close(),
    unary: (path, message, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        if (broken) return reject(broken);
        const frame = Buffer.alloc(5 + message.length);
        frame.writeUInt8(0, 0);
        frame.writeUInt32BE(message.length, 1);
        message.copy(frame, 5);
        const req = session.request({
          [constants.HTTP2_HEADER_METHOD]: 'POST',
          [constants.HTTP2_HEADER_PATH]: path,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        const timer = setTimeout(() => {
          req.close();
          reject(new Error(`gRPC ${path} timed out`));
        }, timeoutMs);
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let statusMessage = '';
        req.on('response', (headers) => {
          if (headers['grpc-status'] !== undefined) {
            status = String(headers['grpc-status']);
            statusMessage = decodeURIComponent(String(headers['grpc-message'] ?? ''));
          }
        });
        req.on('trailers', (trailers) => {
          status = String(trailers['grpc-status'] ?? status ?? '');
          statusMessage = decodeURIComponent(String(trailers['grpc-message'] ?? statusMessage));
        });
        req.on('data', (d: Buffer) => chunks.push(d));
        req.on('error', (err) => {
          clearTimeout(timer);
          reject(broken ?? err);
        });
        req.on('end', () => {
          clearTimeout(timer);
          if (status !== '0') {
            reject(new Error(`gRPC ${path} failed: status ${status ?? 'none'} ${statusMessage}`.trim()));
            return;
          }
          const body = Buffer.concat(chunks);
          if (body.length < 5) return resolve(Buffer.alloc(0));
          resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
        });
        req.end(frame);
      }),
  };
}

/**
 * One gRPC unary call to `http://host:port` `path` (`/package.Service/Method`) on its own
 * connection; resolves with the response message bytes, rejects with the grpc-status message.
 */
export async function grpcUnary(
  host: string,
  port: number,
  path: string,
  message: Buffer,
  timeoutMs = 5_000,
): Promise<Buffer> {
  const c = openGrpc(host, port);
  try {
    return await c.unary(path, message, timeoutMs);
  } finally {
    c.close();
  }
}
