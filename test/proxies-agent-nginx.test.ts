// Proves the nginx adapter with the real nginx: a valid change applies and serves through it, an
// invalid one is refused by `nginx -t` while the old config keeps serving, one that passes -t but
// fails the health check (dead upstream) is rolled back by itself, an older generation after a
// newer one is refused, and a hand edit of the applied file is reported (event + status diff),
// then overwritten and adopted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import type { KeelError } from '@keel/shared';
import { need } from './install-helpers.ts';
import { freePort, harness, httpTarget } from './proxies-agent-setup.ts';
import { httpGet } from '../agent/src/configs/adapter.ts';

const skip = need('nginx');

test(
  'nginx: apply, refuse invalid, roll back unhealthy, refuse stale, drift',
  { skip, timeout: 120_000 },
  async (t) => {
    const h = await harness();
    t.after(() => h.close());
    const a = await httpTarget('hello from target A');
    const b = await httpTarget('hello from target B');
    t.after(() => a.close());
    t.after(() => b.close());
    const port = await freePort();
    const site = (upstream: string, extra: Record<string, unknown> = {}) => ({
      listenAddress: '127.0.0.1',
      sites: [{ serverNames: ['app.example.test'], port, upstream, ...extra }],
    });
    const get = async () => (await httpGet(`http://127.0.0.1:${port}/`, { host: 'app.example.test' })).body;

    const r1 = await h.engine.apply({
      instance: 'edge',
      adapter: 'nginx',
      generation: 1,
      settings: site(`http://127.0.0.1:${a.port}`),
      users: [],
    });
    assert.equal(r1.method, 'restart');
    assert.equal(r1.files.length, 1);
    assert.match(r1.files[0]!.content, /proxy_pass http:\/\/127\.0\.0\.1:\d+;/);
    assert.equal(await get(), 'hello from target A');
    const pid = h.supervisor.status('proxy-edge').pid;

    // Invalid: nginx -t cannot load a certificate that does not exist.
    await assert.rejects(
      h.engine.apply({
        instance: 'edge',
        adapter: 'nginx',
        generation: 2,
        settings: site(`http://127.0.0.1:${b.port}`, {
          tls: { certificatePath: '/nonexistent/cert.pem', keyPath: '/nonexistent/key.pem' },
        }),
        users: [],
      }),
      (err: KeelError) => err.code === 'config.invalid' && /nginx/.test(err.message),
    );
    assert.equal(await get(), 'hello from target A');

    // Passes nginx -t, fails the health check (the upstream is gone): rolled back by itself.
    const dead = await freePort();
    await assert.rejects(
      h.engine.apply({
        instance: 'edge',
        adapter: 'nginx',
        generation: 3,
        settings: site(`http://127.0.0.1:${dead}`),
        users: [],
      }),
      (err: KeelError) => err.code === 'config.unhealthy' && /502/.test(err.message),
    );
    assert.equal(await get(), 'hello from target A');
    assert.ok(h.events.some((e) => e.kind === 'config.rolled_back'));
    assert.equal((await h.engine.status()).instances[0]!.generation, 1);

    // A valid change is a reload: same master pid, new upstream served.
    const r5 = await h.engine.apply({
      instance: 'edge',
      adapter: 'nginx',
      generation: 5,
      settings: site(`http://127.0.0.1:${b.port}`),
      users: [],
    });
    assert.equal(r5.method, 'reload');
    assert.equal(await get(), 'hello from target B');
    assert.equal(h.supervisor.status('proxy-edge').pid, pid);

    // Out of order: generation 4 arrives after 5.
    await assert.rejects(
      h.engine.apply({
        instance: 'edge',
        adapter: 'nginx',
        generation: 4,
        settings: site(`http://127.0.0.1:${a.port}`),
        users: [],
      }),
      (err: KeelError) => err.code === 'config.stale_generation',
    );
    assert.equal(await get(), 'hello from target B');

    // Drift: an edit on the host is reported once with a diff, then overwritten, then adopted.
    const path = r5.files[0]!.path;
    appendFileSync(path, '# tuned by hand\n');
    const deadline = Date.now() + 10_000;
    while (!h.events.some((e) => e.kind === 'config.drift') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const drift = h.events.find((e) => e.kind === 'config.drift');
    assert.ok(drift, 'a config.drift event');
    assert.equal(drift.data.instance, 'edge');
    assert.equal(drift.data.path, path);
    assert.match(String(drift.data.diff), /^\+# tuned by hand$/m);
    let status = (await h.engine.status()).instances[0]!;
    assert.equal(status.drift.length, 1);
    assert.match(status.drift[0]!.diff, /\+# tuned by hand/);

    const over = await h.engine.resolveDrift('edge', 'overwrite');
    assert.equal(over.files[0]!.content, r5.files[0]!.content);
    assert.equal(readFileSync(path, 'utf8'), r5.files[0]!.content);
    assert.equal((await h.engine.status()).instances[0]!.drift.length, 0);

    appendFileSync(path, '# kept\n');
    const adopted = await h.engine.resolveDrift('edge', 'adopt');
    assert.match(adopted.files[0]!.content, /# kept\n$/);
    status = (await h.engine.status()).instances[0]!;
    assert.equal(status.drift.length, 0);
    assert.equal(status.files[0]!.sha256, adopted.files[0]!.sha256);
    assert.equal(await get(), 'hello from target B');
  },
);
