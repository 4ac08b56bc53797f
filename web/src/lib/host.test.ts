// Proves the console's client boundary for hosts: any value the API or the live stream carries
// becomes a renderable host (placeholders for what is missing or odd), or is left out without an id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TEXT, parseHost, parseHosts, showableText } from './host.ts';

const goodFacts = {
  hostname: 'web-1',
  os: { platform: 'linux', distro: 'Debian GNU/Linux', release: '12', codename: 'bookworm', arch: 'x64' },
  kernel: '6.1.0-18-amd64',
  cpu: { model: 'AMD EPYC 7B13', cores: 2, physicalCores: 1, speedGHz: 2.45 },
  memory: { totalBytes: 4_000_000_000 },
  disks: [{ mount: '/', fs: '/dev/vda1', type: 'ext4', sizeBytes: 40e9, usedBytes: 12e9 }],
  agentVersion: '0.1.0',
  bootTime: 1_700_000_000_000,
  uptimeSeconds: 3600,
};
const good = {
  id: '7d4f8a52-0000-4000-8000-000000000001',
  name: 'web-1',
  online: true,
  connectedAt: '2025-01-01T00:00:00.000Z',
  lastSeenAt: null,
  enrolledAt: '2025-01-01T00:00:00.000Z',
  revokedAt: null,
  agentVersion: '0.1.0',
  facts: goodFacts,
  capabilities: {
    agentVersion: '0.2.0',
    requests: ['ping', 'facts.refresh'],
    streams: ['events'],
    channels: [],
    announced: true,
  },
};

test('a well-formed host passes through unchanged', () => {
  assert.deepEqual(parseHost(good), good);
});

test('capabilities: absent (an older controller) is null; an assumed baseline stays marked', () => {
  const { capabilities: _drop, ...old } = good;
  assert.equal(parseHost(old)?.capabilities, null);
  const assumed = parseHost({ ...good, capabilities: { ...good.capabilities, announced: false } });
  assert.equal(assumed?.capabilities?.announced, false);
});

test('null, partial and mistyped facts become placeholders, never a throw', () => {
  const nullOs = parseHost({ ...good, facts: { ...goodFacts, os: null } });
  assert.deepEqual(nullOs?.facts?.os, {
    platform: null,
    distro: null,
    release: null,
    codename: null,
    arch: null,
  });
  assert.equal(nullOs?.facts?.kernel, goodFacts.kernel);

  const partial = parseHost({ ...good, facts: { hostname: 'only-this' } })!;
  assert.equal(partial.facts?.hostname, 'only-this');
  assert.equal(partial.facts?.cpu.cores, null);
  assert.deepEqual(partial.facts?.disks, []);

  const wrong = parseHost({
    ...good,
    facts: {
      ...goodFacts,
      hostname: 42,
      cpu: { model: ['x'], cores: 'many', physicalCores: -1, speedGHz: Infinity },
      memory: 'lots',
      disks: [null, 'sda', { mount: '/', sizeBytes: -5, usedBytes: '1' }],
      bootTime: '2025',
    },
  })!;
  assert.equal(wrong.facts?.hostname, null);
  assert.deepEqual(wrong.facts?.cpu, { model: null, cores: null, physicalCores: null, speedGHz: null });
  assert.deepEqual(wrong.facts?.memory, { totalBytes: null });
  assert.deepEqual(wrong.facts?.disks, [
    { mount: '/', fs: null, type: null, sizeBytes: null, usedBytes: null },
  ]);
  assert.equal(wrong.facts?.bootTime, null);

  for (const facts of ['text', 7, [goodFacts], true])
    assert.equal(parseHost({ ...good, facts })?.facts, null);
});

test('NUL, controls, bidi overrides and huge strings are made showable', () => {
  const h = parseHost({
    ...good,
    name: 'evil\u0000\u202ename',
    facts: { ...goodFacts, kernel: 'k'.repeat(5_000_000), hostname: '\ud800x' },
  })!;
  assert.equal(h.name, 'evil\uFFFD\uFFFDname');
  assert.equal(h.facts?.kernel?.length, MAX_TEXT);
  assert.ok(h.facts?.kernel?.endsWith('…'));
  assert.equal(h.facts?.hostname, '\uFFFDx');
  assert.equal(showableText('tab\there'), 'tab\uFFFDhere');
});

test('wrong top-level types: no id is left out, the rest falls back', () => {
  assert.equal(parseHost(null), null);
  assert.equal(parseHost({ ...good, id: 5 }), null);
  assert.equal(parseHost({ ...good, id: '' }), null);
  const odd = parseHost({ id: 'abc', name: null, online: 'yes', enrolledAt: {}, capabilities: 'all' })!;
  assert.equal(odd.name, 'abc', 'the id stands in for a missing name');
  assert.equal(odd.online, false);
  assert.equal(odd.enrolledAt, null);
  assert.equal(odd.facts, null);
  assert.equal(odd.capabilities, null);
  const caps = parseHost({ ...good, capabilities: { requests: ['ping', 3, null], streams: 'events' } })!;
  assert.deepEqual(caps.capabilities, {
    agentVersion: null,
    requests: ['ping'],
    streams: [],
    channels: [],
    announced: true,
  });
  assert.deepEqual(
    parseHosts([good, { name: 'no id' }, 'x']).map((h) => h.id),
    [good.id],
  );
  assert.deepEqual(parseHosts({ hosts: [] }), []);
});
