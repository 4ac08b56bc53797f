// Run-on-many jobs: the `job.run` live channel the controller opens on each target host's agent to
// run one command there, and the record format of its output. The controller is the channel's
// client (no browser socket): it stores each host's result and relays the output live.
//
// What runs is an argv array, passed to the program as is: no shell unless the user names one
// (`["/bin/sh", "-c", script]`), and never a string built from other input.
//
// Agent -> controller bytes are records: `u8 type | u16 BE length | payload`, type 1 = stdout,
// 2 = stderr, 3 = the agent stopped sending a stream because it reached `maxOutputBytes`
// (payload: u8 stream, 1 or 2). The channel ends with `chan.close`: `exitCode` 0-255 when the
// command exited, -1 with the signal in the reason when it was killed, `code: 'job.timeout'` when
// the agent killed it at `timeoutSeconds`, `code: 'job.spawn_failed'` when it could not start.
// Client -> agent bytes are ignored (the command's stdin is /dev/null).
import { z } from 'zod';
import { lazySchema } from '../definitions.ts';
import { defineChannel } from './channels.ts';
import { commandCwdSchema, commandEnvSchema, commandUserSchema, noNul } from './command.ts';

/** Output record types on a job.run channel. */
export const JOB_RECORD_STDOUT = 1;
export const JOB_RECORD_STDERR = 2;
export const JOB_RECORD_TRUNCATED = 3;
/** Largest payload of one record. */
export const JOB_RECORD_MAX_PAYLOAD = 0xffff;
/** Largest per-stream output a run may keep (and an agent sends), bytes. */
export const JOB_MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
/** Longest timeout of one command on one host. */
export const JOB_MAX_TIMEOUT_SECONDS = 24 * 3600;

/** What a job runs: argv (first element the program), optional cwd/env, as which user. */
export const jobCommandSchema = lazySchema(() =>
  z.strictObject({
    argv: z.array(noNul(65_536)).min(1).max(256),
    cwd: commandCwdSchema.optional(),
    env: commandEnvSchema.default({}),
    /** Run as this user (its uid, primary gid, HOME); needs an agent running as root. */
    user: commandUserSchema.optional(),
  }),
);
export type JobCommand = z.output<typeof jobCommandSchema>;
export type JobCommandInput = z.input<typeof jobCommandSchema>;

/** `job.run`: runs one command, streams its output, ends with its exit. */
export const jobRunChannel = defineChannel('job.run', {
  params: lazySchema(() =>
    jobCommandSchema.extend({
      timeoutSeconds: z.number().int().min(1).max(JOB_MAX_TIMEOUT_SECONDS).default(300),
      maxOutputBytes: z
        .number()
        .int()
        .min(1024)
        .max(JOB_MAX_OUTPUT_BYTES)
        .default(1024 * 1024),
    }),
  ),
});
export type JobRunChannelParams = z.output<typeof jobRunChannel.params>;

/** One output record. */
export type JobRecord =
  | { type: 'stdout' | 'stderr'; data: Buffer }
  | { type: 'truncated'; stream: 'stdout' | 'stderr' }
  | { type: 'unknown'; code: number };

/** Encodes output of one stream as records (split at JOB_RECORD_MAX_PAYLOAD). */
export function encodeJobOutput(stream: 'stdout' | 'stderr', data: Uint8Array): Buffer {
  const type = stream === 'stdout' ? JOB_RECORD_STDOUT : JOB_RECORD_STDERR;
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += JOB_RECORD_MAX_PAYLOAD) {
    const piece = data.subarray(at, at + JOB_RECORD_MAX_PAYLOAD);
    const head = Buffer.alloc(3);
    head.writeUInt8(type, 0);
    head.writeUInt16BE(piece.length, 1);
    parts.push(head, Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
  }
  return Buffer.concat(parts);
}

/** The record saying a stream reached its cap. */
export function encodeJobTruncated(stream: 'stdout' | 'stderr'): Buffer {
  return Buffer.from([JOB_RECORD_TRUNCATED, 0, 1, stream === 'stdout' ? 1 : 2]);
}

/**
 * Reads job output records from chunks that may split or merge them.
 * @example const reader = new JobRecordReader(); for (const r of reader.push(chunk)) …
 */
export class JobRecordReader {
  #pending: Buffer = Buffer.alloc(0);

  /** Feeds a chunk; returns the records it completed. */
  push(chunk: Uint8Array): JobRecord[] {
    let buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk);
    const out: JobRecord[] = [];
    while (buf.length >= 3) {
      const type = buf.readUInt8(0);
      const length = buf.readUInt16BE(1);
      if (buf.length < 3 + length) break;
      const payload = buf.subarray(3, 3 + length);
      if (type === JOB_RECORD_STDOUT) out.push({ type: 'stdout', data: Buffer.from(payload) });
      else if (type === JOB_RECORD_STDERR) out.push({ type: 'stderr', data: Buffer.from(payload) });
      else if (type === JOB_RECORD_TRUNCATED && length === 1)
        out.push({ type: 'truncated', stream: payload[0] === 2 ? 'stderr' : 'stdout' });
      else out.push({ type: 'unknown', code: type });
      buf = buf.subarray(3 + length);
    }
    this.#pending = Buffer.from(buf);
    return out;
  }
}
