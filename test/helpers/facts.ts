// A plausible set of host facts for tests that need an agent's report without running one.
import type { HostFacts } from '@keel/shared';

export const sampleFacts: HostFacts = {
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
