// The controller as a channel client: a job run opens a `job.run` channel on each target host's
// agent through the same hub that relays browser channels, with this in-process stand-in for the
// client WebSocket. The hub's flow control holds: a chunk's credit goes back to the agent only once
// `onData` has taken it (the send callback), so a run never buffers more than a window per host.
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import type { ChannelEnd } from '@keel/shared';
import type { ChannelHub } from '../channels/hub.ts';

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** One job.run channel seen from the controller. */
export interface JobChannel {
  /** Resolves when the agent accepted the channel; rejects with how it ended otherwise. */
  opened: Promise<void>;
  /** Resolves with how the channel ended (any side). */
  ended: Promise<ChannelEnd>;
  /** Ends the channel from the controller's side (cancel, timeout): the agent kills the command. */
  close(reason: string, code?: string): void;
}

/** The subset of `ws.WebSocket` the hub uses, served in-process. */
class InProcessSocket extends EventEmitter {
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;
  readyState = OPEN;
  onBinary: (chunk: Buffer) => void = () => {};
  onText: (message: { type: string } & Partial<ChannelEnd>) => void = () => {};

  send(data: Buffer | string, cb?: (err?: Error) => void): void {
    if (typeof data === 'string') {
      try {
        this.onText(JSON.parse(data) as { type: string } & Partial<ChannelEnd>);
      } catch {
        // not ours to fail on
      }
    } else this.onBinary(data);
    if (cb) setImmediate(cb);
  }
  pause(): void {}
  resume(): void {}
  close(): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.emit('close', 1000, Buffer.alloc(0));
  }
  terminate(): void {
    this.close();
  }
}

/**
 * Opens a `job.run` channel on `hostId` for `userId`; `onData` gets the agent's output chunks.
 * @example const ch = openJobChannel(hub, { userId, hostId, params }, (chunk) => reader.push(chunk));
 */
export function openJobChannel(
  hub: ChannelHub,
  grant: { userId: string; hostId: string; kind: string; params: unknown },
  onData: (chunk: Buffer) => void,
): JobChannel {
  const socket = new InProcessSocket();
  let resolveOpened!: () => void;
  let rejectOpened!: (end: ChannelEnd) => void;
  let resolveEnded!: (end: ChannelEnd) => void;
  const opened = new Promise<void>((res, rej) => {
    resolveOpened = res;
    rejectOpened = rej;
  });
  opened.catch(() => {});
  const ended = new Promise<ChannelEnd>((res) => (resolveEnded = res));
  let end: ChannelEnd | null = null;
  const finish = (e: ChannelEnd) => {
    if (end) return;
    end = e;
    rejectOpened(e);
    resolveEnded(e);
  };
  socket.onBinary = onData;
  socket.onText = (m) => {
    if (m.type === 'opened') resolveOpened();
    else if (m.type === 'close')
      finish({
        reason: m.reason ?? 'closed',
        ...(m.code ? { code: m.code } : {}),
        ...(m.exitCode !== undefined ? { exitCode: m.exitCode } : {}),
      });
  };
  hub.open({ ...grant, expiresAt: Date.now() + 30_000 }, socket as unknown as WebSocket);
  return {
    opened,
    ended,
    close(reason, code) {
      if (end) return;
      finish({ reason, ...(code ? { code } : {}) });
      socket.close();
    },
  };
}
