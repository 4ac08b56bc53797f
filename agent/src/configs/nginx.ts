// nginx adapter: sites (server names -> an upstream or a static root, optional TLS) rendered into
// one nginx.conf; validated with `nginx -t`; nginx runs as the supervised process proxy-<instance>
// with its own prefix, pid, logs and temp dirs under the instance's run dir; a change is a reload
// (SIGHUP to the master: new workers take the new config, old workers finish their connections);
// health is a real request through every site.
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KeelError, nginxSettingsSchema, type AdapterSettings } from '@keel/shared';
import {
  type AdapterContext,
  type ProxyAdapterDefinition,
  eventually,
  httpGet,
  isRunning,
  reachable,
  requireRunning,
  runCheck,
  runProcess,
  sleep,
} from './adapter.ts';

type Settings = AdapterSettings<'nginx'>;
const CONF = 'nginx.conf';

/** A path inside the agent's state dir, quoted for nginx (state dirs with quotes are refused). */
function q(path: string): string {
  if (/["\\\n\r$;{}]/.test(path)) {
    throw new KeelError(
      'config.apply_failed',
      'the agent state dir path holds characters nginx cannot quote',
    );
  }
  return `"${path}"`;
}

function listen(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Renders nginx.conf. Every value is schema-checked (no quotes, braces or `;` can reach the file). */
export function renderNginx(settings: Settings, ctx: Pick<AdapterContext, 'instance' | 'runDir'>): string {
  const run = ctx.runDir;
  const lines = [
    `# Rendered by Keel for proxy instance ${ctx.instance}. Edits here are reported as drift.`,
    `worker_processes ${settings.workerProcesses};`,
    `pid ${q(join(run, 'nginx.pid'))};`,
    `error_log ${q(join(run, 'error.log'))} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${q(join(run, 'access.log'))};`,
    `  client_body_temp_path ${q(join(run, 'client_body'))};`,
    `  proxy_temp_path ${q(join(run, 'proxy'))};`,
    `  fastcgi_temp_path ${q(join(run, 'fastcgi'))};`,
    `  uwsgi_temp_path ${q(join(run, 'uwsgi'))};`,
    `  scgi_temp_path ${q(join(run, 'scgi'))};`,
    '  types { text/html html htm; text/css css; application/javascript js mjs; application/json json;',
    '          image/png png; image/jpeg jpg jpeg; image/gif gif; image/svg+xml svg; image/x-icon ico;',
    '          text/plain txt; application/wasm wasm; font/woff2 woff2; }',
    '  default_type application/octet-stream;',
    '  sendfile on;',
    '  server_tokens off;',
  ];
  for (const site of settings.sites) {
    lines.push('  server {');
    lines.push(`    listen ${listen(settings.listenAddress, site.port)}${site.tls ? ' ssl' : ''};`);
    lines.push(`    server_name ${site.serverNames.join(' ')};`);
    if (site.tls) {
      lines.push(`    ssl_certificate ${q(site.tls.certificatePath)};`);
      lines.push(`    ssl_certificate_key ${q(site.tls.keyPath)};`);
    }
    if (site.upstream) {
      lines.push('    location / {');
      lines.push(`      proxy_pass ${site.upstream};`);
      lines.push('      proxy_http_version 1.1;');
      lines.push('      proxy_set_header Host $host;');
      lines.push('      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;');
      lines.push('      proxy_set_header X-Forwarded-Proto $scheme;');
      lines.push('      proxy_set_header Upgrade $http_upgrade;');
      lines.push('      proxy_set_header Connection $http_connection;');
      lines.push('    }');
    } else {
      lines.push(`    root ${q(site.root!)};`);
      lines.push('    index index.html;');
    }
    lines.push('  }');
  }
  lines.push('}', '');
  return lines.join('\n');
}

function argv(ctx: AdapterContext, conf: string): string[] {
  return [ctx.programs.nginx, '-p', `${ctx.runDir}/`, '-e', join(ctx.runDir, 'error.log'), '-c', conf];
}

/** Pids of a process's children (the nginx workers of a master). */
function children(pid: number): Set<number> {
  try {
    return new Set(
      readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return new Set();
  }
}

function errorLogFrom(path: string, offset: number): string {
  try {
    const size = statSync(path).size;
    if (size <= offset) return '';
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(Math.min(size - offset, 65_536));
      readSync(fd, buf, 0, buf.length, offset);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

export const nginxAdapter: ProxyAdapterDefinition<Settings> = {
  kind: 'nginx',
  settingsSchema: nginxSettingsSchema,

  render(settings, _users, ctx) {
    return [{ name: CONF, content: renderNginx(settings, ctx) }];
  },

  async validate(stagingDir, _next, ctx) {
    await runCheck([...argv(ctx, join(stagingDir, CONF)), '-t', '-q']);
  },

  async activate(_next, _previous, ctx) {
    const conf = join(ctx.dir, CONF);
    const spec = {
      argv: [...argv(ctx, conf), '-g', 'daemon off;'],
      stop: { signal: 'SIGQUIT' as const, graceMs: 10_000 },
    };
    if (!isRunning(ctx)) {
      await runProcess(ctx, spec);
      return 'restart';
    }
    // Reload: SIGHUP to the master. It re-reads the file, starts new workers and lets the old ones
    // finish their connections. Wait for a new worker, and read what the master logged meanwhile.
    const pid = ctx.processes.status(ctx.processName).pid!;
    const errorLog = join(ctx.runDir, 'error.log');
    let logOffset = 0;
    try {
      logOffset = statSync(errorLog).size;
    } catch {
      // none yet
    }
    const before = children(pid);
    process.kill(pid, 'SIGHUP');
    await eventually(
      async () => {
        const now = children(pid);
        if (![...now].some((c) => !before.has(c)))
          throw new Error('no new nginx worker after the reload signal');
      },
      5_000,
      50,
    ).catch(async () => {
      // /proc children may be unavailable: give the master a moment instead.
      await sleep(500);
    });
    const logged = errorLogFrom(errorLog, logOffset);
    const emerg = logged.split('\n').find((l) => l.includes('[emerg]') || l.includes('[alert]'));
    if (emerg) throw new Error(`nginx refused the reload: ${emerg.slice(0, 500)}`);
    return 'reload';
  },

  async health(next, ctx) {
    await requireRunning(ctx, 200);
    for (const site of next.settings.sites) {
      const host = site.serverNames.find((n) => n !== '_' && !n.startsWith('*.')) ?? 'localhost';
      const address = reachable(next.settings.listenAddress);
      const url = `${site.tls ? 'https' : 'http'}://${address.includes(':') ? `[${address}]` : address}:${site.port}/`;
      await eventually(async () => {
        const r = await httpGet(url, { host, insecure: true, timeoutMs: 3_000 });
        if (r.status >= 500) throw new Error(`GET ${url} (Host: ${host}) answered ${r.status}`);
      }, 3_000);
    }
  },
};
