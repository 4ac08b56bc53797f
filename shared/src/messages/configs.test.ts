// Proves the proxy config schemas accept what the adapters need and refuse what could break out of
// a config file (quotes, `..`, bad secrets), and that the config requests are in the catalogue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestDefinition } from '../catalogue.ts';
import { errorCatalogue } from '../errors.ts';
import {
  adapterSettingsSchemas,
  configApplyRequest,
  configDriftEventSchema,
  hostPathSchema,
  proxyAdapters,
  proxyUserSpecSchema,
} from './configs.ts';

test('every config request and error code is registered', () => {
  for (const name of ['config.apply', 'config.status', 'config.drift.resolve', 'config.traffic']) {
    assert.equal(requestDefinition(name)?.name, name);
  }
  for (const code of [
    'config.stale_generation',
    'config.invalid',
    'config.unhealthy',
    'config.apply_failed',
  ]) {
    assert.ok(Object.hasOwn(errorCatalogue, code), code);
  }
  for (const adapter of proxyAdapters) assert.ok(adapterSettingsSchemas[adapter]);
});

test('a proxy user spec: stable id and per-protocol secrets, refused when malformed', () => {
  const ok = proxyUserSpecSchema.parse({
    id: 'alice.1',
    secret: '0123456789abcdef0123456789abcdef',
    uuid: 'b831381d-6324-4d53-ad4f-8cda48b30811',
    password: 'correct-horse',
    inbounds: ['vless-tcp'],
    maxTcpConns: 10,
    dataQuotaBytes: 10 * 2 ** 30,
    expiresAt: Date.UTC(2030, 0, 1),
  });
  assert.equal(ok.id, 'alice.1');
  for (const bad of [
    { id: 'Alice' },
    { id: '-a' },
    { id: 'a', secret: '0123456789ABCDEF0123456789abcdef' },
    { id: 'a', secret: 'ee0123456789abcdef0123456789abcdef' },
    { id: 'a', uuid: 'not-a-uuid' },
    { id: 'a', password: 'short' },
    { id: 'a', password: 'has a space in it' },
    { id: 'a', extra: 1 },
  ]) {
    assert.equal(proxyUserSpecSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});

test('host paths cannot break out of quoting or climb out', () => {
  assert.equal(hostPathSchema.parse('/etc/ssl/certs/a.pem'), '/etc/ssl/certs/a.pem');
  for (const bad of ['relative/x', '/a/../etc/shadow', '/a b', '/a;b', '/a"b', '/a{b}', '/a$b', '/a\nb']) {
    assert.equal(hostPathSchema.safeParse(bad).success, false, bad);
  }
});

test('adapter settings: defaults filled, unsafe values refused', () => {
  const nginx = adapterSettingsSchemas.nginx.parse({
    sites: [{ serverNames: ['example.com'], upstream: 'http://127.0.0.1:8080' }],
  });
  assert.equal(nginx.sites[0]!.port, 80);
  assert.equal(nginx.listenAddress, '0.0.0.0');
  assert.equal(
    adapterSettingsSchemas.nginx.safeParse({
      sites: [{ serverNames: ['a.com'], upstream: 'http://x:1', root: '/srv' }],
    }).success,
    false,
    'both upstream and root',
  );
  assert.equal(
    adapterSettingsSchemas.nginx.safeParse({
      sites: [{ serverNames: ['a.com; include /etc/shadow'], root: '/srv' }],
    }).success,
    false,
  );
  const v2 = adapterSettingsSchemas.v2ray.parse({
    inbounds: [{ tag: 'vless-tcp', protocol: 'vless', port: 443 }],
  });
  assert.equal(v2.apiPort, 10085);
  assert.equal(v2.inbounds[0]!.network, 'tcp');
  assert.equal(
    adapterSettingsSchemas.v2ray.safeParse({
      inbounds: [
        { tag: 'a', protocol: 'vless', port: 1 },
        { tag: 'a', protocol: 'vmess', port: 2 },
      ],
    }).success,
    false,
    'duplicate tags',
  );
  assert.equal(adapterSettingsSchemas.shadowsocks.parse({}).method, 'chacha20-ietf-poly1305');
  const telemt = adapterSettingsSchemas.telemt.parse({ tlsDomain: 'petrovich.ru' });
  assert.deepEqual(telemt.modes, { classic: false, secure: false, tls: true });
  assert.equal(adapterSettingsSchemas.telemt.safeParse({ tlsDomain: 'a b' }).success, false);
});

test('config.apply params: generation >= 1, adapter known', () => {
  const base = { instance: 'edge', adapter: 'nginx', generation: 1, settings: {}, users: [] };
  assert.equal(configApplyRequest.params.safeParse(base).success, true);
  assert.equal(configApplyRequest.params.safeParse({ ...base, generation: 0 }).success, false);
  assert.equal(configApplyRequest.params.safeParse({ ...base, adapter: 'caddy' }).success, false);
  assert.equal(configApplyRequest.params.safeParse({ ...base, instance: '../x' }).success, false);
  assert.equal(
    configDriftEventSchema.safeParse({ kind: 'config.drift', instance: 'edge', path: '/x', diff: '-a\n+b' })
      .success,
    true,
  );
});
