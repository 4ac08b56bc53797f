// The supervisor capability: serves the `process.*` requests, feeds the `logs` stream from the
// processes' output files, and opens `process.logs` live channels (the output as it is written).
// Processes outlive the agent (see supervisor.ts); stopping the capability only stops watching.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import {
  KeelError,
  logsStream,
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

/** Tails one process's two files to a channel port as JSON lines, skipping ahead when the reader is slow. */
export async function liveTail(
  port: ChannelPort,
  files: { s: 'out' | 'err'; path: string }[],
  backlog: number,
) {
  const state = files.map((f) => {
    let pos = 0;
    try {
      const fd = openSync(f.path, 'r');
      pos = Math.max(0, fstatSync(fd).size - backlog);
      closeSync(fd);
    } catch {
      // not written yet
    }
    return { ...f, pos, splitter: new LineSplitter(), skipFirst: pos > 0 };
  });
  // Up to 256 KiB a read: a fast writer is followed in large steps, skipped only when the reader lags.
  const buf = Buffer.allocUnsafe(256 * 1024);
  const lines = new LiveLines(320 * 1024);
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
        if (size - f.pos > LIVE_MAX_BEHIND) {
          // Land one read before the end: the reader gets a full step of the newest output.
          const to = size - buf.length;
          await port.write(Buffer.from(`${JSON.stringify({ skipped: to - f.pos })}\n`));
          f.pos = to;
          f.splitter = new LineSplitter();
          f.skipFirst = true;
        }
        const n = readSync(fd, buf, 0, buf.length, f.pos);
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
        }
      } finally {
        closeSync(fd);
      }
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
      liveTail(port, files, params.backlogBytes).catch((err: unknown) => {
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
      const tailer = new LogTailer({ dir: opts.dir, spool: ctx.stream(logsStream.name) });
      supervisor = new Supervisor({ dir: opts.dir, tailer, log: ctx.log, emit: ctx.emit });
      await supervisor.load();
      // Every TAIL_MS, and back to back while a fast writer is ahead of the tailer.
      const stop = tailContinuously(tailer, {
        everyMs: TAIL_MS,
        onError: (err) => ctx.log.error({ err }, 'reading process output failed'),
      });
      stopTail = () => {
        stop();
        tailer.close(); // its punch helper
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
