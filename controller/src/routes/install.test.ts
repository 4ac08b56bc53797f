// Proves the installer routes: install.sh is served with this controller's values quoted into its
// served-defaults block, the newest agent bundle is served with its checksum, a bundle whose
// .sha256 disagrees is refused, and the presence answer says only online or not.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Hono } from 'hono';
import pino from 'pino';
import { errorHandler, notFound } from './errors.ts';
import type { AppEnv } from './env.ts';
import { installRoutes, servedScript } from './install.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'keel-install-routes-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const script = path.join(dir, 'install.sh');
writeFileSync(
  script,
  "#!/bin/sh\n# >>> served defaults (x)\nKEEL_SERVED_CONTROLLER=''\nKEEL_SERVED_PIN=''\n" +
    "KEEL_SERVED_AGENT_VERSION=''\nKEEL_SERVED_AGENT_SHA256=''\n# <<< served defaults\necho hi\n",
);
const bundles = path.join(dir, 'bundles');

function bundle(version: string, bytes: string, recorded?: string) {
  const file = path.join(bundles, `keel-agent-${version}.tar.gz`);
  writeFileSync(file, bytes);
  const sum = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(`${file}.sha256`, `${recorded ?? sum}  keel-agent-${version}.tar.gz\n`);
  return sum;
}

function app(online: Record<string, boolean> = {}) {
  const a = new Hono<AppEnv>();
  a.onError(errorHandler(pino({ level: 'silent' })));
  a.notFound(notFound);
  a.route(
    '/',
    installRoutes({
      publicUrl: 'https://keel.example.com/',
      controllerFingerprint: 'sha256:abc',
      hostPresence: (id) =>
        Promise.resolve(id in online ? { online: online[id]!, agentVersion: '0.1.0' } : null),
      sources: { script, agentDir: bundles },
    }),
  );
  return a;
}

test('install.sh carries the controller, pin and the newest bundle; every held bundle and its checksum are served', async () => {
  mkdirSync(bundles, { recursive: true });
  bundle('0.9.0', 'old');
  bundle('0.10.0-rc.1', 'rc');
  const sum = bundle('0.10.0', 'new');
  const a = app();
  const res = await a.request('/install.sh');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /shellscript/);
  const text = await res.text();
  assert.match(text, /^KEEL_SERVED_CONTROLLER='https:\/\/keel\.example\.com'$/m);
  assert.match(text, /^KEEL_SERVED_PIN='sha256:abc'$/m);
  assert.match(text, /^KEEL_SERVED_AGENT_VERSION='0\.10\.0'$/m);
  assert.match(text, new RegExp(`^KEEL_SERVED_AGENT_SHA256='${sum}'$`, 'm'));
  assert.match(text, /echo hi\n$/);

  const manifest = await (await a.request('/install/agent.json')).json();
  assert.deepEqual(manifest, {
    version: '0.10.0',
    file: 'keel-agent-0.10.0.tar.gz',
    sha256: sum,
    versions: ['0.9.0', '0.10.0-rc.1', '0.10.0'],
  });
  const body = await a.request('/install/agent/keel-agent-0.10.0.tar.gz');
  assert.equal(body.status, 200);
  assert.equal(await body.text(), 'new');
  const check = await a.request('/install/agent/keel-agent-0.10.0.tar.gz.sha256');
  assert.equal(await check.text(), `${sum}  keel-agent-0.10.0.tar.gz\n`);
  // Older versions stay downloadable (pinning, going back); nothing else in the directory is.
  assert.equal(await (await a.request('/install/agent/keel-agent-0.9.0.tar.gz')).text(), 'old');
  for (const other of ['keel-agent-0.8.0.tar.gz', '..%2Finstall.sh', 'install.sh.sha256', 'x']) {
    assert.equal((await a.request(`/install/agent/${other}`)).status, 404, other);
  }
});

test('a bundle whose .sha256 disagrees is refused', async () => {
  bundle('0.11.0', 'tampered', '0'.repeat(64));
  const res = await app().request('/install/agent.json');
  assert.equal(res.status, 500);
  rmSync(path.join(bundles, 'keel-agent-0.11.0.tar.gz'));
});

test('values with quotes are quoted for the shell', () => {
  const text = servedScript(readFileSync(script, 'utf8'), {
    controller: "https://x/'; rm -rf / #",
    pin: 'p',
    agentVersion: '',
    agentSha256: '',
  });
  assert.match(text, /^KEEL_SERVED_CONTROLLER='https:\/\/x\/'\\''; rm -rf \/ #'$/m);
});

test('presence: online or not for a known host, 404 otherwise, 400 for a malformed id', async () => {
  const id = '0b7f5f8e-5f4e-4b7a-9a51-2f0f2c8e1a11';
  const a = app({ [id]: true });
  assert.deepEqual(await (await a.request(`/install/hosts/${id}`)).json(), {
    online: true,
    agentVersion: '0.1.0',
  });
  assert.equal((await a.request('/install/hosts/1b7f5f8e-5f4e-4b7a-9a51-2f0f2c8e1a11')).status, 404);
  assert.equal((await a.request('/install/hosts/nope')).status, 400);
});
