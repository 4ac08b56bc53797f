// Terminal session recordings. The controller relays every byte of a terminal channel, so it
// records there (an agent or a browser cannot skip it): each session becomes an asciicast v2 file
// in `<data dir>/recordings/<id>.cast` — a header line, then `[t, "o", text]` for output,
// `[t, "r", "COLSxROWS"]` for resizes and, when the input policy is on, `[t, "i", text]` for what
// was typed — and a row with host, user, start, end and exit. The file is line by line, so a
// session cut short (agent killed, browser gone, controller stopped) still plays up to its end;
// the row is ended by the channel's end, or at the next start for a controller that died.
// Start and end go to the audit log.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { KeelError, TerminalRecordReader, terminalChannel } from '@keel/shared';
import type { ChannelEnd } from '@keel/shared';
import type { ChannelTap } from '../channels/hub.ts';
import type { ChannelGrant } from '../channels/tickets.ts';
import type { RecordingRow, RecordingsRepository } from '../repositories/recordings.ts';
import { canSeeHost, requireAccess, type Actor } from './access.ts';
import type { AuditService } from './audit.ts';

/** A recording as the API shows it. */
export interface RecordingView {
  id: string;
  hostId: string;
  userId: string | null;
  kind: string;
  startedAt: string;
  endedAt: string | null;
  exitCode: number | null;
  endReason: string | null;
  cols: number;
  rows: number;
  outputBytes: number;
  inputRecorded: boolean;
}

export interface RecordingsServiceDeps {
  recordings: RecordingsRepository;
  audit: AuditService;
  /** Where the .cast files go; null: sessions are not recorded (tests of other parts). */
  dir: string | null;
  /** Record what is typed too (`KEEL_TERMINAL_RECORD_INPUT`; off by default: passwords are typed). */
  recordInput?: boolean;
  log: Logger;
  now?: () => Date;
  /**
   * Whether a user still holds terminal.open on a host. Checked every `recheckMs` for every open
   * session: a user whose role, grants or account changed is cut off.
   */
  stillAllowed?: (userId: string, hostId: string, tokenId?: string) => Promise<boolean>;
  /** Default 5 s. */
  recheckMs?: number;
  /**
   * Largest .cast file of one session, bytes (`KEEL_TERMINAL_RECORDING_MAX_BYTES`, default 64 MiB;
   * 0: no cap). Past it the recording stops with a note in the file; the session goes on.
   */
  maxBytes?: number;
  /** Recordings older than this many days are deleted by the sweep (0: kept forever). */
  retentionDays?: number;
}

/** Default cap of one recording. */
export const DEFAULT_RECORDING_MAX_BYTES = 64 * 1024 * 1024;
/** Default retention of recordings, days. */
export const DEFAULT_RECORDING_RETENTION_DAYS = 90;
const CAPPED_NOTE = ' (the recording stopped at its size cap)';

/**
 * `KEEL_TERMINAL_RECORDING_MAX_BYTES` (0 or 4096 up to 2^40; default 64 MiB) and
 * `KEEL_RECORDINGS_RETENTION_DAYS` (0-36500; default 90; 0 keeps recordings forever).
 */
export function recordingLimitsFromEnv(env: Record<string, string | undefined>): {
  maxBytes: number;
  retentionDays: number;
} {
  const read = (name: string, fallback: number, ok: (n: number) => boolean) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || !ok(n)) throw new Error(`${name} is out of range: "${raw}"`);
    return n;
  };
  return {
    maxBytes: read(
      'KEEL_TERMINAL_RECORDING_MAX_BYTES',
      DEFAULT_RECORDING_MAX_BYTES,
      (n) => n === 0 || (n >= 4096 && n <= 2 ** 40),
    ),
    retentionDays: read(
      'KEEL_RECORDINGS_RETENTION_DAYS',
      DEFAULT_RECORDING_RETENTION_DAYS,
      (n) => n >= 0 && n <= 36_500,
    ),
  };
}

export function createRecordingsService(deps: RecordingsServiceDeps) {
  const now = deps.now ?? (() => new Date());
  const { dir, log } = deps;
  if (dir) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pathOf = (id: string) => join(dir ?? '/nonexistent', `${id}.cast`);
  /** Files of sessions that ended but are still being flushed: a download waits for them. */
  const closing = new Map<string, Promise<void>>();
  /** Open sessions, for the permission re-check. */
  const live = new Map<
    string,
    { userId: string; hostId: string; tokenId?: string; end: (end: ChannelEnd) => void }
  >();
  let recheck: NodeJS.Timeout | null = null;
  const recheckAll = async () => {
    for (const [id, s] of live) {
      const allowed = await deps.stillAllowed!(s.userId, s.hostId, s.tokenId).catch((err: unknown) => {
        log.warn({ err, recording: id }, 'checking terminal.open failed; the session stays');
        return true;
      });
      if (!allowed && live.has(id)) {
        log.info(
          { recording: id, user: s.userId, host: s.hostId },
          'terminal.open withdrawn: session cut off',
        );
        s.end({
          reason: s.tokenId
            ? 'terminal.open was withdrawn from this user or the API token the session was opened with'
            : 'terminal.open was withdrawn from this user',
          code: 'auth.forbidden',
        });
      }
    }
  };
  const watch = (
    id: string,
    session: { userId: string; hostId: string; tokenId?: string; end: (end: ChannelEnd) => void },
  ) => {
    if (!deps.stillAllowed) return;
    live.set(id, session);
    recheck ??= setInterval(() => void recheckAll(), deps.recheckMs ?? 5_000);
    recheck.unref();
  };
  const unwatch = (id: string) => {
    live.delete(id);
    if (live.size === 0 && recheck) {
      clearInterval(recheck);
      recheck = null;
    }
  };

  /** Starts recording a terminal channel; the hub calls the tap with its bytes. */
  function tap(
    grant: ChannelGrant,
    channelId: string,
    endChannel?: (end: ChannelEnd) => void,
  ): ChannelTap | undefined {
    if (grant.kind !== terminalChannel.kind || !dir) return undefined;
    const parsed = terminalChannel.params.safeParse(grant.params);
    const size = parsed.success ? parsed.data : { cols: 80, rows: 24 };
    const id = randomUUID();
    const started = now();
    const t0 = performance.now();
    const inputRecorded = deps.recordInput === true;
    const file: WriteStream = createWriteStream(pathOf(id), { mode: 0o600 });
    file.on('error', (err) => log.error({ err, recording: id }, 'writing a recording failed'));
    const maxBytes = deps.maxBytes ?? DEFAULT_RECORDING_MAX_BYTES;
    let written = 0;
    let capped = false;
    // Lines of one turn of the event loop go to the file in one write (a flood of small outputs
    // would otherwise cost a file-system request each).
    let pending: string[] = [];
    let flushing: NodeJS.Immediate | null = null;
    const flush = () => {
      flushing = null;
      if (pending.length === 0) return;
      file.write(pending.join(''));
      pending = [];
    };
    const put = (text: string) => {
      pending.push(text);
      flushing ??= setImmediate(flush);
    };
    const line = (value: unknown) => {
      if (capped) return;
      const text = `${JSON.stringify(value)}\n`;
      const size = Buffer.byteLength(text);
      if (maxBytes > 0 && written + size > maxBytes) {
        // Stop here with a visible note; the session itself goes on.
        capped = true;
        put(
          `${JSON.stringify([at(), 'o', `\r\n[keel: the recording stopped here at its size cap of ${maxBytes} bytes; the session went on]\r\n`])}\n`,
        );
        log.info({ recording: id, maxBytes }, 'recording reached its size cap');
        return;
      }
      written += size;
      put(text);
    };
    const at = () => Math.round(performance.now() - t0) / 1000;
    line({
      version: 2,
      width: size.cols,
      height: size.rows,
      timestamp: Math.floor(started.getTime() / 1000),
      env: { TERM: 'xterm-256color' },
      title: `keel ${grant.hostId}`,
    });
    const output = new TextDecoder('utf-8');
    const input = new TextDecoder('utf-8');
    const reader = new TerminalRecordReader();
    let outputBytes = 0;
    const stored = deps.recordings
      .start({
        id,
        hostId: grant.hostId,
        userId: grant.userId,
        kind: grant.kind,
        startedAt: started,
        cols: size.cols,
        rows: size.rows,
        inputRecorded,
      })
      .then(() =>
        deps.audit.record(grant.userId, 'terminal.start', `host:${grant.hostId}`, {
          recording: id,
          channel: channelId,
        }),
      )
      .catch((err: unknown) => log.error({ err, recording: id }, 'storing a recording failed'));
    if (endChannel)
      watch(id, { userId: grant.userId, hostId: grant.hostId, tokenId: grant.tokenId, end: endChannel });
    return {
      toClient(bytes) {
        outputBytes += bytes.length;
        const text = output.decode(bytes, { stream: true });
        if (text) line([at(), 'o', text]);
      },
      toAgent(bytes) {
        for (const record of reader.push(bytes)) {
          if (record.type === 'resize') line([at(), 'r', `${record.cols}x${record.rows}`]);
          else if (record.type === 'input' && inputRecorded) {
            const text = input.decode(record.data, { stream: true });
            if (text) line([at(), 'i', text]);
          }
        }
      },
      ended(end) {
        unwatch(id);
        const rest = output.decode();
        if (rest) line([at(), 'o', rest]);
        if (flushing) clearImmediate(flushing);
        flush();
        const flushed = new Promise<void>((resolve) => {
          file.once('close', resolve);
          file.once('error', () => resolve());
          file.end();
        }).finally(() => closing.delete(id));
        closing.set(id, flushed);
        const exitCode = end.exitCode ?? null;
        void stored
          .then(async () => {
            await deps.recordings.finish(id, {
              endedAt: now(),
              exitCode,
              endReason: `${end.reason.slice(0, 400)}${capped ? CAPPED_NOTE : ''}`,
              outputBytes,
            });
            await deps.audit.record(grant.userId, 'terminal.end', `host:${grant.hostId}`, {
              recording: id,
              exitCode,
              reason: end.reason.slice(0, 200),
              ...(end.code ? { code: end.code } : {}),
            });
          })
          .catch((err: unknown) => log.error({ err, recording: id }, 'ending a recording failed'));
      },
    };
  }

  const view = (r: RecordingRow): RecordingView => ({
    id: r.id,
    hostId: r.hostId,
    userId: r.userId,
    kind: r.kind,
    startedAt: r.startedAt.toISOString(),
    endedAt: r.endedAt?.toISOString() ?? null,
    exitCode: r.exitCode,
    endReason: r.endReason,
    cols: r.cols,
    rows: r.rows,
    outputBytes: r.outputBytes,
    inputRecorded: r.inputRecorded,
  });

  let sweeper: NodeJS.Timeout | null = null;
  /** Deletes recordings (rows and files) that ended and started more than retentionDays before `at`. */
  async function sweep(at: Date = now()): Promise<number> {
    const days = deps.retentionDays ?? DEFAULT_RECORDING_RETENTION_DAYS;
    if (days <= 0) return 0;
    const cutoff = new Date(at.getTime() - days * 86_400_000);
    let removed = 0;
    for (;;) {
      const ids = await deps.recordings.endedBefore(cutoff, 500);
      if (ids.length === 0) break;
      for (const id of ids) await unlink(pathOf(id)).catch(() => {});
      removed += await deps.recordings.remove(ids);
      if (ids.length < 500) break;
    }
    if (removed > 0) log.info({ removed, cutoff }, 'old recordings deleted');
    return removed;
  }

  return {
    tap,
    sweep,

    /** Runs the retention sweep now and then hourly. */
    start() {
      if (sweeper || !dir) return;
      const run = () => void sweep().catch((err: unknown) => log.error({ err }, 'recordings sweep failed'));
      run();
      sweeper = setInterval(run, 3_600_000);
      sweeper.unref();
    },
    stop() {
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
    },

    /** Ends rows left open by a controller that stopped mid-session (call at start). */
    finishOrphans: () => deps.recordings.finishOrphans(now()),

    /** Recordings the actor may read (audit.read, and hosts it can see), newest first. */
    async list(actor: Actor, q: { hostId?: string; before?: Date; limit: number }): Promise<RecordingView[]> {
      requireAccess(actor, 'audit.read');
      const rows = await deps.recordings.list(q);
      return rows.filter((r) => canSeeHost(actor, r.hostId)).map(view);
    },

    /** One recording's row and its asciicast file as a stream. */
    async open(actor: Actor, id: string) {
      requireAccess(actor, 'audit.read');
      const row = await deps.recordings.get(id);
      if (!row || !canSeeHost(actor, row.hostId) || !dir) throw new KeelError('recording.not_found');
      await closing.get(id);
      const info = await stat(pathOf(id)).catch(() => null);
      if (!info) throw new KeelError('recording.not_found');
      return { recording: view(row), size: info.size, stream: () => createReadStream(pathOf(id)) };
    },
  };
}

export type RecordingsService = ReturnType<typeof createRecordingsService>;
