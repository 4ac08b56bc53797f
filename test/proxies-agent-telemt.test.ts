// Proves the telemt adapter against a STAND-IN for telemt (test/telemt-stand-in.mjs; telemt is not
// packaged for Debian): the rendered config.toml parses with a real TOML parser and has the
// documented sections and keys (template sections kept), a user change is a hot reload the
// stand-in picks up by itself (same pid), traffic is read from the Prometheus counters, a template
// holding user tables is refused, and an older generation is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import type { KeelError, ProxyUserSpec } from '@keel/shared';
import { repoRoot } from './helpers/fleet.ts';
import { freePort, harness, roundTrip } from './proxies-agent-setup.ts';
import { checkTelemtConfig } from '../agent/src/configs/telemt.ts';

const standIn = join(repoRoot, 'test/telemt-stand-in.mjs');

/** Connects to the stand-in as a user (first line = secret) and echoes `text`. */
async function asUser(port: number, secret: string, text: string): Promise<string> {
  const s = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.write(`${secret}\n`);
  try {
    return await roundTrip(s, text, 2_000);
  } finally {
    s.destroy();
  }
}

test(
  'telemt (stand-in): documented TOML, hot reload, traffic from metrics',
  { timeout: 90_000 },
  async (t) => {
    const h = await harness({ ...process.env, KEEL_TELEMT_BIN: standIn });
    t.after(() => h.close());
    const [port, metricsPort] = [await freePort(), await freePort()];
    const settings = {
      port,
      listenAddress: '127.0.0.1',
      tlsDomain: 'petrovich.ru',
      metricsPort,
      template: '[timeouts]\nclient_handshake = 15\n\n[censorship]\nmask = true\n',
    };
    const alice: ProxyUserSpec = {
      id: 'alice',
      secret: '0123456789abcdef0123456789abcdef',
      maxTcpConns: 50,
      dataQuotaBytes: 10 * 2 ** 30,
      expiresAt: Date.UTC(2030, 0, 1),
      maxUniqueIps: 3,
    };
    const bob: ProxyUserSpec = { id: 'bob.2', secret: 'fedcba9876543210fedcba9876543210' };

    const r1 = await h.engine.apply({
      instance: 'mt',
      adapter: 'telemt',
      generation: 1,
      settings,
      users: [alice],
    });
    assert.equal(r1.method, 'restart');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed TOML document, checked field by field below
    const doc = parse(r1.files[0]!.content) as Record<string, any>;
    assert.deepEqual(checkTelemtConfig(doc), []);
    assert.deepEqual({ ...doc.general.modes }, { classic: false, secure: false, tls: true });
    assert.equal(doc.server.port, port);
    assert.equal(doc.censorship.tls_domain, 'petrovich.ru');
    assert.equal(doc.censorship.mask, true, 'template keys kept');
    assert.equal(doc.timeouts.client_handshake, 15, 'template section kept');
    assert.equal(doc.access.users.alice, alice.secret);
    assert.equal(doc.access.user_max_tcp_conns.alice, 50);
    assert.equal(doc.access.user_data_quota.alice, 10 * 2 ** 30);
    assert.equal(doc.access.user_expirations.alice, '2030-01-01T00:00:00Z');
    assert.equal(doc.access.user_max_unique_ips.alice, 3);
    assert.equal(await asUser(port, alice.secret!, 'hello-alice'), 'hello-alice');
    await assert.rejects(asUser(port, bob.secret!, 'not yet'));
    const pid = h.supervisor.status('proxy-mt').pid;

    const r2 = await h.engine.apply({
      instance: 'mt',
      adapter: 'telemt',
      generation: 2,
      settings,
      users: [alice, bob],
    });
    assert.equal(r2.method, 'hot-reload');
    assert.match(r2.files[0]!.content, /"bob\.2" = "fedcba9876543210fedcba9876543210"/);
    const until = Date.now() + 5_000;
    let echoed = '';
    while (Date.now() < until && echoed !== 'hello-bob')
      echoed = await asUser(port, bob.secret!, 'hello-bob').catch(() => '');
    assert.equal(echoed, 'hello-bob', 'the stand-in reloaded config.toml by itself');
    assert.equal(h.supervisor.status('proxy-mt').pid, pid);

    const traffic = await h.engine.traffic('mt');
    const a = traffic.users.find((u) => u.id === 'alice')!;
    const b = traffic.users.find((u) => u.id === 'bob.2')!;
    assert.equal(a.upBytes, 'hello-alice'.length);
    assert.equal(a.downBytes, 'hello-alice'.length);
    assert.ok(b.upBytes >= 'hello-bob'.length);

    // A change outside [access] restarts it.
    const r3 = await h.engine.apply({
      instance: 'mt',
      adapter: 'telemt',
      generation: 3,
      settings: { ...settings, tlsDomain: 'example.org' },
      users: [alice, bob],
    });
    assert.equal(r3.method, 'restart');

    await assert.rejects(
      h.engine.apply({
        instance: 'mt',
        adapter: 'telemt',
        generation: 4,
        settings: { ...settings, template: '[access.users]\nmallory = "00000000000000000000000000000000"\n' },
        users: [alice],
      }),
      (err: KeelError) => err.code === 'config.invalid' && /access\.users/.test(err.message),
    );
    await assert.rejects(
      h.engine.apply({ instance: 'mt', adapter: 'telemt', generation: 2, settings, users: [alice] }),
      (err: KeelError) => err.code === 'config.stale_generation',
    );
  },
);
