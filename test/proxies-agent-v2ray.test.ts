// Proves the v2ray adapter with the real v2ray (server and, as the client, a second v2ray with
// SOCKS inbounds): VLESS, VMess, Trojan and Shadowsocks inbounds carry a request to a local target;
// adding and removing a user goes through the API (same pid) and an open connection of another
// user keeps carrying bytes meanwhile; per-user traffic comes from StatsService; an invalid change
// is refused by `v2ray -test` and one that passes it but cannot serve (its port is taken) is rolled
// back by itself; an older generation after a newer one is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KeelError, ProxyUserSpec } from '@keel/shared';
import { need } from './install-helpers.ts';
import {
  echoTarget,
  freePort,
  harness,
  httpTarget,
  httpThroughSocks,
  roundTrip,
  socks5Connect,
  startV2rayClient,
  takenPort,
} from './proxies-agent-setup.ts';
import { waitForPort } from '../agent/src/configs/adapter.ts';

const skip = need('v2ray');

test(
  'v2ray: four protocols serve, users through the API keep connections, rollback, traffic',
  { skip, timeout: 150_000 },
  async (t) => {
    const h = await harness();
    t.after(() => h.close());
    const target = await httpTarget('hello through v2ray');
    const echo = await echoTarget();
    t.after(() => target.close());
    t.after(() => echo.close());
    const [pVless, pVmess, pTrojan, pSs, apiPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const inbounds = [
      { tag: 'vless', protocol: 'vless', port: pVless },
      { tag: 'vmess', protocol: 'vmess', port: pVmess },
      { tag: 'trojan', protocol: 'trojan', port: pTrojan },
      { tag: 'ss', protocol: 'shadowsocks', port: pSs, method: 'chacha20-poly1305' },
    ];
    const settings = (extra: Record<string, unknown>[] = []) => ({
      listenAddress: '127.0.0.1',
      apiPort,
      inbounds: [...inbounds, ...extra],
    });
    const alice: ProxyUserSpec = {
      id: 'alice',
      uuid: '5f1a8f0e-3c2b-4d7a-9e61-0a1b2c3d4e5f',
      password: 'alice-secret-pw',
    };
    const bob: ProxyUserSpec = {
      id: 'bob',
      uuid: '0d9c8b7a-6f5e-4d3c-8b2a-19f8e7d6c5b4',
      password: 'bob-secret-pw-1',
      inbounds: ['vless', 'vmess', 'trojan'],
    };

    const r1 = await h.engine.apply({
      instance: 'vpn-1',
      adapter: 'v2ray',
      generation: 1,
      settings: settings(),
      users: [alice],
    });
    assert.equal(r1.method, 'restart');
    const pid = h.supervisor.status('proxy-vpn-1').pid;

    // The client: one v2ray with a SOCKS inbound per (protocol, user).
    const socks = {
      vlessA: await freePort(),
      vmessA: await freePort(),
      trojanA: await freePort(),
      ssA: await freePort(),
      vlessB: await freePort(),
    };
    const vnext = (port: number, user: Record<string, unknown>) => ({
      vnext: [{ address: '127.0.0.1', port, users: [user] }],
    });
    startV2rayClient(t, h.dir, socks, [
      { tag: 'vlessA', protocol: 'vless', settings: vnext(pVless, { id: alice.uuid, encryption: 'none' }) },
      {
        tag: 'vmessA',
        protocol: 'vmess',
        settings: vnext(pVmess, { id: alice.uuid, alterId: 0, security: 'auto' }),
      },
      {
        tag: 'trojanA',
        protocol: 'trojan',
        settings: { servers: [{ address: '127.0.0.1', port: pTrojan, password: alice.password }] },
      },
      {
        tag: 'ssA',
        protocol: 'shadowsocks',
        settings: {
          servers: [
            { address: '127.0.0.1', port: pSs, method: 'chacha20-poly1305', password: alice.password },
          ],
        },
      },
      { tag: 'vlessB', protocol: 'vless', settings: vnext(pVless, { id: bob.uuid, encryption: 'none' }) },
    ]);
    for (const port of Object.values(socks)) await waitForPort('127.0.0.1', port, 10_000);

    for (const via of ['vlessA', 'vmessA', 'trojanA', 'ssA'] as const) {
      assert.match(await httpThroughSocks(socks[via], target.port), /hello through v2ray/, via);
    }
    await assert.rejects(
      httpThroughSocks(socks.vlessB, target.port).then((t) =>
        t.includes('hello') ? t : Promise.reject(new Error('no answer')),
      ),
    );

    // Alice keeps a connection open while Bob is added through the API.
    const open = await socks5Connect(socks.vlessA, '127.0.0.1', echo.port);
    t.after(() => open.destroy());
    assert.equal(await roundTrip(open, 'before'), 'before');
    const r2 = await h.engine.apply({
      instance: 'vpn-1',
      adapter: 'v2ray',
      generation: 2,
      settings: settings(),
      users: [alice, bob],
    });
    assert.equal(r2.method, 'api');
    assert.equal(h.supervisor.status('proxy-vpn-1').pid, pid);
    assert.equal(await roundTrip(open, 'after-adding-bob'), 'after-adding-bob');
    assert.match(await httpThroughSocks(socks.vlessB, target.port), /hello through v2ray/);
    assert.match(r2.files[0]!.content, /"email": "bob"/);

    // Removing Bob: API again, Alice's connection still carries bytes, Bob is refused.
    const r3 = await h.engine.apply({
      instance: 'vpn-1',
      adapter: 'v2ray',
      generation: 3,
      settings: settings(),
      users: [alice],
    });
    assert.equal(r3.method, 'api');
    assert.equal(await roundTrip(open, 'after-removing-bob'), 'after-removing-bob');
    const bobNow = await httpThroughSocks(socks.vlessB, target.port).catch(() => '');
    assert.doesNotMatch(bobNow, /hello through v2ray/);

    // Traffic per user from StatsService.
    const traffic = await h.engine.traffic('vpn-1');
    const a = traffic.users.find((u) => u.id === 'alice')!;
    assert.ok(a.upBytes > 0 && a.downBytes > 0, JSON.stringify(traffic));
    assert.match(traffic.counterEpoch, /^\d+@\d+$/);

    // Invalid: v2ray -test cannot load a certificate that does not exist.
    await assert.rejects(
      h.engine.apply({
        instance: 'vpn-1',
        adapter: 'v2ray',
        generation: 4,
        settings: settings([
          {
            tag: 'tls',
            protocol: 'vless',
            port: await freePort(),
            tls: { certificatePath: '/nonexistent/c.pem', keyPath: '/nonexistent/k.pem' },
          },
        ]),
        users: [alice],
      }),
      (err: KeelError) => err.code === 'config.invalid',
    );
    assert.equal(await roundTrip(open, 'after-invalid'), 'after-invalid');

    // Passes -test, but its new inbound's port is taken: v2ray cannot start; rolled back by itself.
    const taken = await takenPort(t);
    await assert.rejects(
      h.engine.apply({
        instance: 'vpn-1',
        adapter: 'v2ray',
        generation: 5,
        settings: settings([{ tag: 'extra', protocol: 'vmess', port: taken }]),
        users: [alice],
      }),
      (err: KeelError) => err.code === 'config.unhealthy',
    );
    assert.equal((await h.engine.status()).instances[0]!.generation, 3);
    assert.match(await httpThroughSocks(socks.vlessA, target.port), /hello through v2ray/);

    // Out of order.
    await assert.rejects(
      h.engine.apply({
        instance: 'vpn-1',
        adapter: 'v2ray',
        generation: 2,
        settings: settings(),
        users: [alice, bob],
      }),
      (err: KeelError) => err.code === 'config.stale_generation',
    );
  },
);
