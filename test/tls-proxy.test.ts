// Proves the TLS reverse-proxy setup of docs/operations.md: real Debian nginx with a self-signed
// certificate in front of a controller (KEEL_PUBLIC_URL https, KEEL_TRUST_PROXY); an agent trusting
// that certificate (NODE_EXTRA_CA_CERTS) enrolls and runs over wss:// through it and answers a
// request, and the console API signs in and lists the host over https://.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  enrollAgent,
  freePort,
  joinToken,
  kill,
  removeDir,
  runAgent,
  startTestController,
  tempDir,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { selfSignedCertificate } from './helpers/certificate.ts';
import { need } from './install-helpers.ts';

/** An HTTPS request trusting `ca`; resolves with the status, headers and body. */
function httpsJson(
  url: string,
  ca: Buffer,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? 'GET',
        ca,
        headers: { ...(opts.body ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : null }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body ? JSON.stringify(opts.body) : undefined);
  });
}

const dirs: string[] = [];
const procs: Proc[] = [];
let nginx: ReturnType<typeof spawn> | null = null;
after(async () => {
  nginx?.kill('SIGTERM');
  for (const p of procs) await kill(p);
  delete process.env.NODE_EXTRA_CA_CERTS;
  for (const d of dirs) removeDir(d);
});

test(
  'an agent enrolls and works over wss:// through nginx with TLS; the console API over https://',
  { timeout: 120_000, skip: need('nginx') || need('openssl') },
  async () => {
    const work = tempDir('keel-tls-');
    dirs.push(work);
    const {
      certFile: cert,
      keyFile: key,
      cert: ca,
    } = selfSignedCertificate(work, { days: 1, subjectAltName: 'IP:127.0.0.1,DNS:localhost' });

    const tlsPort = await freePort();
    const publicUrl = `https://127.0.0.1:${tlsPort}`;
    const controller = await startTestController({
      env: { KEEL_PUBLIC_URL: publicUrl, KEEL_TRUST_PROXY: 'true' },
    });
    dirs.push(controller.dataDir);
    try {
      // The location block of docs/operations.md, in a private nginx prefix.
      writeFileSync(
        join(work, 'nginx.conf'),
        `pid ${work}/nginx.pid;
error_log ${work}/error.log warn;
events {}
http {
  access_log off;
  client_body_temp_path ${work}/body;
  proxy_temp_path ${work}/proxy;
  fastcgi_temp_path ${work}/fastcgi;
  uwsgi_temp_path ${work}/uwsgi;
  scgi_temp_path ${work}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${tlsPort} ssl;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    client_max_body_size 16m;
    location / {
      proxy_pass http://127.0.0.1:${controller.port};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_buffering off;
    }
  }
}
`,
      );
      const checked = spawnSync('nginx', ['-t', '-p', work, '-c', join(work, 'nginx.conf')], {
        encoding: 'utf8',
      });
      assert.equal(checked.status, 0, checked.stderr);
      nginx = spawn('nginx', ['-p', work, '-c', join(work, 'nginx.conf'), '-g', 'daemon off;'], {
        stdio: 'ignore',
      });
      await waitFor(
        async () => (await httpsJson(`${publicUrl}/healthz`, ca)).status === 200,
        20_000,
        'nginx serving the controller over https',
      );

      // The agent trusts the self-signed certificate, as a host with a private CA would.
      process.env.NODE_EXTRA_CA_CERTS = cert;
      const stateDir = tempDir('keel-tls-agent-');
      dirs.push(stateDir);
      const enrolled = await enrollAgent(
        stateDir,
        publicUrl,
        await joinToken(controller),
        controller.fingerprint,
        'tls-host',
      );
      assert.equal(enrolled.code, 0, enrolled.output);
      const agent = runAgent(stateDir);
      procs.push(agent);
      const [host] = await controller.services.hosts.list();
      await waitFor(() => controller.gateway.isOnline(host!.id), 30_000, 'agent online over wss://');
      const pong = await controller.gateway.request(host!.id, 'ping', {});
      assert.ok(pong.agentTime > 0);
      const enrollment = JSON.parse(readFileSync(join(stateDir, 'enrollment.json'), 'utf8')) as {
        controllerUrl: string;
      };
      assert.equal(enrollment.controllerUrl, publicUrl);

      // The console API over https (same origin as the public URL).
      const admin = controller.firstAdmin!;
      const login = await httpsJson(`${publicUrl}/api/v1/auth/login`, ca, {
        method: 'POST',
        headers: { origin: publicUrl },
        body: { username: admin.username, password: admin.password },
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      const cookie = String(login.headers['set-cookie']).split(';')[0]!;
      assert.match(String(login.headers['set-cookie']), /Secure/i);
      const hosts = await httpsJson(`${publicUrl}/api/v1/hosts`, ca, {
        headers: { cookie, origin: publicUrl },
      });
      assert.equal(hosts.status, 200);
      const listed = (hosts.body as { hosts: { name: string; online: boolean }[] }).hosts;
      assert.deepEqual(
        listed.map((h) => [h.name, h.online]),
        [['tls-host', true]],
      );
    } finally {
      await kill(procs[0]!).catch(() => {});
      await controller.close();
    }
  },
);
