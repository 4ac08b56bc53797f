// The upgrade capability: `agent.upgrade` moves this agent to another release of itself, in the
// layout install.sh makes (`<home>/releases/<version>/` and a `current` link to one of them).
//
// 1. Download `keel-agent-<version>.tar.gz` from the controller this agent is enrolled with (the
//    request names a version, never a URL), stopping past the announced size.
// 2. Check its SHA-256 against the request's. The request arrives sealed on a session whose
//    handshake the pinned controller key signed, so the hash is as authentic as a signature by
//    that key would make it; a separate signature would add nothing (docs/deployment.md).
// 3. Unpack it beside the running release, check that it is the release asked for.
// 4. Write the trial record `<state>/upgrade/trial`, switch `current` atomically, answer, exit 75.
// The keel-agent launcher install.sh writes restarts the agent on 75 and watches the trial: a
// release that does not reach the controller before the deadline, or starts `maxStarts` times
// without doing so, is switched back to the previous one, and the record moves to
// `<state>/upgrade/rolled-back`, which the previous release reports as an event when it is back
// and keeps as `<state>/upgrade/last-rollback` (what `agent.upgrade.status` answers). While the
// controller itself does not answer, the launcher does not judge the release: it moves the
// deadline on (a good release is never switched back because the controller was away).
// The new release ends the trial after its first welcome from the controller.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, lstatSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  agentBundleFile,
  agentUpgradeEvents,
  KeelError,
  MAX_AGENT_BUNDLE_BYTES,
  type AgentRollbackRecord,
  type AgentUpgradeParams,
} from '@keel/shared';
import type { AgentCapability, CapabilityContext } from '../capabilities.ts';
import { AGENT_VERSION } from '../version.ts';

/** The exit code that asks the launcher to start the agent again, in the release `current` names. */
export const RESTART_EXIT_CODE = 75;

/** A trial or rollback record: `key=value` lines, so the launcher (POSIX sh) reads it with sed. */
export type UpgradeRecord = Record<string, string>;

export function parseRecord(text: string): UpgradeRecord {
  const out: UpgradeRecord = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

const formatRecord = (r: UpgradeRecord): string =>
  Object.entries(r)
    .map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}\n`)
    .join('');

/** Where the installed agent lives, when it runs from an installed release; null otherwise. */
export function installedRelease(home: string | undefined): { home: string; version: string } | null {
  if (!home) return null;
  try {
    if (!lstatSync(join(home, 'current')).isSymbolicLink()) return null;
    const link = readlinkSync(join(home, 'current'));
    const m = /^releases\/([^/]+)$/.exec(link);
    if (!m || !existsSync(join(home, 'releases', m[1]!, 'bin/keel-agent.mjs'))) return null;
    return { home, version: m[1]! };
  } catch {
    return null;
  }
}

/** Runs argv (no shell); rejects with its stderr when it fails. */
function runArgv(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 4000) err += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${argv[0]} exited ${code}: ${err.trim().slice(0, 500)}`)),
    );
  });
}

/** The controller's HTTP base from the enrolled URL (http(s) or ws(s)). */
export function controllerHttpBase(controllerUrl: string): string {
  const url = new URL(controllerUrl);
  if (url.protocol === 'ws:') url.protocol = 'http:';
  if (url.protocol === 'wss:') url.protocol = 'https:';
  url.pathname = url.pathname.replace(/\/+$/, '');
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

/**
 * Downloads `url` into `file`, at most `size` bytes (more is refused), hashing as it goes.
 * Returns the hex SHA-256.
 */
async function download(url: string, file: string, size: number, signal: AbortSignal): Promise<string> {
  const res = await fetch(url, { signal, redirect: 'error' });
  if (!res.ok || !res.body) {
    throw new KeelError('upgrade.failed', `The controller answered ${res.status} for ${url}.`);
  }
  const announced = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(announced) && announced > size) {
    throw new KeelError('upgrade.checksum_mismatch', `The bundle is ${announced} bytes, not ${size}.`);
  }
  const hash = createHash('sha256');
  const out = createWriteStream(file, { mode: 0o600 });
  let got = 0;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      got += chunk.byteLength;
      if (got > size || got > MAX_AGENT_BUNDLE_BYTES) {
        throw new KeelError(
          'upgrade.checksum_mismatch',
          `The bundle is larger than the ${size} bytes announced.`,
        );
      }
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
  } finally {
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }
  if (got !== size) {
    throw new KeelError(
      'upgrade.checksum_mismatch',
      `The bundle is ${got} bytes, not the ${size} announced.`,
    );
  }
  return hash.digest('hex');
}

export interface UpgradeCapabilityOptions {
  stateDir: string;
  /** The controller this agent is enrolled with: the only place it downloads from. */
  controllerUrl: string;
  /** The install root (`KEEL_AGENT_HOME`, set by the launcher); absent: upgrades are refused. */
  home: string | undefined;
  /** Stops the agent cleanly and exits with RESTART_EXIT_CODE. */
  restart: () => void;
}

/** The `agent.upgrade` request and the trial bookkeeping around a restart. */
export function upgradeCapability(opts: UpgradeCapabilityOptions): AgentCapability {
  const dir = join(opts.stateDir, 'upgrade');
  const trialFile = join(dir, 'trial');
  const rolledBackFile = join(dir, 'rolled-back');
  const lastRollbackFile = join(dir, 'last-rollback');
  /** Where the launcher moves a trial's deadline on while the controller does not answer. */
  const holdFile = join(dir, 'trial-hold');
  let busy = false;
  let ctx: CapabilityContext | null = null;

  const readRecord = async (file: string): Promise<UpgradeRecord | null> => {
    try {
      return parseRecord(await readFile(file, 'utf8'));
    } catch {
      return null;
    }
  };

  /** Removes releases other than the ones named (what install.sh's prune does). */
  const prune = async (home: string, keep: string[]) => {
    for (const name of await readdir(join(home, 'releases'))) {
      if (!keep.includes(name)) await rm(join(home, 'releases', name), { recursive: true, force: true });
    }
  };

  /** After a welcome: a release on trial that reached the controller is confirmed. */
  const confirm = async () => {
    const trial = await readRecord(trialFile);
    if (!trial || trial.version !== AGENT_VERSION) return;
    await rm(trialFile, { force: true });
    await rm(holdFile, { force: true });
    ctx?.log.info({ version: AGENT_VERSION, previous: trial.previous }, 'upgrade confirmed');
    ctx?.emit(agentUpgradeEvents.confirmed, { version: AGENT_VERSION, previous: trial.previous ?? null });
    const installed = installedRelease(opts.home);
    if (installed && trial.previous) {
      await prune(installed.home, [installed.version, trial.previous]).catch((err: unknown) =>
        ctx?.log.warn({ err }, 'could not remove old releases'),
      );
    }
  };

  const upgrade = async (params: AgentUpgradeParams, signal: AbortSignal) => {
    const installed = installedRelease(opts.home);
    if (!installed) throw new KeelError('upgrade.unsupported');
    if (params.version === installed.version) {
      throw new KeelError('upgrade.failed', `This agent already runs keel-agent ${params.version}.`);
    }
    if (busy || (await readRecord(trialFile))) throw new KeelError('upgrade.busy');
    busy = true;
    const releases = join(installed.home, 'releases');
    const tag = randomBytes(6).toString('hex');
    const tarball = join(releases, `.download-${tag}.tar.gz`);
    const unpacked = join(releases, `.unpack-${tag}`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const file = agentBundleFile(params.version);
      const url = `${controllerHttpBase(opts.controllerUrl)}/install/agent/${file}`;
      let sum: string;
      try {
        sum = await download(url, tarball, params.size, signal);
      } catch (err) {
        if (err instanceof KeelError) throw err;
        throw new KeelError('upgrade.failed', `Downloading ${file} failed: ${(err as Error).message}`);
      }
      if (sum !== params.sha256) {
        throw new KeelError(
          'upgrade.checksum_mismatch',
          `${file} has SHA-256 ${sum}, not ${params.sha256}; nothing was installed.`,
        );
      }
      await mkdir(unpacked, { mode: 0o755 });
      await runArgv(['tar', '-xzf', tarball, '-C', unpacked, '--no-same-owner']).catch((err: Error) => {
        throw new KeelError('upgrade.failed', `Unpacking ${file} failed: ${err.message}`);
      });
      // The archive must hold exactly keel-agent-<version>/ with a launcher and that version.
      const top = await readdir(unpacked);
      const expected = `keel-agent-${params.version}`;
      if (top.length !== 1 || top[0] !== expected) {
        throw new KeelError('upgrade.failed', `${file} does not hold ${expected}/ alone.`);
      }
      const release = join(unpacked, expected);
      const pkg = JSON.parse(await readFile(join(release, 'package.json'), 'utf8')) as { version?: unknown };
      if (pkg.version !== params.version || !existsSync(join(release, 'bin/keel-agent.mjs'))) {
        throw new KeelError('upgrade.failed', `${file} is not keel-agent ${params.version}.`);
      }
      await writeFile(join(release, '.bundle-sha256'), `${sum}\n`, { mode: 0o644 });
      const target = join(releases, params.version);
      await rm(target, { recursive: true, force: true });
      await rename(release, target);
      // The trial first, then the switch: a launcher that sees the new release also sees its trial.
      const now = Math.floor(Date.now() / 1000);
      const trial: UpgradeRecord = {
        version: params.version,
        previous: installed.version,
        deadline: String(now + params.confirmSeconds),
        starts: '0',
        max_starts: String(params.maxStarts),
        started: String(now),
      };
      await rm(holdFile, { force: true });
      await writeFile(`${trialFile}.new`, formatRecord(trial), { mode: 0o600 });
      await rename(`${trialFile}.new`, trialFile);
      const link = join(installed.home, `current.keel-new-${tag}`);
      await symlink(`releases/${params.version}`, link);
      await rename(link, join(installed.home, 'current'));
      ctx?.log.info({ version: params.version, previous: installed.version }, 'upgrade ready; restarting');
      ctx?.emit(agentUpgradeEvents.restarting, { version: params.version, previous: installed.version });
      // Answer first; the restart follows once the response has had a moment to leave.
      setTimeout(opts.restart, 300).unref();
      return { previous: installed.version, version: params.version };
    } catch (err) {
      busy = false;
      throw err;
    } finally {
      await rm(tarball, { force: true });
      await rm(unpacked, { recursive: true, force: true });
    }
  };

  /** The last release the launcher switched back here, if any. */
  const lastRollback = async (): Promise<AgentRollbackRecord | null> => {
    const r = await readRecord(lastRollbackFile);
    if (!r?.version) return null;
    return {
      version: r.version.slice(0, 64),
      previous: (r.previous ?? '').slice(0, 64),
      reason: (r.reason ?? 'no reason recorded').slice(0, 500),
      at: Math.max(0, Number.parseInt(r.at ?? '0', 10) || 0),
    };
  };

  return {
    name: 'upgrade',
    requests: {
      'agent.upgrade': (params, rctx) => upgrade(params, rctx.signal),
      'agent.upgrade.status': async () => ({
        version: AGENT_VERSION,
        upgrading: busy || (await readRecord(trialFile)) !== null,
        lastRollback: await lastRollback(),
      }),
    },
    async start(c) {
      ctx = c;
      // Back after the launcher switched a failed release back: say so, drop what it left.
      const back = await readRecord(rolledBackFile);
      if (back) {
        c.log.warn(back, 'the last upgrade was rolled back');
        c.emit(agentUpgradeEvents.rolledBack, {
          version: back.version ?? null,
          previous: back.previous ?? null,
          reason: back.reason ?? null,
        });
        const installed = installedRelease(opts.home);
        if (
          installed &&
          back.version &&
          back.version !== installed.version &&
          /^[0-9A-Za-z.-]+$/.test(back.version)
        ) {
          await rm(join(installed.home, 'releases', back.version), { recursive: true, force: true });
        }
        // Kept (the last one only) for agent.upgrade.status: the event may reach a controller that
        // restarted after it was sent the upgrade, and asks.
        await rename(rolledBackFile, lastRollbackFile).catch(() => rm(rolledBackFile, { force: true }));
      }
      // A trial of another release is stale (the launcher would have moved it on a rollback).
      const trial = await readRecord(trialFile);
      if (trial && trial.version !== AGENT_VERSION) await rm(trialFile, { force: true });
      c.onSession(() => {
        confirm().catch((err: unknown) => c.log.warn({ err }, 'could not confirm the upgrade'));
      });
    },
  };
}
