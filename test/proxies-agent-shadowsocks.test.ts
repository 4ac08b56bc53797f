// Proves the shadowsocks-libev adapter with the real ss-manager/ss-server and `ss-local` as the
// client: a user's port carries a request to a local target; adding a user goes through
// ss-manager's API (same pid) while another user's open connection keeps carrying bytes; an
// invalid change (two users on one port) is refused and the old config keeps serving; a change
// whose new port is taken by another program fails the health check and is rolled back by itself;
// traffic per user is read, and a user whose port is removed and added again through the API (a
// password change) keeps its counter (carried, same epoch: not reset, not doubled); an older
// generation after a newer one is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { KeelError, ProxyUserSpec } from '@keel/shared';
import { waitFor } from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import {
  echoTarget,
  freePort,
  harness,
  httpTarget,
  httpThroughSocks,
  roundTrip,
  socks5Connect,
  takenPort,
} from './proxies-agent-setup.ts';
import { waitForPort } from '../agent/src/configs/adapter.ts';

const skip = need('ss-manager') || need('ss-local');

test(
  'shadowsocks: serves per-user ports, API adds keep connections, invalid refused, rollback',
  { skip, timeout: 150_000 },
  async (t) => {
    const h = await harness();
    t.after(() => h.close());
    const target = await httpTarget('hello through shadowsocks');
    const echo = await echoTarget();
    t.after(() => target.close());
    t.after(() => echo.close());
    const method = 'chacha20-ietf-poly1305';
    const settings = { listenAddress: '127.0.0.1', method, mode: 'tcp_only' };
    const alice: ProxyUserSpec = { id: 'alice', password: 'alice-ss-password', port: await freePort() };
    const bob: ProxyUserSpec = { id: 'bob', password: 'bob-ss-password', port: await freePort() };

    const r1 = await h.engine.apply({
      instance: 'ss-1',
      adapter: 'shadowsocks',
      generation: 1,
      settings,
      users: [alice],
    });
    assert.equal(r1.method, 'restart');
    const pid = h.supervisor.status('proxy-ss-1').pid;

    const local = async (u: ProxyUserSpec) => {
      const port = await freePort();
      const child = spawn(
        'ss-local',
        [
          '-s',
          '127.0.0.1',
          '-p',
          String(u.port),
          '-l',
          String(port),
          '-b',
          '127.0.0.1',
          '-k',
          u.password!,
          '-m',
          method,
        ],
        {
          stdio: 'ignore',
        },
      );
      t.after(() => child.kill('SIGKILL'));
      await waitForPort('127.0.0.1', port, 10_000);
      return port;
    };
    const socksA = await local(alice);
    assert.match(await httpThroughSocks(socksA, target.port), /hello through shadowsocks/);

    const open = await socks5Connect(socksA, '127.0.0.1', echo.port);
    t.after(() => open.destroy());
    assert.equal(await roundTrip(open, 'before'), 'before');
    const r2 = await h.engine.apply({
      instance: 'ss-1',
      adapter: 'shadowsocks',
      generation: 2,
      settings,
      users: [alice, bob],
    });
    assert.equal(r2.method, 'api');
    assert.equal(h.supervisor.status('proxy-ss-1').pid, pid);
    assert.equal(await roundTrip(open, 'after-adding-bob'), 'after-adding-bob');
    const socksB = await local(bob);
    assert.match(await httpThroughSocks(socksB, target.port), /hello through shadowsocks/);

    // Invalid: two users on one port.
    await assert.rejects(
      h.engine.apply({
        instance: 'ss-1',
        adapter: 'shadowsocks',
        generation: 3,
        settings,
        users: [alice, bob, { id: 'carol', password: 'carol-ss-password', port: alice.port }],
      }),
      (err: KeelError) => err.code === 'config.invalid' && /share port/.test(err.message),
    );
    assert.equal(await roundTrip(open, 'after-invalid'), 'after-invalid');

    // A new user's port is held by another program: ss-server cannot serve it; rolled back.
    const taken = await takenPort(t);
    await assert.rejects(
      h.engine.apply({
        instance: 'ss-1',
        adapter: 'shadowsocks',
        generation: 4,
        settings,
        users: [alice, bob, { id: 'carol', password: 'carol-ss-password', port: taken }],
      }),
      (err: KeelError) => err.code === 'config.unhealthy' && /held by/.test(err.message),
    );
    assert.equal((await h.engine.status()).instances[0]!.generation, 2);
    assert.doesNotMatch((await h.engine.status()).instances[0]!.files[0]!.path, /carol/);
    assert.match(await httpThroughSocks(socksB, target.port), /hello through shadowsocks/);

    const traffic = await h.engine.traffic('ss-1');
    assert.ok(traffic.users.find((u) => u.id === 'alice')!.downBytes >= 0);
    assert.deepEqual(traffic.users.map((u) => u.id).sort(), ['alice', 'bob']);

    // A password change removes and re-adds bob's port; its total is carried, in the same epoch.
    const bobBytes = async () => {
      const t2 = await h.engine.traffic('ss-1');
      assert.equal(t2.counterEpoch, traffic.counterEpoch, 'same ss-manager run');
      return t2.users.find((u) => u.id === 'bob')?.downBytes ?? 0;
    };
    // ss-server reports its totals to ss-manager every few seconds.
    const before = await waitFor(
      async () => ((await bobBytes()) > 0 ? await bobBytes() : null),
      60_000,
      'bob counted',
    );
    const bob2: ProxyUserSpec = { ...bob, password: 'bob-new-ss-password' };
    const r5 = await h.engine.apply({
      instance: 'ss-1',
      adapter: 'shadowsocks',
      generation: 5,
      settings,
      users: [alice, bob2],
    });
    assert.equal(r5.method, 'api');
    const carried = await bobBytes();
    assert.ok(carried >= before, `bob's counter went from ${before} to ${carried} over the re-add`);
    assert.ok(carried < before * 2 + 4096, `bob's counter is not doubled (${before} -> ${carried})`);
    const socksB2 = await local(bob2);
    assert.match(await httpThroughSocks(socksB2, target.port), /hello through shadowsocks/);
    await waitFor(
      async () => ((await bobBytes()) > carried ? true : null),
      60_000,
      'bob counted again after the re-add',
    );

    await assert.rejects(
      h.engine.apply({ instance: 'ss-1', adapter: 'shadowsocks', generation: 1, settings, users: [alice] }),
      (err: KeelError) => err.code === 'config.stale_generation',
    );
  },
);
