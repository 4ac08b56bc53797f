// Agent streams (logs, metrics, events) stored as compressed chunks of consecutive records, a
// per-stream cursor (the highest sequence stored, which is what the controller acks) and the gaps
// where an agent lost records or its numbering restarted. A row holds a block of records, never
// a single one (see DESIGN.md).
import {
  bigint,
  customType,
  integer,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { hosts } from './hosts.ts';

/**
 * Raw bytes. PGlite hands back a Uint8Array and postgres.js a Buffer; both become a Buffer view
 * (no copy). The column's storage is set to EXTERNAL in the migration (see db/generate-migrations.mjs)
 * because chunk bodies are already compressed.
 */
export const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  toDriver: (value) => value,
  fromDriver: (value) =>
    Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
});

/**
 * How a chunk's `data` is encoded (repositories/chunk-codec.ts): `lz4` for new chunks (an LZ4
 * block prefixed with its decoded size, u32 little-endian), `deflateRaw` (level 1) for chunks
 * written before it, `none` where neither made the chunk smaller.
 */
export const chunkCodec = { none: 0, deflateRaw: 1, lz4: 2 } as const;
export type ChunkCodec = (typeof chunkCodec)[keyof typeof chunkCodec];

/**
 * Why a stream has a gap. `lost`: the agent numbered records it could not deliver (its spool was
 * full, a write failed); the gap covers exactly their numbers. `restart`: the agent's numbering
 * went backwards — its spool was wiped or restored from an older copy — so the records after it
 * are a new run of the stream; the gap holds one sequence number and no record, and whatever the
 * old spool had not yet delivered is unknown.
 */
export const streamGapReason = { lost: 'lost', restart: 'restart' } as const;
export type StreamGapReason = (typeof streamGapReason)[keyof typeof streamGapReason];

export const streamChunks = pgTable(
  'stream_chunks',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    stream: text('stream').notNull(),
    firstSeq: bigint('first_seq', { mode: 'number' }).notNull(),
    lastSeq: bigint('last_seq', { mode: 'number' }).notNull(),
    count: integer('count').notNull(),
    tsFirst: timestamp('ts_first', { withTimezone: true }).notNull(),
    tsLast: timestamp('ts_last', { withTimezone: true }).notNull(),
    codec: smallint('codec').$type<ChunkCodec>().notNull(),
    /** The records in the shared batch format, encoded by `codec`. */
    data: bytea('data').notNull(),
    /**
     * `logs` chunks only: a Bloom filter of the 5-byte grams of every line's text (ASCII folded
     * to lower case), which lets a search skip a chunk that cannot hold its required literals
     * (repositories/log-grams.ts). Written by the retention job's summary pass, null until then
     * (a chunk without it is read whole). STORAGE EXTERNAL: a probe reads one byte of it.
     */
    grams: bytea('grams'),
  },
  (t) => [primaryKey({ name: 'stream_chunks_pk', columns: [t.hostId, t.stream, t.firstSeq] })],
);

export const streamCursors = pgTable(
  'stream_cursors',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    stream: text('stream').notNull(),
    /**
     * Highest sequence stored (or skipped as a gap), numbered as the agent numbers it: the ack
     * sent to the agent and the cursor in its welcome.
     */
    ackedSeq: bigint('acked_seq', { mode: 'number' }).notNull(),
    /**
     * Added to the agent's numbers to get the stored ones. 0 until the agent's numbering went
     * backwards (its spool was wiped or restored from an older copy): then the stream restarts
     * after a `restart` gap and the new records are stored after everything stored before.
     */
    seqBase: bigint('seq_base', { mode: 'number' }).notNull().default(0),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'stream_cursors_pk', columns: [t.hostId, t.stream] })],
);

export const streamGaps = pgTable(
  'stream_gaps',
  {
    hostId: uuid('host_id')
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    stream: text('stream').notNull(),
    fromSeq: bigint('from_seq', { mode: 'number' }).notNull(),
    toSeq: bigint('to_seq', { mode: 'number' }).notNull(),
    /** Why: `lost` (records the agent numbered and lost) or `restart` (see streamGapReason). */
    reason: text('reason').$type<StreamGapReason>().notNull().default('lost'),
    recordedAt: timestamp('recorded_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'stream_gaps_pk', columns: [t.hostId, t.stream, t.fromSeq] })],
);

export type StreamChunkRow = typeof streamChunks.$inferSelect;
