// The floor under the logs benchmark's durable leg (issue 8): the least work any design must do to
// keep a program's output durably in PostgreSQL as compressed chunks, with nothing of Keel's in
// between — no agent, no spool, no records or timestamps, no cursor, no gram filters. The writer's
// output is read in this process (from its output file as Keel reads it, or from a pipe as
// supervisord does) or arrives as sealed frames from a bare sender process that follows the file
// (`sealed`: the agent-controller layout, log-floor-sender.ts), is cut at line ends into 256 KiB pieces (Keel's chunk size), each piece
// LZ4-compressed on the thread pool (Keel's codec), and every ~4 MiB of pieces inserted in one
// statement into a table keyed by sequence number, committed (synchronous_commit as the server
// has it: on) before the next batch's statement; the next batch is read and compressed while one
// is being stored. Timed from the writer's first line until the last byte is committed.
//
// What this measures is the machine: the writer, one read of its output, LZ4, and PostgreSQL's
// insert and commit of the compressed bytes. Keel's durable leg does all of that plus the rest; its
// rate over this one is Keel's share of what the machine can do here.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { compress as lz4Compress } from 'lz4-napi';
import postgres from 'postgres';
import { WebSocketServer, type WebSocket } from 'ws';
import { FrameOpener } from '@keel/shared';
import { createScratchDatabase, procCpuMs, sleep, track } from './harness.ts';

/**
 * Where the floor reads the writer's output: its file, a pipe, or sealed frames from another
 * process that follows the file (bench/lib/log-floor-sender.ts: the agent's layout).
 */
export type FloorInput = 'file' | 'pipe' | 'sealed';

const PIECE = 256 * 1024;
const BATCH = 4 * 1024 * 1024;

export interface FloorResult {
  input: FloorInput;
  bytes: number;
  lines: number;
  /** From the writer's first line to the last batch committed. */
  ms: number;
  /** CPU-s of this process (read, cut, LZ4, the driver), of PostgreSQL's backend, of the writer. */
  cpu: { floor: number; sender: number | null; pg: number; writer: number };
  chunks: number;
  storedBytes: number;
}

/**
 * Runs `node writer report <legArgs…>` with its stdout into `input` and stores every byte it
 * writes, as described above. `expectBytes` is the writer's output size (every leg writes the same).
 */
export async function logFloorLeg(opts: {
  dir: string;
  writer: string;
  legArgs: readonly string[];
  expectBytes: number;
  input: FloorInput;
}): Promise<FloorResult> {
  const db = await createScratchDatabase('keel_bench_floor');
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql`create table floor_chunks (seq bigint primary key, raw_bytes int not null, data bytea not null)`;
    const [{ pid: backend }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    const report = join(opts.dir, `floor-${opts.input}.json`);
    const outFile = join(opts.dir, `floor-${opts.input}.log`);
    const cpu0 = process.cpuUsage();
    const pg0 = procCpuMs(backend);

    // Batches of pieces of complete lines, as they become readable.
    let next: () => Promise<Buffer[] | null>;
    let onStored: ((bytes: number) => void) | undefined;
    let sender: { done: Promise<{ user: number; system: number }> } | undefined;
    const startWriter = (stdout: 'pipe' | number) =>
      track(
        spawn(process.execPath, [opts.writer, report, ...opts.legArgs], {
          stdio: ['ignore', stdout, 'inherit'],
        }),
      );
    if (opts.input === 'pipe') {
      const child = startWriter('pipe');
      const parts: Buffer[] = [];
      let held = 0;
      let ended = false;
      let wake: (() => void) | null = null;
      child.stdout!.on('data', (b: Buffer) => {
        parts.push(b);
        held += b.length;
        if (held >= BATCH) child.stdout!.pause();
        wake?.();
      });
      child.stdout!.on('end', () => {
        ended = true;
        wake?.();
      });
      next = async () => {
        while (held < BATCH && !ended) await new Promise<void>((r) => (wake = r));
        wake = null;
        if (held === 0) return null;
        const all = Buffer.concat(parts);
        const cut = ended ? all.length : all.lastIndexOf(10) + 1;
        parts.length = 0;
        held = all.length - cut;
        if (held > 0) parts.push(all.subarray(cut));
        child.stdout!.resume();
        return cut > 0 ? cutPieces(all.subarray(0, cut)) : next();
      };
    } else if (opts.input === 'file') {
      const fd = openSync(outFile, 'w');
      const child = startWriter(fd);
      closeSync(fd);
      const file = await open(outFile, 'r');
      let at = 0;
      let exited = false;
      child.once('exit', () => (exited = true));
      next = async () => {
        for (;;) {
          const buf = Buffer.allocUnsafe(BATCH);
          const { bytesRead } = await file.read(buf, 0, BATCH, at);
          const cut = buf.subarray(0, bytesRead).lastIndexOf(10) + 1;
          if (cut > 0) {
            at += cut;
            return cutPieces(buf.subarray(0, cut));
          }
          if (exited && at >= opts.expectBytes) {
            await file.close();
            return null;
          }
          await sleep(20);
        }
      };
    } else {
      // The agent's layout: another process follows the file and sends sealed frames here.
      const key = randomBytes(32);
      const opener = new FrameOpener(key);
      const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
      await new Promise<void>((r) => wss.once('listening', r));
      const { port } = wss.address() as AddressInfo;
      const frames: Buffer[] = [];
      let held = 0;
      let received = 0;
      let wake: (() => void) | null = null;
      const connected = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
      const proc = track(
        spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            join(import.meta.dirname, 'log-floor-sender.ts'),
            `ws://127.0.0.1:${port}`,
            outFile,
            String(opts.expectBytes),
          ],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
            env: { ...process.env, KEEL_FLOOR_KEY: key.toString('hex') },
          },
        ),
      );
      let out = '';
      proc.stdout!.on('data', (b: Buffer) => (out += String(b)));
      sender = {
        done: new Promise((resolve, reject) =>
          proc.once('exit', (code) =>
            code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`floor sender exited ${code}`)),
          ),
        ),
      };
      const ws = await connected;
      ws.on('message', (data: Buffer) => {
        const plain = opener.open(data);
        if (!plain) throw new Error('floor frame does not open');
        frames.push(plain);
        held += plain.length;
        received += plain.length;
        wake?.();
      });
      onStored = (bytes) => ws.send(String(bytes));
      const fd = openSync(outFile, 'w');
      startWriter(fd);
      closeSync(fd);
      next = async () => {
        while (held < BATCH && received < opts.expectBytes) await new Promise<void>((r) => (wake = r));
        wake = null;
        if (held === 0) {
          wss.close();
          return null;
        }
        const batch = frames.splice(0);
        held = 0;
        return batch;
      };
    }

    let seq = 0;
    let stored = 0;
    let storedBytes = 0;
    let chunks = 0;
    let lines = 0;
    /** A batch of lines cut into pieces of at most PIECE bytes, each ended at a line's end. */
    const cutPieces = (batch: Buffer) => {
      const pieces: Buffer[] = [];
      for (let o = 0; o < batch.length;) {
        let end = Math.min(o + PIECE, batch.length);
        if (end < batch.length) end = batch.lastIndexOf(10, end - 1) + 1 || end;
        pieces.push(batch.subarray(o, end));
        o = end;
      }
      return pieces;
    };
    const prepare = async (pieces: Buffer[]) => {
      const packed = await Promise.all(pieces.map((p) => lz4Compress(p)));
      for (const p of pieces) for (let i = p.indexOf(10); i >= 0; i = p.indexOf(10, i + 1)) lines++;
      return pieces.map((p, i) => ({ seq: seq++, raw: p.length, data: packed[i]!.toString('base64') }));
    };
    let inFlight: Promise<unknown> = Promise.resolve();
    for (let batch = await next(); batch; batch = await next()) {
      const rows = await prepare(batch);
      await inFlight;
      // One parameter per chunk, decoded by the server (no array to parse), as Keel's append does.
      const values = rows.map(
        (_, i) => `($${i * 3 + 1}::bigint, $${i * 3 + 2}::int, decode($${i * 3 + 3}::text, 'base64'))`,
      );
      inFlight = sql
        .unsafe(
          `insert into floor_chunks (seq, raw_bytes, data) values ${values.join(', ')}`,
          rows.flatMap((r) => [r.seq, r.raw, r.data]),
          { prepare: true },
        )
        .then(() => {
          stored += rows.reduce((a, r) => a + r.raw, 0);
          storedBytes += rows.reduce((a, r) => a + (r.data.length * 3) / 4, 0);
          chunks += rows.length;
          onStored?.(stored);
        });
    }
    await inFlight;
    const doneAt = Date.now();
    const cpu = process.cpuUsage(cpu0);
    const pg = (procCpuMs(backend) - pg0) / 1000;
    const sent = sender ? await sender.done : null;
    const w = JSON.parse(readFileSync(report, 'utf8')) as {
      lines: number;
      bytes: number;
      t0: number;
      cpu: { user: number; system: number };
    };
    const [check] = await sql`select coalesce(sum(raw_bytes), 0)::bigint as n from floor_chunks`;
    if (Number(check!.n) !== w.bytes || stored !== w.bytes || lines !== w.lines) {
      throw new Error(`floor stored ${String(check!.n)} of ${w.bytes} bytes (${lines} of ${w.lines} lines)`);
    }
    return {
      input: opts.input,
      bytes: w.bytes,
      lines: w.lines,
      ms: doneAt - w.t0,
      cpu: {
        floor: (cpu.user + cpu.system) / 1e6,
        sender: sent ? (sent.user + sent.system) / 1e6 : null,
        pg,
        writer: (w.cpu.user + w.cpu.system) / 1e6,
      },
      chunks,
      storedBytes,
    };
  } finally {
    await sql.end();
    await db.drop();
  }
}
