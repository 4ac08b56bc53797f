// Proves the console's human formats: binary sizes, byte-axis ticks in one unit, compact durations, relative
// times, host state, ticking uptime and short browser labels for user-agent strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bootTimeMs,
  BYTE_TICK_INCREMENTS,
  describeUserAgent,
  formatByteTicks,
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

test('a byte axis ticks on binary steps and labels every tick in one unit', () => {
  assert.ok(BYTE_TICK_INCREMENTS.includes(1024) && BYTE_TICK_INCREMENTS.includes(256 * 1024));
  assert.ok(!BYTE_TICK_INCREMENTS.includes(1000), 'no decimal step that reads "1000 B"');
  assert.deepEqual(formatByteTicks([0, 512, 1024, 1536], '/s'), [
    '0 KiB/s',
    '0.5 KiB/s',
    '1 KiB/s',
    '1.5 KiB/s',
  ]);
  assert.deepEqual(formatByteTicks([0, 256 * 1024, 512 * 1024, 768 * 1024, 1024 * 1024]), [
    '0 MiB',
    '0.25 MiB',
    '0.5 MiB',
    '0.75 MiB',
    '1 MiB',
  ]);
  assert.deepEqual(formatByteTicks([0, 200, 400, 600]), ['0 B', '200 B', '400 B', '600 B']);
  assert.deepEqual(formatByteTicks([0, 2 * 1024 ** 3, 4 * 1024 ** 3]), ['0 GiB', '2 GiB', '4 GiB']);
  assert.deepEqual(formatByteTicks([]), []);
});

test('a session shows a short browser label for its user-agent string', () => {
  const cases: [string | null, string][] = [
    [
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      'Chrome on Linux',
    ],
    [
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36',
      'Headless Chrome on Linux',
    ],
    [
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chromium/120.0 Chrome/120.0 Safari/537.36',
      'Chromium on Linux',
    ],
    [
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
      'Firefox on Windows',
    ],
    [
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
      'Edge on Windows',
    ],
    [
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
      'Safari on iOS',
    ],
    [
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
      'Safari on macOS',
    ],
    [
      'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
      'Chrome on Android',
    ],
    ['curl/8.5.0', 'curl'],
    ['node', 'node'],
    ['', 'Unknown'],
    [null, 'Unknown'],
  ];
  for (const [ua, label] of cases) assert.equal(describeUserAgent(ua), label, String(ua));
});
