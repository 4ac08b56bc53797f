// The jobs capability: the `job.run` channel runs one command for a run-on-many job or a scheduled
// job and streams its output back as records (shared/src/messages/jobs.ts). The command is an argv
// array (no shell unless the user names one), started as the leader of its own process group with
// stdin on /dev/null. Its whole group is killed when the channel ends from the controller's side
// (a cancel, the controller's own timeout, the link dropping) or at `timeoutSeconds`. Output is
// bounded: each stream sends at most `maxOutputBytes`, then a truncation record, and what comes
// after is read and dropped so the command never blocks on a full pipe. The pipes are read only
// as fast as the channel's credit allows up to the cap, so a slow controller slows the command.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  encodeJobOutput,
  encodeJobTruncated,
  jobRunChannel,
  type ChannelEnd,
  type JobRunChannelParams,
} from '@keel/shared';
import type { Logger } from 'pino';
import type { AgentCapability } from '../capabilities.ts';
import type { ChannelHandler, ChannelPort, ChannelSession } from '../channels/hub.ts';

const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME'];
/** How long a group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2_000;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
}

/** uid, primary gid and home of a user, or an error message. */
function userAccount(user: string): { uid: number; gid: number; home: string } | string {
  if (process.getuid?.() !== 0) return `running a job as ${user} needs the agent to run as root`;
  let entry = '';
  try {
    entry = execFileSync('getent', ['passwd', user], { encoding: 'utf8' });
  } catch {
    return `no user named ${user} on this host`;
  }
  const [, , uid, gid, , home] = entry.trim().split(':');
  if (!uid || !gid) return `no user named ${user} on this host`;
  return { uid: Number(uid), gid: Number(gid), home: home && existsSync(home) ? home : '/' };
}

/** Opens one job run: spawns, pumps output under credit, ends with the exit. */
function openJobRun(port: ChannelPort, params: JobRunChannelParams, log?: Logger): ChannelSession {
  const account = params.user === undefined ? null : userAccount(params.user);
  if (typeof account === 'string') {
    port.close({ reason: account, code: 'job.spawn_failed' });
    return {};
  }
  const env: Record<string, string> = {};
  for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
  if (account) Object.assign(env, { USER: params.user, LOGNAME: params.user, HOME: account.home });
  Object.assign(env, params.env);
  const [file, ...args] = params.argv as [string, ...string[]];
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      cwd: params.cwd ?? (account ? account.home : (process.env.HOME ?? '/')),
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    });
  } catch (err) {
    port.close({ reason: `could not start ${file}: ${(err as Error).message}`, code: 'job.spawn_failed' });
    return {};
  }
  const pid = child.pid;
  let finished = false;
  let timedOut = false;
  let killTimer: NodeJS.Timeout | null = null;
  const stopGroup = () => {
    if (pid === undefined) return;
    killGroup(pid, 'SIGTERM');
    killGroup(pid, 'SIGCONT');
    killTimer ??= setTimeout(() => killGroup(pid, 'SIGKILL'), KILL_GRACE_MS);
    killTimer.unref();
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stopGroup();
  }, params.timeoutSeconds * 1000);
  timer.unref();

  /** Pumps one stream into the channel under credit, up to the cap, then drains it. */
  const pump = (stream: 'stdout' | 'stderr', readable: NodeJS.ReadableStream | null) =>
    new Promise<void>((resolve) => {
      if (!readable) return resolve();
      let sent = 0;
      let capped = false;
      readable.on('data', (chunk: Buffer) => {
        if (capped || port.closed) return;
        const room = params.maxOutputBytes - sent;
        const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
        sent += piece.length;
        let bytes = piece.length ? encodeJobOutput(stream, piece) : Buffer.alloc(0);
        if (piece.length < chunk.length) {
          capped = true;
          bytes = Buffer.concat([bytes, encodeJobTruncated(stream)]);
        }
        readable.pause();
        port.write(bytes).then(
          () => readable.resume(),
          () => readable.resume(),
        );
      });
      readable.on('end', () => resolve());
      readable.on('error', () => resolve());
    });

  let spawnError: Error | null = null;
  child.once('error', (err) => (spawnError = err));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  void Promise.all([pump('stdout', child.stdout), pump('stderr', child.stderr), exited]).then(
    ([, , { code, signal }]) => {
      finished = true;
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      // What the command left behind in its group (a daemonised child) goes with it.
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      if (port.closed) return;
      let end: ChannelEnd;
      if (spawnError)
        end = { reason: `could not start ${file}: ${spawnError.message}`, code: 'job.spawn_failed' };
      else if (timedOut)
        end = {
          reason: `timed out after ${params.timeoutSeconds} s; its process group was killed`,
          code: 'job.timeout',
          exitCode: -1,
        };
      else if (code !== null) end = { reason: `exited with ${code}`, exitCode: code };
      else end = { reason: `killed by ${signal ?? 'a signal'}`, exitCode: -1 };
      port.close(end);
    },
  );
  log?.debug({ pid, argv0: file }, 'job started');
  return {
    onClose() {
      clearTimeout(timer);
      // Cancelled, or the controller or the link went away: the whole group goes.
      if (!finished) stopGroup();
    },
  };
}

/** The job.run channel handler. */
export function jobRunChannelHandler(log?: Logger): ChannelHandler<JobRunChannelParams> {
  return { definition: jobRunChannel, open: (port, params) => openJobRun(port, params, log) };
}

/** The jobs capability: the `job.run` channel. */
export function jobsCapability(opts: { log?: Logger } = {}): AgentCapability {
  return {
    name: 'jobs',
    channels: { [jobRunChannel.kind]: jobRunChannelHandler(opts.log) as ChannelHandler },
  };
}
