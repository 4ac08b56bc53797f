// Proves the console's web defences: every mutating API route refuses a request without the
// session's CSRF token (a walk over the app, like the permission walk), a cross-origin Origin is
// refused on any API request (the /events stream included), security headers and CSPs are set on
// API and console answers (the console's own CSP allows no inline script), and the session cookie
// is HttpOnly, SameSite=Strict and Secure over https.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { declaredAccess } from '../controller/src/routes/permit.ts';

let t: TestApp;
let owner: SignedIn;
let webRoot: string;

before(async () => {
  webRoot = mkdtempSync(path.join(tmpdir(), 'keel-web-'));
  writeFileSync(path.join(webRoot, 'index.html'), '<!doctype html><title>Keel</title>');
  t = await openTestApp({ appDeps: { webRoot } });
  owner = await t.signInAs('owner');
});
after(async () => {
  await t.close();
  rmSync(webRoot, { recursive: true, force: true });
});

describe('CSRF', () => {
  test('every mutating route refuses a wrong CSRF token (403 auth.csrf), and a cross-origin Origin', async () => {
    const mutating = new Map<string, string>();
    for (const r of t.app.routes) {
      if (!['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method)) continue;
      const access = declaredAccess(r.handler);
      if (access) mutating.set(`${r.method} ${r.path}`, access);
    }
    assert.ok(mutating.size >= 20, `only ${mutating.size} mutating routes`);
    for (const [key, access] of mutating) {
      const [method, route] = key.split(' ') as [string, string];
      if (!route.startsWith('/api/')) continue;
      const url = route.replace(/:[A-Za-z]+/g, () => randomUUID());
      const code = async (res: Response) => ((await res.json()) as { error?: { code: string } }).error?.code;
      const cross = await t.request(url, {
        method,
        json: {},
        as: owner,
        headers: { origin: 'https://evil.example' },
      });
      assert.equal(await code(cross), 'auth.csrf', `${key} with a cross-origin Origin`);
      if (access === 'public') continue;
      const forged = await t.request(url, {
        method,
        json: {},
        as: owner,
        headers: { 'x-csrf-token': 'forged' },
      });
      assert.equal(await code(forged), 'auth.csrf', `${key} without the CSRF token`);
    }
  });

  test('the event stream refuses a cross-origin Origin (EventSource from another site)', async () => {
    const res = await t.request('/api/v1/events', { as: owner, headers: { origin: 'https://evil.example' } });
    assert.equal(res.status, 403);
    // Same origin reads as before.
    const ok = await t.request('/api/v1/hosts', { as: owner, headers: { origin: t.origin } });
    assert.equal(ok.status, 200);
  });
});

describe('headers and cookies', () => {
  test('API answers: a deny-all CSP, no framing, no sniffing, no referrer', async () => {
    const res = await t.request('/api/v1/hosts', { as: owner });
    assert.equal(
      res.headers.get('content-security-policy'),
      "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    assert.match(res.headers.get('permissions-policy') ?? '', /camera=\(\)/);
  });

  test('console pages: frame-ancestors none in the header; the page CSP allows no inline script', async () => {
    const res = await t.request('/hosts');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    // The console's own policy (svelte.config.js, emitted as a <meta> with script hashes).
    const config = readFileSync(new URL('../web/svelte.config.js', import.meta.url), 'utf8');
    const scriptSrc = /'script-src':\s*\[([^\]]*)\]/.exec(config)?.[1] ?? '';
    assert.ok(scriptSrc.includes("'self'") || scriptSrc.includes('self'), scriptSrc);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(scriptSrc), `script-src: ${scriptSrc}`);
    assert.match(config, /mode:\s*'hash'/);
  });

  test('the session cookie is HttpOnly, SameSite=Strict, and Secure over https', async () => {
    const https = await openTestApp({ publicUrl: 'https://keel.example' });
    try {
      await https.createUser('ann', 'viewer');
      const res = await https.request('/api/v1/auth/login', {
        method: 'POST',
        json: { username: 'ann', password: TEST_PASSWORD },
      });
      const cookie = res.headers.get('set-cookie') ?? '';
      assert.match(cookie, /^keel_session=/);
      for (const flag of ['HttpOnly', 'SameSite=Strict', 'Secure', 'Path=/'])
        assert.ok(cookie.includes(flag), flag);
      assert.match(res.headers.get('strict-transport-security') ?? '', /max-age=/);
    } finally {
      await https.close();
    }
  });
});
