// The supervisor capability: serves the `process.*` requests, feeds the `logs` stream from the
// processes' output files, and opens `process.logs` live channels (the output as it is written).
// Processes outlive the agent (see supervisor.ts); stopping the capability only stops watching.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import {
  KeelError,
  LIVE_LOGS_DEFAULT_BYTES_PER_SECOND,
  logsStream,
  MAX_LOG_LINE_BYTES,
  processLogsChannel,
  processSpecSchema,
  type ProcessLogsChannelParams,
} from '@keel/shared';
import type { AgentCapability } from '../capabilities.ts';
import type { ChannelHandler, ChannelPort } from '../channels/hub.ts';
import { LiveLines } from './live-lines.ts';
import { LineSplitter, LogTailer, tailContinuously } from './log-tail.ts';
import { Supervisor } from './supervisor.ts';

/** How often the output files are read into the logs spool. */
const TAIL_MS = 200;
/** How often a live log channel looks for new output. */
const LIVE_POLL_MS = 100;
/** A live reader further behind than this skips ahead (with a marker) instead of queueing. */
const LIVE_MAX_BEHIND = 1024 * 1024;
/** The live view's pace is kept per quarter of a second (see liveTail's maxBytesPerSecond). */
const LIVE_WINDOW_MS = 250;

/** When a line ending at byte `end` of `path` was captured (LogTailer#captureTime); undefined: not known. */
export type CaptureTime = (path: string, end: number) => number | undefined;

/** The lines of one file's backlog, handed out one at a time (no object or array per line). */
class BacklogLines {
  /** The current line: `buf[start, textEnd)`, ending (its newline included) at file offset `end`. */
  start = 0;
  textEnd = 0;
  end = 0;
  /** When it was captured (±Infinity: before this agent / not yet); `t` is what the message says. */
  time = 0;
  t = 0;
  #at = 0;

  constructor(
    readonly buf: Buffer,
    /** The file offset of buf[0]. */
    readonly base: number,
    readonly path: string,
    readonly captureTime: CaptureTime,
    readonly readAt: number,
  ) {}

  /** Moves to the next whole line (cut at MAX_LOG_LINE_BYTES as LineSplitter cuts); false at the end. */
  next(): boolean {
    const buf = this.buf;
    const at = this.#at;
    const nl = buf.indexOf(10, at);
    if (nl < 0 || nl - at > MAX_LOG_LINE_BYTES) {
      if (buf.length - at < MAX_LOG_LINE_BYTES) return false;
      this.textEnd = at + MAX_LOG_LINE_BYTES;
      this.#at = this.textEnd;
    } else {
      this.textEnd = nl > at && buf[nl - 1] === 13 ? nl - 1 : nl;
      this.#at = nl + 1;
    }
    this.start = at;
    this.end = this.base + this.#at;
    const time = this.captureTime(this.path, this.end) ?? Infinity;
    this.time = time;
    this.t = Number.isFinite(time) ? time : this.readAt;
    return true;
  }

  /** The bytes after the last whole line (a line not ended yet). */
  rest(): Buffer {
    return this.buf.subarray(this.#at);
  }
}

/**
 * Sends the last `backlog` bytes of each file as one sequence in capture order: the files hold
 * raw bytes, so each line's time is when the log tailer read it (`captureTime`, the time its
 * record has in the logs stream), and lines of the same read, or not read yet, go in file order
 * (stdout first). Within a file the order is the file's. Memory: the backlogs read once (at most
 * `backlog` bytes a file, whatever the file's size). Leaves each file's state where the backlog
 * ends, a line not ended yet held in its splitter.
 */
async function sendBacklog(
  port: ChannelPort,
  state: { s: 'out' | 'err'; path: string; pos: number; splitter: LineSplitter; skipFirst: boolean }[],
  backlog: number,
  captureTime: CaptureTime,
  lines: LiveLines,
): Promise<void> {
  const now = Date.now();
  const cursors: (BacklogLines | null)[] = state.map((f) => {
    let fd: number;
    try {
      fd = openSync(f.path, 'r');
    } catch {
      return null; // not written yet
    }
    try {
      const size = fstatSync(fd).size;
      const from = Math.max(0, size - backlog);
      const buf = Buffer.allocUnsafe(size - from);
      const n = size > from ? readSync(fd, buf, 0, buf.length, from) : 0;
      f.pos = from + n;
      const c = new BacklogLines(buf.subarray(0, n), from, f.path, captureTime, now);
      // The first line of a backlog that starts inside the file is most likely cut: drop it (or,
      // not ended yet, the live part drops it).
      if (from > 0 && !c.next()) f.skipFirst = true;
      else if (c.next()) return c;
      f.splitter.scan(c.rest(), () => {}); // held for the live part, which ends it
      return null;
    } finally {
      closeSync(fd);
    }
  });
  let sent = 0;
  for (;;) {
    // The oldest line first; a tie goes to the earlier file (stdout).
    let i = -1;
    for (let j = 0; j < cursors.length; j++) {
      const c = cursors[j];
      if (c && (i < 0 || c.time < cursors[i]!.time)) i = j;
    }
    if (i < 0) break;
    const c = cursors[i]!;
    lines.begin(state[i]!.s, c.t);
    lines.add(c.buf, c.start, c.textEnd);
    sent += c.textEnd - c.start;
    if (!c.next()) {
      state[i]!.splitter.scan(c.rest(), () => {}); // held for the live part, which ends it
      cursors[i] = null;
    }
    // One write per ~256 KiB of lines, as the live part writes per read.
    if (sent >= 256 * 1024) {
      await port.write(lines.take());
      sent = 0;
    }
  }
  if (lines.count > 0) await port.write(lines.take());
}

/**
 * Tails one process's output files to a channel port as JSON lines: first the backlog (the last
 * `backlog` bytes of each, merged in capture order: see `sendBacklog`), then what they gain,
 * skipping ahead when the reader is slow.
 */
export async function liveTail(
  port: ChannelPort,
  files: { s: 'out' | 'err'; path: string }[],
  backlog: number,
  captureTime: CaptureTime = () => undefined,
  maxBytesPerSecond = LIVE_LOGS_DEFAULT_BYTES_PER_SECOND,
) {
  // The pace: at most a quarter of a second's bytes in each quarter of a second. A tail that used
  // its share waits for the next quarter; by then a faster writer is past LIVE_MAX_BEHIND, so the
  // reader gets a skip marker and the newest output, as a slow reader does.
  const share = Math.max(1, Math.floor(maxBytesPerSecond / 4));
  // Up to 256 KiB a read (a fast writer is followed in large steps), never more than a share.
  const step = Math.min(256 * 1024, share);
  // Behind by more than this, the tail skips ahead: never more than ~2 s of its pace.
  const maxBehind = Math.min(LIVE_MAX_BEHIND, 2 * maxBytesPerSecond);
  let windowEnd = Date.now() + LIVE_WINDOW_MS;
  let spent = 0;
  const state = files.map((f) => ({ ...f, pos: 0, splitter: new LineSplitter(), skipFirst: false }));
  const buf = Buffer.allocUnsafe(step);
  const lines = new LiveLines(320 * 1024);
  await sendBacklog(port, state, backlog, captureTime, lines);
  while (!port.closed) {
    let any = false;
    for (const f of state) {
      let fd: number;
      try {
        fd = openSync(f.path, 'r');
      } catch {
        continue;
      }
      try {
        const size = fstatSync(fd).size;
        if (size < f.pos) f.pos = 0;
        if (size - f.pos > maxBehind) {
          // Land one read before the end: the reader gets a full step of the newest output.
          const to = size - step;
          await port.write(Buffer.from(`${JSON.stringify({ skipped: to - f.pos })}\n`));
          f.pos = to;
          f.splitter = new LineSplitter();
          f.skipFirst = true;
        }
        const room = Math.min(step, share - spent);
        if (room <= 0) continue;
        const n = readSync(fd, buf, 0, room, f.pos);
        if (n > 0) {
          any = true;
          f.pos += n;
          // One buffer of JSON lines per read (no string or object per line: see LiveLines).
          lines.begin(f.s, Date.now());
          f.splitter.scan(buf.subarray(0, n), (src, start, end) => {
            // The first line after a jump is most likely cut: drop it.
            if (f.skipFirst) f.skipFirst = false;
            else lines.add(src, start, end);
          });
          if (lines.count > 0) await port.write(lines.take());
          spent += n;
        }
      } finally {
        closeSync(fd);
      }
    }
    const now = Date.now();
    if (now >= windowEnd) {
      windowEnd = now + LIVE_WINDOW_MS;
      spent = 0;
    } else if (spent >= share) {
      await new Promise((r) => setTimeout(r, windowEnd - now));
      windowEnd = Date.now() + LIVE_WINDOW_MS;
      spent = 0;
      continue;
    }
    if (!any) await new Promise((r) => setTimeout(r, LIVE_POLL_MS));
  }
}

/**
 * The supervisor capability.
 *
 * @example supervisorCapability({ dir: join(stateDir, 'processes') })
 */
export function supervisorCapability(opts: { dir: string }) {
  let supervisor: Supervisor | null = null;
  let stopTail: (() => void) | null = null;
  let tailer: LogTailer | null = null;
  const sup = (): Supervisor => {
    if (!supervisor) throw new KeelError('request.failed', 'the supervisor is not started');
    return supervisor;
  };

  const logsChannel: ChannelHandler<ProcessLogsChannelParams> = {
    definition: processLogsChannel,
    open(port, params) {
      const s = sup();
      const files = [
        { s: 'out' as const, path: s.outputFile(params.name, 'stdout') },
        { s: 'err' as const, path: s.outputFile(params.name, 'stderr') },
      ];
      const times: CaptureTime = (path, end) => tailer?.captureTime(path, end);
      liveTail(port, files, params.backlogBytes, times, params.maxBytesPerSecond).catch((err: unknown) => {
        port.close({ reason: `log tail failed: ${(err as Error).message}`, code: 'request.failed' });
      });
      return {};
    },
  };

  const capability = {
    name: 'supervisor',
    streams: [logsStream.name],
    channels: { [processLogsChannel.kind]: logsChannel as ChannelHandler },
    requests: {
      'process.list': () => ({ processes: sup().list() }),
      // The link validated the params; the catalogue types them as schema input, so parse again for the defaults.
      'process.apply': async ({ spec }) => ({ process: await sup().apply(processSpecSchema.parse(spec)) }),
      'process.start': async ({ name }) => ({ process: await sup().start(name) }),
      'process.stop': async ({ name }) => ({ process: await sup().stop(name) }),
      'process.restart': async ({ name }) => ({ process: await sup().restart(name) }),
      'process.kill': async ({ name }) => ({ process: await sup().kill(name) }),
      'process.remove': async ({ name }) => {
        await sup().remove(name);
        return { removed: true as const };
      },
      'process.stdin': ({ name, line }) => ({ bytes: sup().stdin(name, line) }),
    },
    async start(ctx) {
      const logTailer = new LogTailer({ dir: opts.dir, spool: ctx.stream(logsStream.name) });
      tailer = logTailer;
      supervisor = new Supervisor({ dir: opts.dir, tailer: logTailer, log: ctx.log, emit: ctx.emit });
      await supervisor.load();
      // Every TAIL_MS, and back to back while a fast writer is ahead of the tailer.
      const stop = tailContinuously(logTailer, {
        everyMs: TAIL_MS,
        onError: (err) => ctx.log.error({ err }, 'reading process output failed'),
      });
      stopTail = () => {
        stop();
        logTailer.close(); // its punch helper
      };
    },
    stop() {
      stopTail?.();
      stopTail = null;
      supervisor?.close();
    },
  } satisfies AgentCapability;
  // The running supervisor, for capabilities that run their programs under it (configs).
  return Object.assign(capability, { supervisor: (): Supervisor | null => supervisor });
}
