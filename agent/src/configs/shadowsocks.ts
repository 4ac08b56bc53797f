// shadowsocks-libev adapter: one user per port (each user carries its `port` and `password`),
// served by `ss-manager`, which runs one `ss-server` per port. Users are added and removed through
// ss-manager's UDP API (`add:` / `remove:`) without touching the other ports' connections; a change
// of method, mode, timeout or listen address restarts ss-manager. Traffic from the API's `ping`
// (`stat: {"port": bytes}`): shadowsocks-libev counts one total per port, reported as `downBytes`
// (upBytes 0) — see docs/proxies.md. A port removed through the API (a user taken off, or its
// password changed) loses its counter in ss-manager; the adapter reads the port's total just before
// removing it and carries it (run/carried.json, per ss-manager run), so each user's counter only
// goes up while ss-manager runs and a re-added user is neither counted twice nor short.
//
// ss-server has no config test mode. Validation is: the rendered JSON parses, ports are unique and
// outside the manager's, and a dry start of `ss-server` with the same method on a spare loopback
// port stays up for 300 ms (a bad method or password makes it exit at once).
import { createSocket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { KeelError, shadowsocksSettingsSchema, type AdapterSettings, type ProxyUserSpec } from '@keel/shared';
import {
  type AdapterContext,
  type Desired,
  type ProxyAdapterDefinition,
  eventually,
  isRunning,
  requireRunning,
  runProcess,
  sleep,
  trimOutput,
  writeFileAtomic,
} from './adapter.ts';

type Settings = AdapterSettings<'shadowsocks'>;
const CONF = 'config.json';

function portUsers(users: ProxyUserSpec[]): Map<number, ProxyUserSpec> {
  const out = new Map<number, ProxyUserSpec>();
  for (const u of users) {
    if (!u.password) continue;
    if (u.port === undefined)
      throw new KeelError('config.invalid', `user ${u.id} has a password but no port`);
    const other = out.get(u.port);
    if (other) throw new KeelError('config.invalid', `users ${other.id} and ${u.id} share port ${u.port}`);
    out.set(u.port, u);
  }
  return out;
}

function render(settings: Settings, users: ProxyUserSpec[]): string {
  const port_password: Record<string, string> = {};
  for (const [port, u] of [...portUsers(users)].sort((a, b) => a[0] - b[0]))
    port_password[String(port)] = u.password!;
  return `${JSON.stringify(
    {
      server: settings.listenAddress,
      port_password,
      method: settings.method,
      timeout: settings.timeoutSeconds,
      mode: settings.mode,
    },
    null,
    2,
  )}\n`;
}

/** The UDP port of ss-manager's API for this instance, chosen once and kept in the run dir. */
async function managerPort(ctx: AdapterContext): Promise<number> {
  const file = join(ctx.runDir, 'manager-port');
  if (existsSync(file)) return Number(readFileSync(file, 'utf8'));
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  s.close();
  writeFileAtomic(file, String(port));
  return port;
}

/** The running ss-manager's counter epoch (changes whenever its counters restart from zero). */
function epochOf(ctx: AdapterContext): string {
  const status = ctx.processes.status(ctx.processName);
  return `${status.pid ?? 'none'}@${status.startedAt ?? 0}`;
}

/** Bytes of ports removed through the API, per user, for one ss-manager run. */
interface Carried {
  epoch: string;
  users: Record<string, number>;
}

const CARRIED = 'carried.json';

/** What was carried for this ss-manager run (nothing for another run: its counters started anew). */
function readCarried(ctx: AdapterContext, epoch: string): Carried {
  try {
    const c = JSON.parse(readFileSync(join(ctx.runDir, CARRIED), 'utf8')) as Carried;
    if (c.epoch === epoch && c.users && typeof c.users === 'object') return c;
  } catch {
    // none yet
  }
  return { epoch, users: {} };
}

/** ss-manager's `ping`: total bytes per port. */
async function portTotals(mport: number): Promise<Record<string, number>> {
  const answer = await command(mport, 'ping');
  return JSON.parse(answer.replace(/^stat:\s*/, '')) as Record<string, number>;
}

/** One ss-manager API command; resolves with its answer. */
function command(port: number, text: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`ss-manager did not answer "${text.split(':')[0]}"`));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString('utf8'));
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      s.close();
      reject(err);
    });
    s.send(text, port, '127.0.0.1');
  });
}

/** The pid owning a listening TCP socket on `port` (from /proc), or null. */
function listenerPid(port: number): number | null {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      if (parseInt(f[1]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return null;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return Number(pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function sameServer(a: Settings, b: Settings): boolean {
  return (
    a.listenAddress === b.listenAddress &&
    a.method === b.method &&
    a.mode === b.mode &&
    a.timeoutSeconds === b.timeoutSeconds
  );
}

export const shadowsocksAdapter: ProxyAdapterDefinition<Settings> = {
  kind: 'shadowsocks',
  settingsSchema: shadowsocksSettingsSchema,

  render(settings, users) {
    return [{ name: CONF, content: render(settings, users) }];
  },

  async validate(stagingDir, next, ctx) {
    const parsed = JSON.parse(readFileSync(join(stagingDir, CONF), 'utf8')) as {
      port_password: Record<string, string>;
    };
    const mport = await managerPort(ctx);
    if (Object.keys(parsed.port_password).includes(String(mport))) {
      throw new KeelError('config.invalid', `port ${mport} is this proxy's manager port`);
    }
    // Dry start: ss-server with this method and the first password on a spare loopback port.
    const first = Object.values(parsed.port_password)[0] ?? 'keel-dry-start';
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
    const spare = probe.address().port;
    probe.close();
    const child = execa(
      ctx.programs.ssServer,
      ['-s', '127.0.0.1', '-p', String(spare), '-k', first, '-m', next.settings.method, '-t', '10'],
      {
        reject: false,
        all: true,
        stdin: 'ignore',
      },
    );
    const exited = await Promise.race([child.then(() => true), sleep(300).then(() => false)]);
    if (exited) {
      const r = await child;
      throw new KeelError(
        'config.invalid',
        trimOutput(`ss-server refused the configuration: ${r.all ?? r.message}`),
      );
    }
    child.kill('SIGKILL');
    await child;
  },

  async activate(next: Desired<Settings>, previous: Desired<Settings> | null, ctx) {
    const mport = await managerPort(ctx);
    const spec = {
      argv: [
        ctx.programs.ssServer.replace(/ss-server$/, 'ss-manager'),
        '-c',
        join(ctx.dir, CONF),
        '--manager-address',
        `127.0.0.1:${mport}`,
        '--executable',
        ctx.programs.ssServer,
        '-D',
        ctx.runDir,
      ],
    };
    if (isRunning(ctx) && previous && sameServer(previous.settings, next.settings)) {
      try {
        const before = portUsers(previous.users);
        const after = portUsers(next.users);
        let changes = 0;
        const removing = [...before].filter(([port, u]) => after.get(port)?.password !== u.password);
        if (removing.length > 0) {
          // Their counters end with the port: carry each total to its user first.
          const epoch = epochOf(ctx);
          const carried = readCarried(ctx, epoch);
          const totals = await portTotals(mport);
          for (const [port, u] of removing)
            carried.users[u.id] = (carried.users[u.id] ?? 0) + Number(totals[String(port)] ?? 0);
          writeFileAtomic(join(ctx.runDir, CARRIED), JSON.stringify(carried));
        }
        for (const [port] of removing) {
          await command(mport, `remove: {"server_port": ${port}}`);
          changes++;
        }
        const removed = new Set(removing.map(([port]) => port));
        for (const [port, u] of after) {
          if (before.get(port)?.password !== u.password) {
            const add = `add: ${JSON.stringify({ server_port: port, password: u.password })}`;
            // ss-manager's remove signals the port's ss-server and returns at once; its add
            // test-binds the port and answers "port is not available" until that ss-server
            // has exited. A port removed just now is retried for a while; any other refusal
            // (a port held by another program) falls back to the restart path at once.
            const answer = removed.has(port)
              ? await eventually(
                  async () => {
                    const a = (await command(mport, add)).trim();
                    if (a !== 'ok' && /not available/.test(a)) throw new Error(a);
                    return a;
                  },
                  5_000,
                  100,
                ).catch((err: Error) => err.message)
              : (await command(mport, add)).trim();
            if (answer !== 'ok') throw new Error(`ss-manager refused port ${port}: ${answer.slice(0, 200)}`);
            changes++;
          }
        }
        return changes > 0 ? 'api' : 'unchanged';
      } catch (err) {
        ctx.log.warn({ err }, 'ss-manager API update failed; restarting it on the new file instead');
      }
    }
    await runProcess(ctx, spec);
    return 'restart';
  },

  async health(next, ctx) {
    await requireRunning(ctx, 300);
    const mport = await managerPort(ctx);
    await eventually(() => command(mport, 'ping', 1_000).then(() => {}), 5_000);
    // Every user's port must be served by an ss-server (not by whatever else holds the port).
    for (const port of portUsers(next.users).keys()) {
      await eventually(
        async () => {
          const pid = listenerPid(port);
          if (pid === null || comm(pid) !== 'ss-server') {
            throw new Error(
              `port ${port} is ${pid === null ? 'not listening' : `held by ${comm(pid) || `pid ${pid}`}`}`,
            );
          }
        },
        6_000,
        200,
      );
    }
  },

  async traffic(current, ctx) {
    const epoch = epochOf(ctx);
    const stats = await portTotals(await managerPort(ctx));
    const carried = readCarried(ctx, epoch).users;
    const users = [...portUsers(current.users)].map(([port, u]) => ({
      id: u.id,
      upBytes: 0,
      downBytes: (carried[u.id] ?? 0) + Number(stats[String(port)] ?? 0),
    }));
    return { counterEpoch: epoch, users };
  },
};
