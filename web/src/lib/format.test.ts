// Proves the console's human formats: binary sizes, compact durations, relative times, host state and ticking uptime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bootTimeMs,
  formatBytes,
  formatDuration,
  formatOs,
  formatRelative,
  hostState,
  shortCpuModel,
  uptimeSeconds,
  usedPercent,
} from './format.ts';
import type { Host, HostFacts } from './types.ts';

const facts: HostFacts = {
  hostname: 'h1',
  os: { platform: 'linux', distro: 'Debian GNU/Linux', release: '12', codename: 'bookworm', arch: 'x64' },
  kernel: '6.1.0',
  cpu: { model: 'x', cores: 2, physicalCores: 1, speedGHz: 2 },
  memory: { totalBytes: 0 },
  disks: [],
  agentVersion: '0.1.0',
  bootTime: 1_700_000_000_000,
  uptimeSeconds: 5,
};
const host: Host = {
  id: 'a',
  name: 'a',
  online: true,
  connectedAt: null,
  lastSeenAt: null,
  enrolledAt: '2025-01-01T00:00:00Z',
  revokedAt: null,
  agentVersion: '0.1.0',
  facts,
  capabilities: null,
};

test('formatBytes uses binary units', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(16 * 1024 ** 2), '16 MiB');
  assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB');
  assert.equal(formatBytes(null), '—');
});

test('formatDuration keeps the two largest units', () => {
  assert.equal(formatDuration(42), '42s');
  assert.equal(formatDuration(3 * 86400 + 4 * 3600 + 59), '3d 4h');
  assert.equal(formatDuration(-1), '—');
});

test('formatRelative reads past and future', () => {
  const now = Date.parse('2025-01-01T12:00:00Z');
  assert.equal(formatRelative('2025-01-01T11:55:00Z', now), '5 min ago');
  assert.equal(formatRelative(now + 7200_000, now), 'in 2 h');
  assert.equal(formatRelative(null, now), 'never');
});

test('host state, uptime from boot time (ms or s), OS and CPU labels', () => {
  assert.equal(hostState(host), 'online');
  assert.equal(hostState({ ...host, online: false }), 'offline');
  assert.equal(hostState({ ...host, revokedAt: '2025-01-01T00:00:00Z' }), 'revoked');
  assert.equal(uptimeSeconds(host, 1_700_000_000_000 + 90_000), 90);
  assert.equal(bootTimeMs({ ...facts, bootTime: 1_700_000_000 }), 1_700_000_000_000);
  assert.equal(uptimeSeconds({ ...host, online: false }, Date.now()), null);
  assert.equal(formatOs(facts), 'Debian GNU/Linux 12');
  assert.equal(shortCpuModel('Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz'), 'Intel Xeon E5-2680 v4');
  assert.equal(shortCpuModel('AMD EPYC 7543P 32-Core Processor'), 'AMD EPYC 7543P');
  assert.equal(usedPercent(50, 200), 25);
  assert.equal(usedPercent(1, 0), null);
  assert.equal(usedPercent(null, 10), null);
});

test('facts with unknown fields format as placeholders', () => {
  const os = { platform: null, distro: null, release: null, codename: null, arch: null };
  assert.equal(formatOs({ ...facts, os }), '—');
  assert.equal(formatOs({ ...facts, os: { ...os, platform: 'linux' } }), 'linux');
  assert.equal(bootTimeMs({ ...facts, bootTime: null }), null);
  assert.equal(uptimeSeconds({ ...host, facts: { ...facts, bootTime: null, uptimeSeconds: null } }, 0), null);
  assert.equal(shortCpuModel(null), '');
});
