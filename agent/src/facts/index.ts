// Host facts: what the agent tells the controller about its machine on connect and when something
// changes. Read from /proc, /etc/os-release, statfs and node:os — no child process and no large
// module (systeminformation, which this used before, cost ~2 MB of an idle agent's memory and ran
// `df` every minute); what cannot change while the agent runs is read once.
import { readFile, statfs } from 'node:fs/promises';
import { arch, cpus, hostname, platform, release, totalmem, uptime } from 'node:os';
import { hostFactsSchema, type DiskFact, type HostFacts } from '@keel/shared';
import { AGENT_VERSION } from '../version.ts';

/** Filesystems that hold no data of their own (memory, kernel views, images, overlays). */
const VIRTUAL_FS = new Set([
  'autofs',
  'binfmt_misc',
  'bpf',
  'cgroup',
  'cgroup2',
  'configfs',
  'debugfs',
  'devpts',
  'devtmpfs',
  'efivarfs',
  'fuse.gvfsd-fuse',
  'fuse.lxcfs',
  'fuse.portal',
  'fusectl',
  'hugetlbfs',
  'iso9660',
  'mqueue',
  'nsfs',
  'overlay',
  'proc',
  'pstore',
  'ramfs',
  'rpc_pipefs',
  'securityfs',
  'squashfs',
  'sysfs',
  'tmpfs',
  'tracefs',
  'udf',
]);

/** A disk's used bytes must move by this share of its size before facts count as changed. */
const DISK_USED_CHANGE = 0.01;
/** How long distro/kernel facts are reused: a dist-upgrade shows within this, without a restart. */
const OS_TTL_MS = 60 * 60 * 1000;

type Cached<T> = { value: T; at: number };
let cpuFacts: Promise<HostFacts['cpu']> | null = null;
let osFacts: Cached<Promise<Pick<HostFacts, 'os' | 'kernel'>>> | null = null;
let bootTime: number | null = null;

/** Where the readings come from (tests point it at fixtures). */
export interface FactsSources {
  /** Reads a file (a path under /proc, /etc, /sys); rejects when missing. */
  read(path: string): Promise<string>;
  statfs(path: string): Promise<{ blocks: number; bfree: number; bsize: number }>;
}

const realSources: FactsSources = {
  read: (path) => readFile(path, 'utf8'),
  statfs: (path) => statfs(path),
};

/**
 * Collects the host's facts and validates them against `hostFactsSchema`. A few ms: CPU and OS
 * facts are cached, the disks are one statfs each.
 */
export async function collectFacts(sources: FactsSources = realSources): Promise<HostFacts> {
  const [cpu, os, disks] = await Promise.all([readCpu(sources), readOs(sources), readDisks(sources)]);
  const now = Date.now();
  const uptimeSeconds = Math.max(0, Math.floor(uptime()));
  // Boot time from clock minus uptime wobbles by a second between calls; keep the first answer
  // unless the clock was stepped (then the new one is right).
  const boot = Math.round((now - uptimeSeconds * 1000) / 1000) * 1000;
  if (bootTime === null || Math.abs(boot - bootTime) > 2000) bootTime = Math.max(0, boot);
  return hostFactsSchema.parse({
    hostname: clip(hostname(), 255),
    os: os.os,
    kernel: os.kernel,
    cpu,
    memory: { totalBytes: Math.max(0, totalmem()) },
    disks: disks.slice(0, 256),
    agentVersion: clip(AGENT_VERSION, 64),
    bootTime,
    uptimeSeconds,
  } satisfies HostFacts);
}

/**
 * Top-level keys whose values differ between two fact sets. `uptimeSeconds` is ignored, and a
 * disk's used bytes only count when they move by 1 % of its size, so that ordinary writes do not
 * make every collection look like a change.
 */
export function factsChanged(a: HostFacts, b: HostFacts): string[] {
  const changed: string[] = [];
  for (const key of Object.keys(hostFactsSchema.shape) as (keyof HostFacts)[]) {
    if (key === 'uptimeSeconds') continue;
    const same = key === 'disks' ? sameDisks(a.disks, b.disks) : sameValue(a[key], b[key]);
    if (!same) changed.push(key);
  }
  return changed;
}

/** CPU model, logical and physical cores, top speed: /proc/cpuinfo, cpufreq, then node:os. */
export function cpuFactsFrom(cpuinfo: string, maxFreqKHz: number | null): HostFacts['cpu'] {
  const list = cpus();
  let model = '';
  let mhz = 0;
  const physical = new Set<string>();
  let processors = 0;
  let physicalId = '';
  for (const line of cpuinfo.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const key = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (key === 'processor') processors++;
    else if (key === 'model name' || (key === 'Model' && !model) || (key === 'cpu model' && !model))
      model ||= value;
    else if (key === 'cpu MHz') mhz = Math.max(mhz, Number(value) || 0);
    else if (key === 'physical id') physicalId = value;
    else if (key === 'core id') physical.add(`${physicalId}/${value}`);
  }
  const cores = processors || list.length;
  const speedMHz = maxFreqKHz ? maxFreqKHz / 1000 : mhz || (list[0]?.speed ?? 0);
  return {
    model: clip(model || (list[0]?.model ?? '').trim(), 256),
    cores: Math.max(0, cores),
    physicalCores: Math.max(0, physical.size || cores),
    speedGHz: Math.max(0, Math.round(speedMHz) / 1000),
  };
}

async function readCpu(src: FactsSources): Promise<HostFacts['cpu']> {
  cpuFacts ??= (async () => {
    const [info, freq] = await Promise.all([
      src.read('/proc/cpuinfo').catch(() => ''),
      src.read('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq').catch(() => ''),
    ]);
    return cpuFactsFrom(info, Number(freq.trim()) || null);
  })();
  return cpuFacts;
}

/** os-release `KEY=value` pairs (values unquoted). */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    out.set(m[1]!, v);
  }
  return out;
}

async function readOs(src: FactsSources): Promise<Pick<HostFacts, 'os' | 'kernel'>> {
  const now = Date.now();
  if (!osFacts || now - osFacts.at > OS_TTL_MS) {
    const value = (async () => {
      const text = await src
        .read('/etc/os-release')
        .catch(() => src.read('/usr/lib/os-release').catch(() => ''));
      const o = parseOsRelease(text);
      return {
        os: {
          platform: clip(platform(), 64),
          distro: clip(o.get('NAME') ?? o.get('ID') ?? '', 128),
          release: clip(o.get('VERSION_ID') ?? '', 128),
          codename: clip(o.get('VERSION_CODENAME') ?? '', 128),
          arch: clip(arch(), 32),
        },
        kernel: clip(release(), 256),
      };
    })();
    osFacts = { value, at: now };
  }
  return osFacts.value;
}

/** Real, data-holding filesystems from /proc/self/mounts, one entry per device (the shortest mount path wins). */
async function readDisks(src: FactsSources): Promise<DiskFact[]> {
  const mounts = await src.read('/proc/self/mounts').catch(() => '');
  const candidates: { mount: string; fs: string; type: string }[] = [];
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3) continue;
    const fs = f[0]!;
    const mount = f[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const type = f[2]!;
    const t = type.toLowerCase();
    if (VIRTUAL_FS.has(t) || t.startsWith('fuse.') || (!fs.startsWith('/') && t !== 'zfs' && t !== 'btrfs'))
      continue;
    if (fs.startsWith('/dev/loop') || mount.startsWith('/snap/')) continue;
    candidates.push({ mount, fs, type });
  }
  const sized = await Promise.all(
    candidates.map(async (c) => {
      try {
        const s = await src.statfs(c.mount);
        return { ...c, size: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize };
      } catch {
        return null; // unmounted meanwhile, or not ours to read
      }
    }),
  );
  const byDevice = new Map<string, DiskFact>();
  for (const f of sized) {
    if (!f || !(f.size > 0)) continue;
    const disk: DiskFact = {
      mount: clip(f.mount, 4096),
      fs: clip(f.fs, 4096),
      type: clip(f.type, 64),
      sizeBytes: f.size,
      usedBytes: Math.max(0, f.used),
    };
    const seen = byDevice.get(f.fs);
    if (!seen || disk.mount.length < seen.mount.length) byDevice.set(f.fs, disk);
  }
  // By code unit, not localeCompare: a collator pages ~2.5 MiB of ICU data into the idle agent's
  // RSS (bench/agent-idle.ts), and mount paths need no linguistic order.
  return [...byDevice.values()].sort((x, y) => (x.mount < y.mount ? -1 : x.mount > y.mount ? 1 : 0));
}

function sameDisks(a: DiskFact[], b: DiskFact[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i]!;
    if (x.mount !== y.mount || x.fs !== y.fs || x.type !== y.type || x.sizeBytes !== y.sizeBytes)
      return false;
    return Math.abs(x.usedBytes - y.usedBytes) < DISK_USED_CHANGE * Math.max(x.sizeBytes, 1);
  });
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function clip(s: string | undefined, max: number): string {
  const text = s ?? '';
  return text.length > max ? text.slice(0, max) : text;
}
