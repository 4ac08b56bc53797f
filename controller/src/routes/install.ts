// The controller serves its own installers, so a host installs from the controller alone (an
// air-gapped fleet fetches nothing from anywhere else):
//   GET /install.sh                      install.sh with this controller's URL, key fingerprint and
//                                        agent bundle (version + SHA-256) filled in
//   GET /install/agent.json              which agent bundle this controller hands out (the newest),
//                                        and every version it holds
//   GET /install/agent/<file>            an agent bundle (keel-agent-<version>.tar.gz) and its .sha256
//   GET /install/hosts/:id               { online, agentVersion } for one host, so the installer
//                                        can say when the host it enrolled (or upgraded) is online
// All are public: the script and the bundle hold no secret (the join token is never in them), and
// the presence answer needs the host's random id, which only its console users and the host know.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { KeelError } from '@keel/shared';
import type { AppEnv } from './env.ts';
import { permit } from './permit.ts';

/** Where install.sh and the agent bundles are. */
export interface InstallSources {
  /** install.sh; undefined when this controller has none. */
  script: string | undefined;
  /** A directory holding keel-agent-<version>.tar.gz files (from `npm run build`). */
  agentDir: string | undefined;
}

const firstExisting = (candidates: URL[]): string | undefined => {
  const found = candidates.find((u) => existsSync(u));
  return found ? fileURLToPath(found) : undefined;
};

/**
 * The installer files of this controller: inside a controller bundle, `dist/install.sh` and
 * `dist/agent/`; in a source checkout, the repository's `install.sh` and `dist/` (where
 * `npm run build` puts the agent bundle). `KEEL_AGENT_BUNDLE_DIR` names another bundle directory.
 */
export function defaultInstallSources(env: NodeJS.ProcessEnv = process.env): InstallSources {
  const override = env.KEEL_AGENT_BUNDLE_DIR;
  return {
    script: firstExisting([
      new URL('./install.sh', import.meta.url), // bundled: dist/install.sh
      new URL('../../../install.sh', import.meta.url), // source: controller/src/routes -> repo root
    ]),
    agentDir: override
      ? path.resolve(override)
      : firstExisting([new URL('./agent/', import.meta.url), new URL('../../../dist/', import.meta.url)]),
  };
}

/** One agent bundle on disk. */
export interface AgentBundle {
  version: string;
  file: string;
  sha256: string;
  bytes: Buffer;
}

const BUNDLE_NAME = /^keel-agent-(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?\.tar\.gz$/;

/** Compares two names matching BUNDLE_NAME by version (a pre-release sorts before its release). */
function compareBundles(a: string, b: string): number {
  const x = BUNDLE_NAME.exec(a)!;
  const y = BUNDLE_NAME.exec(b)!;
  for (let i = 1; i <= 3; i++) {
    const d = Number(x[i]) - Number(y[i]);
    if (d !== 0) return d;
  }
  if (x[4] === y[4]) return 0;
  if (x[4] === undefined) return 1;
  if (y[4] === undefined) return -1;
  return x[4] < y[4] ? -1 : 1;
}

/**
 * The agent bundles in `dir`, each checked against its `.sha256` file when read: a bundle whose
 * file and checksum disagree is refused (a half-copied upload must not reach a fleet). Every
 * version held stays downloadable, so a host can be pinned to or put back on an older one.
 * Each file is cached while its size and mtime stay the same.
 */
export function agentBundleStore(dir: string | undefined) {
  const cache = new Map<string, { key: string; bundle: AgentBundle }>();
  const names = (): string[] =>
    dir && existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => BUNDLE_NAME.test(f))
          .sort(compareBundles)
      : [];
  const load = (file: string): AgentBundle => {
    const full = path.join(dir!, file);
    const st = statSync(full);
    const key = `${st.size}:${st.mtimeMs}`;
    const hit = cache.get(file);
    if (hit?.key === key) return hit.bundle;
    const bytes = readFileSync(full);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let recorded: string | undefined;
    try {
      recorded = readFileSync(`${full}.sha256`, 'utf8').split(/\s/)[0];
    } catch {
      recorded = undefined;
    }
    if (recorded !== sha256) {
      // A plain Error: logged with this detail, answered as a bare 500 (no server path leaks).
      throw new Error(
        `${full}.sha256 is missing or does not match the bundle; rebuild it with npm run build`,
      );
    }
    const bundle = { version: file.slice('keel-agent-'.length, -'.tar.gz'.length), file, sha256, bytes };
    cache.set(file, { key, bundle });
    return bundle;
  };
  return {
    /** Versions held, oldest first (names only: nothing is read). */
    versions: (): string[] => names().map((f) => f.slice('keel-agent-'.length, -'.tar.gz'.length)),
    /** The newest bundle, which install.sh installs unless told a version. */
    newest: (): AgentBundle | null => {
      const file = names().at(-1);
      return file ? load(file) : null;
    },
    /** The bundle named `file`, if held. */
    get: (file: string): AgentBundle | null => (names().includes(file) ? load(file) : null),
  };
}

/** Quotes a value for a POSIX shell (single quotes). */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The block of install.sh that a serving controller fills in. */
const SERVED_BLOCK = /# >>> served defaults[^\n]*\n[\s\S]*?# <<< served defaults\n/;

/**
 * install.sh with this controller's values in its "served defaults" block, so the script run as
 * `curl -fsSL <controller>/install.sh | sh -s -- agent` knows where to enroll, which key to pin
 * and which bundle (by SHA-256) to accept.
 */
export function servedScript(
  script: string,
  values: { controller: string; pin: string; agentVersion: string; agentSha256: string },
): string {
  if (!SERVED_BLOCK.test(script)) throw new Error('install.sh has no "served defaults" block');
  const block =
    '# >>> served defaults (filled in by the controller that served this script)\n' +
    `KEEL_SERVED_CONTROLLER=${shellQuote(values.controller)}\n` +
    `KEEL_SERVED_PIN=${shellQuote(values.pin)}\n` +
    `KEEL_SERVED_AGENT_VERSION=${shellQuote(values.agentVersion)}\n` +
    `KEEL_SERVED_AGENT_SHA256=${shellQuote(values.agentSha256)}\n` +
    '# <<< served defaults\n';
  return script.replace(SERVED_BLOCK, () => block);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What the install routes need. */
export interface InstallRoutesDeps {
  /** The controller's public URL, which enrolled agents dial. */
  publicUrl: string;
  /** The controller key's fingerprint (agents pin it). */
  controllerFingerprint: string;
  /** Presence of one host and the agent version it last reported, or null when there is no such host. */
  hostPresence: (id: string) => Promise<{ online: boolean; agentVersion: string | null } | null>;
  sources?: InstallSources;
}

/** GET /install.sh, the agent bundle and the installer's presence check (public). */
export function installRoutes(deps: InstallRoutesDeps) {
  const sources = deps.sources ?? defaultInstallSources();
  const bundles = agentBundleStore(sources.agentDir);
  const publicUrl = deps.publicUrl.replace(/\/+$/, '');
  const app = new Hono<AppEnv>();

  app.get('/install.sh', permit.public(), (c) => {
    if (!sources.script) throw new KeelError('not_found', 'This controller has no install.sh.');
    const current = bundles.newest();
    const text = servedScript(readFileSync(sources.script, 'utf8'), {
      controller: publicUrl,
      pin: deps.controllerFingerprint,
      // An empty version makes the script say that this controller has no agent bundle to give.
      agentVersion: current?.version ?? '',
      agentSha256: current?.sha256 ?? '',
    });
    c.header('cache-control', 'no-store');
    c.header('content-type', 'text/x-shellscript; charset=utf-8');
    return c.body(text, 200);
  });

  app.get('/install/agent.json', permit.public(), (c) => {
    const current = bundles.newest();
    if (!current) throw new KeelError('not_found', 'This controller has no agent bundle.');
    c.header('cache-control', 'no-store');
    return c.json(
      { version: current.version, file: current.file, sha256: current.sha256, versions: bundles.versions() },
      200,
    );
  });

  app.get('/install/agent/:file', permit.public(), (c) => {
    const file = c.req.param('file');
    const current = bundles.get(file.endsWith('.sha256') ? file.slice(0, -'.sha256'.length) : file);
    if (!current) {
      throw new KeelError('not_found', `No agent bundle named ${JSON.stringify(file.slice(0, 100))}.`);
    }
    c.header('cache-control', 'no-cache');
    if (file.endsWith('.sha256')) {
      c.header('content-type', 'text/plain; charset=utf-8');
      return c.body(`${current.sha256}  ${current.file}\n`, 200);
    }
    c.header('content-type', 'application/gzip');
    c.header('content-disposition', `attachment; filename="${current.file}"`);
    return c.body(new Uint8Array(current.bytes), 200);
  });

  app.get('/install/hosts/:id', permit.public(), async (c) => {
    const id = c.req.param('id');
    if (!UUID.test(id)) throw new KeelError('request.invalid', 'The host id must be a uuid.');
    const presence = await deps.hostPresence(id.toLowerCase());
    if (presence === null) throw new KeelError('host.not_found');
    c.header('cache-control', 'no-store');
    return c.json({ online: presence.online, agentVersion: presence.agentVersion }, 200);
  });

  return app;
}
