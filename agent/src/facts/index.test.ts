// Proves collectFacts reads this machine's real facts (valid against hostFactsSchema, plausible
// values, only real filesystems, quickly) and factsChanged reports the keys that changed.
import { hostname } from 'node:os';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostFactsSchema, type HostFacts } from '@keel/shared';
import { AGENT_VERSION } from '../version.ts';
import { collectFacts, factsChanged } from './index.ts';

test('collectFacts reports plausible, schema-valid facts of this host', async () => {
  const facts = await collectFacts();
  hostFactsSchema.parse(facts);
  assert.equal(facts.hostname, hostname());
  assert.equal(facts.os.platform, 'linux');
  assert.ok(facts.os.distro.length > 0);
  assert.equal(facts.os.arch, process.arch);
  assert.ok(facts.kernel.length > 0);
  assert.ok(facts.cpu.cores >= 1);
  assert.ok(facts.cpu.physicalCores >= 1);
  assert.ok(facts.memory.totalBytes > 0);
  assert.equal(facts.agentVersion, AGENT_VERSION);
  assert.ok(facts.bootTime > Date.parse('2000-01-01') && facts.bootTime <= Date.now());
  assert.ok(Math.abs(facts.bootTime + facts.uptimeSeconds * 1000 - Date.now()) < 5000);
  assert.ok(facts.disks.length >= 1, 'the root filesystem at least');
  const devices = new Set<string>();
  for (const d of facts.disks) {
    assert.ok(!['tmpfs', 'devtmpfs', 'overlay', 'squashfs', 'proc', 'sysfs'].includes(d.type), d.type);
    assert.ok(d.sizeBytes > 0 && d.usedBytes <= d.sizeBytes);
    assert.ok(!devices.has(d.fs), `device ${d.fs} listed twice`);
    devices.add(d.fs);
  }
});

test('collectFacts is fast once warm, and stable between calls', async () => {
  const first = await collectFacts();
  const t0 = performance.now();
  const second = await collectFacts();
  const ms = performance.now() - t0;
  assert.ok(ms < 250, `collectFacts took ${ms.toFixed(1)} ms`);
  assert.deepEqual(factsChanged(first, second), []);
  assert.equal(second.bootTime, first.bootTime);
});

test('factsChanged lists changed top-level keys, ignoring uptime and small disk usage changes', async () => {
  const a: HostFacts = await collectFacts();
  const disk = { mount: '/', fs: '/dev/vda', type: 'ext4', sizeBytes: 100e9, usedBytes: 40e9 };
  const base: HostFacts = { ...a, disks: [disk] };
  assert.deepEqual(factsChanged(base, { ...base, uptimeSeconds: base.uptimeSeconds + 3600 }), []);
  assert.deepEqual(factsChanged(base, { ...base, disks: [{ ...disk, usedBytes: 40.5e9 }] }), []);
  assert.deepEqual(factsChanged(base, { ...base, disks: [{ ...disk, usedBytes: 45e9 }] }), ['disks']);
  assert.deepEqual(factsChanged(base, { ...base, disks: [] }), ['disks']);
  assert.deepEqual(
    factsChanged(base, {
      ...base,
      hostname: 'renamed',
      kernel: '9.9.9',
      memory: { totalBytes: base.memory.totalBytes * 2 },
      os: { ...base.os, release: '99' },
    }),
    ['hostname', 'os', 'kernel', 'memory'],
  );
});
