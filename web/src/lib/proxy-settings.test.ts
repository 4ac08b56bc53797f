// Proves the per-adapter proxy settings forms: each adapter's settings round-trip through its form
// and pass the adapter's own schema; fields the form does not show survive an edit; mistakes are
// named at their field (the same path the controller's 400 names); a public address is checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adapterSettingsSchemas } from '@keel/shared';
import {
  fieldOfServerError,
  fieldsOf,
  formFromSettings,
  newInbound,
  newSite,
  publicAddressProblem,
  settingsFromForm,
  PROXY_ADAPTERS,
} from './proxy-settings.ts';

const examples = {
  nginx: {
    listenAddress: '0.0.0.0',
    workerProcesses: 2,
    sites: [
      {
        serverNames: ['example.com', 'www.example.com'],
        port: 443,
        tls: { certificatePath: '/etc/ssl/a.pem', keyPath: '/etc/ssl/a.key' },
        upstream: 'http://127.0.0.1:8080',
      },
      { serverNames: ['_'], port: 80, root: '/srv/www' },
    ],
  },
  v2ray: {
    listenAddress: '::',
    apiPort: 10085,
    logLevel: 'warning',
    inbounds: [
      { tag: 'vless-in', protocol: 'vless', port: 443, network: 'ws', wsPath: '/v' },
      { tag: 'ss-in', protocol: 'shadowsocks', port: 8388, network: 'tcp', method: 'aes-256-gcm' },
    ],
  },
  shadowsocks: { listenAddress: '0.0.0.0', method: 'aes-256-gcm', mode: 'tcp_only', timeoutSeconds: 120 },
  telemt: {
    port: 443,
    listenAddress: '0.0.0.0',
    tlsDomain: 'www.example.com',
    modes: { classic: false, secure: true, tls: true },
    metricsPort: 9090,
    template: '[timeouts]\nclient_handshake = 15\n',
  },
} as const;

test('each adapter round-trips through its form and passes its schema', () => {
  for (const adapter of PROXY_ADAPTERS) {
    const stored = adapterSettingsSchemas[adapter].parse(examples[adapter]) as Record<string, unknown>;
    const { settings, errors } = settingsFromForm(formFromSettings(adapter, stored));
    assert.deepEqual(errors, [], adapter);
    assert.deepEqual(adapterSettingsSchemas[adapter].parse(settings), stored, adapter);
  }
});

test('a new node starts from settings the schema accepts once the required fields are filled', () => {
  const nginx = formFromSettings('nginx', null);
  nginx.sites[0]!.serverNames = 'example.com';
  assert.equal(adapterSettingsSchemas.nginx.safeParse(settingsFromForm(nginx).settings).success, true);
  const v2 = formFromSettings('v2ray', null);
  v2.inbounds.push(newInbound(v2.inbounds.map((i) => i.tag)));
  v2.inbounds[1]!.port = 8443;
  const out = settingsFromForm(v2);
  assert.deepEqual(out.errors, []);
  assert.equal(adapterSettingsSchemas.v2ray.safeParse(out.settings).success, true);
  const tm = formFromSettings('telemt', null);
  assert.equal(settingsFromForm(tm).errors[0]?.field, 'tlsDomain');
});

test('fields the form does not show survive an edit', () => {
  const stored = {
    ...examples.v2ray,
    futureKnob: 7,
    inbounds: [{ ...examples.v2ray.inbounds[0], sniff: true }],
  };
  const f = formFromSettings('v2ray', stored);
  f.inbounds[0]!.port = 8443;
  const { settings } = settingsFromForm(f);
  assert.equal(settings.futureKnob, 7);
  const ib = (settings.inbounds as Record<string, unknown>[])[0]!;
  assert.equal(ib.sniff, true);
  assert.equal(ib.port, 8443);
});

test('mistakes are named at their field, as the controller names them', () => {
  const f = formFromSettings('nginx', examples.nginx);
  f.sites[0]!.upstream = 'ftp://x';
  f.sites[1]!.root = '/srv/../etc';
  f.sites.push({ ...newSite(), serverNames: 'bad_name!', port: 70000 });
  f.listenAddress = '300.1.1.1';
  const fields = settingsFromForm(f)
    .errors.map((e) => e.field)
    .sort();
  assert.deepEqual(fields, [
    'listenAddress',
    'sites.0.upstream',
    'sites.1.root',
    'sites.2.port',
    'sites.2.serverNames',
  ]);

  const v = formFromSettings('v2ray', examples.v2ray);
  v.inbounds[1]!.tag = 'vless-in';
  v.apiPort = 443;
  assert.deepEqual(
    settingsFromForm(v)
      .errors.map((e) => e.field)
      .sort(),
    ['apiPort', 'inbounds.1.tag'],
  );

  const t = formFromSettings('telemt', examples.telemt);
  t.template = '[access.users]\nx = "00"\n';
  t.classic = t.secure = t.fakeTls = false;
  assert.deepEqual(
    settingsFromForm(t)
      .errors.map((e) => e.field)
      .sort(),
    ['modes', 'template'],
  );

  // The controller's message for a field the form shows maps onto it; a deeper path to its field.
  const known = fieldsOf(f);
  assert.equal(
    fieldOfServerError('settings.sites.0.upstream: http(s)://host:port[/path]', known),
    'sites.0.upstream',
  );
  assert.equal(fieldOfServerError('settings.sites.1.tls.keyPath: bad', known), 'sites.1.tls.keyPath');
  assert.equal(
    fieldOfServerError('settings.sites.0.serverNames.3: a domain name', known),
    'sites.0.serverNames',
  );
  assert.equal(fieldOfServerError('host.offline', known), null);
});

test('public address: DNS names, IPv4 and IPv6; no ports, brackets or wildcards', () => {
  for (const ok of ['vpn.example.net', 'edge-1', '203.0.113.7', '2001:db8::1', '::ffff:192.0.2.1', ''])
    assert.equal(publicAddressProblem(ok), null, ok);
  for (const bad of [
    'vpn.example.net:443',
    '[2001:db8::1]',
    '*.example.net',
    '300.1.1.1',
    'a b',
    'http://x',
    '1::2::3',
  ])
    assert.notEqual(publicAddressProblem(bad), null, bad);
});
