// Proves the public surface around the API: /api/v1/openapi.json lists every contract path, the
// Swagger UI page and its assets load from node_modules (no CDN), /healthz and /readyz answer, and
// the console build is served with an index.html fallback and the right cache headers.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openTestApp, type TestApp } from '../app-fixture.ts';

let t: TestApp;
let webRoot: string;
before(async () => {
  webRoot = mkdtempSync(path.join(tmpdir(), 'keel-web-'));
  mkdirSync(path.join(webRoot, '_app/immutable/entry'), { recursive: true });
  writeFileSync(path.join(webRoot, 'index.html'), '<!doctype html><title>Keel</title>');
  writeFileSync(path.join(webRoot, '_app/immutable/entry/start.abc123.js'), 'export {};');
  writeFileSync(path.join(webRoot, 'favicon.svg'), '<svg/>');
  t = await openTestApp({ appDeps: { webRoot } });
});
after(async () => {
  await t.close();
  rmSync(webRoot, { recursive: true, force: true });
});

describe('OpenAPI and docs', () => {
  test('GET /api/v1/openapi.json is an OpenAPI 3.1 document with every contract path', async () => {
    const res = await t.request('/api/v1/openapi.json');
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
    };
    assert.equal(doc.openapi, '3.1.0');
    const expected: [string, string][] = [
      ['/auth/login', 'post'],
      ['/auth/session', 'get'],
      ['/auth/logout', 'post'],
      ['/hosts', 'get'],
      ['/hosts/{id}', 'get'],
      ['/hosts/{id}/revoke', 'post'],
      ['/hosts/{id}/ping', 'post'],
      ['/hosts/{id}/refresh-facts', 'post'],
      ['/hosts/{id}/events', 'get'],
      ['/join-tokens', 'post'],
      ['/join-tokens', 'get'],
      ['/join-tokens/{id}', 'delete'],
      ['/events', 'get'],
    ];
    for (const [p, method] of expected) assert.ok(doc.paths[p]?.[method], `${method} ${p} missing`);
    assert.ok(doc.components.securitySchemes.cookieAuth);
    for (const name of ['Host', 'HostFacts', 'JoinToken', 'Error', 'User'])
      assert.ok(doc.components.schemas[name], name);
  });

  test('docs/api/openapi.json is the document the routes generate (npm run docs:api rewrites it)', async () => {
    const res = await t.request('/api/v1/openapi.json');
    const doc = (await res.json()) as { servers?: unknown };
    delete doc.servers; // depends on the address the app is reached at
    const generated = `${JSON.stringify(doc, null, 2)}\n`;
    const file = fileURLToPath(new URL('../../../docs/api/openapi.json', import.meta.url));
    if (process.env.KEEL_WRITE_API_DOC) {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, generated);
    }
    const committed = existsSync(file) ? readFileSync(file, 'utf8') : '';
    assert.ok(committed === generated, 'docs/api/openapi.json is stale: run npm run docs:api and commit it');
  });

  test('GET /api/v1/docs serves Swagger UI from local assets only', async () => {
    const res = await t.request('/api/v1/docs');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await res.text();
    assert.doesNotMatch(html, /https?:\/\//, 'the page must not load anything from another host');
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.includes('/api/v1/docs/assets/swagger-ui.css'));
    assert.ok(assets.includes('/api/v1/docs/assets/swagger-ui-bundle.js'));
    for (const asset of assets) {
      const a = await t.request(asset);
      assert.equal(a.status, 200, asset);
      assert.ok((await a.arrayBuffer()).byteLength > 0, asset);
    }
    const css = await t.request('/api/v1/docs/assets/swagger-ui.css');
    assert.match(css.headers.get('content-type') ?? '', /text\/css/);
    const init = await (await t.request('/api/v1/docs/assets/init.js')).text();
    assert.match(init, /\/api\/v1\/openapi\.json/);
    const missing = await t.request('/api/v1/docs/assets/package.json');
    assert.equal(missing.status, 404);
  });
});

describe('probes', () => {
  test('/healthz is 200; /readyz follows ready()', async () => {
    assert.equal((await t.request('/healthz')).status, 200);
    assert.equal((await t.request('/readyz')).status, 200);
    t.setReady(false);
    const notReady = await t.request('/readyz');
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { status: 'not_ready' });
    t.setReady(true);
  });
});

describe('console', () => {
  test('serves index.html at / and for client-side routes, with no-cache', async () => {
    for (const p of ['/', '/hosts/6c1d9a52-9a8e-4c6b-8a47-1f0d7f1c2b3a', '/login']) {
      const res = await t.request(p);
      assert.equal(res.status, 200, p);
      assert.equal(await res.text(), '<!doctype html><title>Keel</title>');
      assert.equal(res.headers.get('cache-control'), 'no-cache', p);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
    }
  });

  test('hashed assets are immutable; other files revalidate; missing assets 404', async () => {
    const immutable = await t.request('/_app/immutable/entry/start.abc123.js');
    assert.equal(immutable.status, 200);
    assert.equal(immutable.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    const icon = await t.request('/favicon.svg');
    assert.equal(icon.headers.get('cache-control'), 'no-cache');
    const missing = await t.request('/_app/immutable/entry/gone.js');
    assert.equal(missing.status, 404);
    const traversal = await t.request('/..%2f..%2fetc/passwd');
    assert.notEqual(traversal.status, 500);
    assert.ok(!(await traversal.text()).includes('root:'));
  });

  test('API paths never fall back to the console', async () => {
    const res = await t.request('/api/v1/nothing-here');
    assert.equal(res.status, 404);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  });
});
