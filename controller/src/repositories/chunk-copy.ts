// Chunk rows read by a binary COPY: `bytea` as its bytes, where a query's result carries it as
// hex text (twice the bytes on the connection, encoded by the server and decoded in JavaScript).
// On PostgreSQL the COPY goes to STDOUT (readCopy says how it keeps postgres.js's connections
// usable); on PGlite, the embedded default, into its `/dev/blob`, answered as a Blob (1 GiB of
// logs, 373 MiB of chunks: 35.5 s by query against ~2 s, 2 Dec). COPY takes no parameters, so
// its statement is written from checked values only (chunkKey, safe integers): log search pages
// (log-search.ts) and stream reads (streams.ts) use it.
import type { Readable } from 'node:stream';
import type { Sql } from 'postgres';
import type { Db } from '../db/index.ts';
import { isUuid } from '../db/errors.ts';
import { streamChunks } from '../db/schema/streams.ts';

/** A stored chunk as read: its numbering, codec (chunk-codec.ts) and bytes. */
export interface ChunkRow {
  firstSeq: number;
  count: number;
  codec: number;
  data: Buffer;
}

/** The columns of a ChunkRow, for reading the same rows by query. */
export const chunkRowColumns = {
  firstSeq: streamChunks.firstSeq,
  count: streamChunks.count,
  codec: streamChunks.codec,
  data: streamChunks.data,
};

/** Stream names Keel writes into a COPY statement (its own kinds: `logs`, `events`, …). */
const STREAM_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

/**
 * The SQL condition selecting one host's chunks of one stream, or null when either value is not
 * one a statement may hold (not a UUID; not a plain stream name).
 */
export function chunkKey(hostId: string, stream: string): string | null {
  return isUuid(hostId) && STREAM_NAME.test(stream) ? `host_id = '${hostId}' and stream = '${stream}'` : null;
}

/**
 * Reads (first_seq, count, codec, data) of the chunks meeting `where` (SQL of checked values
 * only: chunkKey and safe integers), ordered by first_seq, at most `limit`.
 */
export type ChunkCopier = (where: string, limit?: number) => Promise<ChunkRow[]>;

/** A ChunkCopier for the database under `db`, or null when its driver has no COPY to use. */
export function chunkCopier(db: Db): ChunkCopier | null {
  const statement = (where: string, limit: number | undefined, to: string) => {
    if (limit !== undefined && !Number.isSafeInteger(limit)) throw new Error('chunk copy: unexpected limit');
    return (
      `copy (select first_seq, count, codec, data from stream_chunks where ${where}` +
      ` order by first_seq${limit === undefined ? '' : ` limit ${limit}`}) to ${to} with (format binary)`
    );
  };
  const pg = postgresClient(db);
  if (pg) return async (where, limit) => parseCopyRows(await readCopy(pg, statement(where, limit, 'stdout')));
  const lite = pgliteClient(db);
  if (lite) {
    return async (where, limit) => {
      const { blob } = await lite.query(statement(where, limit, "'/dev/blob'"));
      if (!blob) throw new Error('chunk copy: the embedded database gave no COPY output');
      return parseCopyRows(Buffer.from(await blob.arrayBuffer()));
    };
  }
  return null;
}

/** The postgres.js client under a drizzle handle, or null (PGlite). */
export function postgresClient(db: Db): Sql | null {
  const client = (db as unknown as { $client?: unknown }).$client;
  return typeof client === 'function' && typeof (client as Sql).unsafe === 'function'
    ? (client as Sql)
    : null;
}

/** What this file uses of a PGlite instance: `COPY … TO '/dev/blob'` answers with the output as a Blob. */
interface PgliteCopy {
  query(text: string): Promise<{ blob?: Blob }>;
}

/** The PGlite instance under a drizzle handle, or null (postgres.js). */
function pgliteClient(db: Db): PgliteCopy | null {
  const client = (db as unknown as { $client?: unknown }).$client;
  // postgres.js's client is a function; PGlite's an object.
  return typeof client === 'object' && client !== null && typeof (client as PgliteCopy).query === 'function'
    ? (client as PgliteCopy)
    : null;
}

/**
 * The whole output of `COPY … TO STDOUT` (`text`: a statement of this file's own, never user
 * input), read on a reserved connection that is released only once the COPY has ended and the
 * connection reads again. Two ways postgres.js 3.4 leaves a connection stuck, both avoided here:
 * - a connection whose COPY output is still streaming counts as free once the query has handed
 *   over its stream (a query sent on it fails: COPY_IN_PROGRESS): so the connection is reserved,
 *   and the output is always read to its end, also when the search stopped meanwhile;
 * - it pauses the socket when a chunk of output fills the stream's buffer (16 KiB) and resumes it
 *   only from the stream's read(), which a stream never calls after its end: when the last output
 *   arrives in the same read as the end — a COPY small enough for one read, or the tail of any —
 *   and the stream is not flowing yet (it is handed over a promise later), the socket stays paused
 *   and the connection never answers again. So after the end the socket is resumed through that
 *   same read() (it resumes the socket and nothing else).
 */
export async function readCopy(client: Sql, text: string): Promise<Buffer[]> {
  const connection = await client.reserve();
  try {
    const stream = await connection.unsafe(text).readable();
    const out = await readParts(stream);
    try {
      (stream as Readable & { _read(size: number): void })._read(0);
    } catch {
      // The connection closed meanwhile: nothing to resume.
    }
    return out;
  } finally {
    connection.release();
  }
}

/**
 * A stream's output as the parts it came in (for a COPY, one part per row: views of what the
 * driver read, not copied), read in flowing mode.
 */
export function readParts(stream: Readable): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (part: Buffer) => parts.push(part));
    stream.once('end', () => resolve(parts));
    stream.once('error', reject);
  });
}

/** A stream's whole output in one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  return Buffer.concat(await readParts(stream));
}

/**
 * Parses PostgreSQL's binary COPY output of (first_seq bigint, count integer, codec smallint,
 * data bytea) rows, given whole or in the parts it arrived in. Each data is a view into a part
 * (no copy; PostgreSQL sends a row per message, so only a row split across parts is joined).
 */
export function parseCopyRows(input: Buffer | Buffer[]): ChunkRow[] {
  const parts = Array.isArray(input) ? input : [input];
  const rows: ChunkRow[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let at = 0;
  let header = false;
  const fixed = (offset: number, size: number) => {
    if (buf.readInt32BE(offset) !== size) throw new Error('unexpected COPY field');
  };
  for (const part of parts) {
    buf = at < buf.length ? Buffer.concat([buf.subarray(at), part]) : part;
    at = 0;
    for (;;) {
      if (!header) {
        // Signature (11 bytes), flags (4), header extension length (4) and the extension.
        if (buf.length - at < 19) break;
        if (buf.toString('latin1', at, at + 6) !== 'PGCOPY') throw new Error('not a binary COPY');
        const end = at + 19 + buf.readUInt32BE(at + 15);
        if (end > buf.length) break;
        at = end;
        header = true;
        continue;
      }
      if (buf.length - at < 2) break;
      const fields = buf.readInt16BE(at);
      if (fields === -1) return rows;
      if (fields !== 4) throw new Error('unexpected COPY row');
      // first_seq (4 + 8), count (4 + 4), codec (4 + 2), data's length (4).
      if (buf.length - at < 32) break;
      fixed(at + 2, 8);
      fixed(at + 14, 4);
      fixed(at + 22, 2);
      const length = buf.readInt32BE(at + 28);
      if (length < 0) throw new Error('unexpected COPY field');
      if (at + 32 + length > buf.length) break;
      rows.push({
        firstSeq: Number(buf.readBigInt64BE(at + 6)),
        count: buf.readInt32BE(at + 18),
        codec: buf.readInt16BE(at + 26),
        data: buf.subarray(at + 32, at + 32 + length),
      });
      at += 32 + length;
    }
  }
  if (!header) throw new Error('not a binary COPY');
  throw new Error('unexpected COPY field: the output ends inside a row');
}
