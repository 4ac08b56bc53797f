// keel-agent: `enroll` redeems a join token with the controller (pinning its key), `run` keeps the
// host connected, answers requests and ships the host event stream. Exit codes: 0 clean stop,
// 1 local error (or a network error, a pin mismatch included), 2 the controller refused this agent
// in a way the agent verified (revoked, unknown key) — or, from cli.ts, a usage mistake.
import { join } from 'node:path';
import { KeelError, logFormat } from '@keel/shared';
import { loadEnrollment, loadOrCreateIdentity } from './identity/index.ts';
import { EnrollFailed, enrollHost } from './identity/enroll.ts';
import { lockStateDir, StateDirLocked } from './identity/lock.ts';
import { createLog } from './log.ts';
import { factsCapability } from './facts/capability.ts';
import {
  composeCapabilities,
  startCapabilities,
  stopCapabilities,
  type AgentCapability,
} from './capabilities.ts';
import { AgentLink, LinkClosed } from './link/connection.ts';
import { Spool } from './link/spool.ts';
import { AGENT_VERSION } from './version.ts';
import { AgentChannelHub } from './channels/hub.ts';
import { diagnosticsCapability } from './diagnostics/index.ts';
import { terminalCapability } from './terminal/index.ts';
import { jobsCapability } from './jobs/index.ts';
import { supervisorCapability } from './supervisor/index.ts';
import { metricsCapability, metricsIntervalFromEnv } from './metrics/index.ts';
import { RESTART_EXIT_CODE, upgradeCapability } from './upgrade/index.ts';
import { checksCapability } from './checks/index.ts';
import { configsCapability } from './configs/index.ts';

/** Exit codes of keel-agent. */
export const exitCodes = { ok: 0, error: 1, refused: 2 } as const;

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function intEnv(name: string, fallback: number): number {
  const raw = env(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new KeelError('request.invalid', `${name} must be a whole number, got "${raw}"`);
  return n;
}

function makeLog() {
  // The same line format as the controller's (level names, ISO time): shared/src/log-format.ts;
  // pino's lines without pino itself (log.ts: the idle agent's memory).
  return createLog({ name: 'keel-agent', level: env('KEEL_AGENT_LOG_LEVEL') ?? 'info', ...logFormat });
}

/** Redeems a join token: handshake in enroll mode, pin checked before the token is sent. */
export async function enroll(opts: {
  controllerUrl: string;
  token: string;
  pin: string;
  name?: string;
  stateDir: string;
  /** The command that starts this agent afterwards, shown on success. Default `keel-agent run`. */
  runCommand?: string;
}): Promise<number> {
  const log = makeLog();
  try {
    const hostId = await enrollHost(opts);
    log.info({ host: hostId }, 'enrolled');
    console.log(`Enrolled as host ${hostId}. Start the agent with: ${opts.runCommand ?? 'keel-agent run'}`);
    return exitCodes.ok;
  } catch (err) {
    // A state dir that cannot hold an identity is a local error, reported by cli.ts (exit 1).
    if (!(err instanceof EnrollFailed)) throw err;
    console.error(err.message);
    return err.cause instanceof LinkClosed && !err.cause.fatal ? exitCodes.error : exitCodes.refused;
  }
}

/** Stays connected until SIGTERM/SIGINT (exit 0) or until the controller refuses us (exit 2). */
export async function run(stateDir: string): Promise<number> {
  const log = makeLog();
  const enrollment = await loadEnrollment(stateDir);
  if (!enrollment) {
    console.error(`not enrolled: no enrollment in ${stateDir}; run keel-agent enroll first`);
    return exitCodes.error;
  }
  const identity = await loadOrCreateIdentity(stateDir);
  let release: () => void;
  try {
    release = await lockStateDir(stateDir);
  } catch (err) {
    if (!(err instanceof StateDirLocked)) throw err;
    console.error(`${err.message}; stop it first (or use another --state-dir)`);
    return exitCodes.error;
  }
  const events = await Spool.open({
    dir: join(stateDir, 'spool', 'events'),
    maxBytes: intEnv('KEEL_AGENT_SPOOL_BYTES', 64 * 1024 * 1024),
  });
  let emitFailures = 0;
  const emit = (kind: string, data: Record<string, unknown> = {}) => {
    try {
      events.append([{ ts: Date.now(), payload: Buffer.from(JSON.stringify({ kind, ...data })) }]);
    } catch (err) {
      // A full or failing disk must not take the agent down with it: the host stays reachable,
      // the lost event keeps its sequence number (the controller records the hole as a gap),
      // and the loss is logged with a count.
      emitFailures++;
      log.error({ err, kind, failures: emitFailures }, 'could not write an event to the spool; it is lost');
    }
  };
  // Set by an upgrade: stop as on SIGTERM, then exit 75 for the launcher to start the new release.
  let restartRequested = false;
  let requestStop = () => {};
  // The capabilities this agent serves; the link announces their union to the controller.
  const supervision = supervisorCapability({ dir: join(stateDir, 'processes') });
  const capabilities: AgentCapability[] = [
    factsCapability(),
    diagnosticsCapability(),
    terminalCapability({
      user: env('KEEL_TERMINAL_USER'),
      idleTimeoutMs: intEnv('KEEL_TERMINAL_IDLE_MINUTES', 30) * 60_000,
      log,
    }),
    supervision,
    configsCapability({ dir: join(stateDir, 'configs'), supervisor: () => supervision.supervisor() }),
    metricsCapability({
      intervalSeconds: metricsIntervalFromEnv(env('KEEL_AGENT_METRICS_INTERVAL')),
      sampler: {
        supervised: () => {
          const s = supervision.supervisor();
          return s && s.size > 0 ? s.list() : [];
        },
      },
    }),
    checksCapability({ dir: join(stateDir, 'checks') }),
    jobsCapability({ log }),
    upgradeCapability({
      stateDir,
      controllerUrl: enrollment.controllerUrl,
      home: env('KEEL_AGENT_HOME'),
      restart: () => {
        restartRequested = true;
        requestStop();
      },
    }),
  ];
  const composed = composeCapabilities(capabilities);
  // One spool per stream a capability declared, beside the events spool.
  const spools = new Map<string, Spool>([['events', events]]);
  for (const name of composed.streams) {
    spools.set(
      name,
      await Spool.open({
        dir: join(stateDir, 'spool', name),
        maxBytes: intEnv('KEEL_AGENT_SPOOL_BYTES', 64 * 1024 * 1024),
      }),
    );
  }
  const link = new AgentLink({
    controllerUrl: enrollment.controllerUrl,
    identity,
    pin: enrollment.controllerPin,
    log,
    // The host event stream belongs to the agent itself (link and capabilities emit into it).
    streams: spools,
    handlers: composed.handlers,
    onLinkEvent: ({ kind, ...rest }) => emit(kind, rest),
    heartbeatMs: intEnv('KEEL_AGENT_HEARTBEAT_MS', 5_000),
  });
  // Live channels, of the kinds the capabilities serve (today: diagnostics' echo).
  new AgentChannelHub({ kinds: composed.channels, log }).attach(link);
  await startCapabilities(capabilities, {
    log,
    emit,
    send: (frame) => link.send(frame),
    onSession: (listener) => link.onSessionReady(() => listener()),
    stream: (name) => {
      const spool = spools.get(name);
      if (!spool) throw new Error(`no spool for stream ${name}: declare it in the capability's streams`);
      return spool;
    },
  });
  emit('agent.started', { version: AGENT_VERSION, pid: process.pid });
  const timers: NodeJS.Timeout[] = [];
  const tickMs = intEnv('KEEL_AGENT_TICK_MS', 0);
  if (tickMs > 0) {
    // Diagnostics: a numbered heartbeat event, used to prove the stream loses nothing.
    let n = 0;
    timers.push(setInterval(() => emit('tick', { n: ++n }), tickMs));
  }
  let signalled: string | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = signal;
    log.info({ signal }, 'stopping');
    emit('agent.stopped', { signal });
    void link.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  requestStop = () => {
    if (signalled) return;
    signalled = 'upgrade';
    log.info('restarting into the new release');
    void link.stop();
  };
  const fatal = await link.run();
  for (const t of timers) clearInterval(t);
  await stopCapabilities(capabilities, log);
  for (const spool of spools.values()) await spool.close();
  release();
  if (fatal) {
    console.error(`the controller refused this agent: ${fatal.reason} (close code ${fatal.closeCode})`);
    return exitCodes.refused;
  }
  return restartRequested ? RESTART_EXIT_CODE : exitCodes.ok;
}
