// Host facts: what the agent tells the controller about its machine on connect and when something
// changes. Read with systeminformation; what cannot change while the agent runs is read once.
import { hostname, uptime } from 'node:os';
import type * as SiModule from 'systeminformation';
import type { Systeminformation } from 'systeminformation';
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
/** The parts of systeminformation that facts read. */
type SystemInformation = Pick<typeof SiModule, 'cpu' | 'osInfo' | 'mem' | 'fsSize'>;
/** systeminformation is large: loaded on the first facts reading, not at agent start. */
let siModule: Promise<SystemInformation> | null = null;
const loadSi = (): Promise<SystemInformation> =>
  (siModule ??= import('systeminformation').then((m) => m.default));
let cpuFacts: Promise<HostFacts['cpu']> | null = null;
let osFacts: Cached<Promise<Pick<HostFacts, 'os' | 'kernel'>>> | null = null;
let bootTime: number | null = null;

/**
 * Collects the host's facts and validates them against `hostFactsSchema`. The first call takes a
 * few hundred ms (systeminformation warms up), later ones ~10-30 ms, most of it `df` for the disks
 * (CPU and OS facts are cached).
 */
export async function collectFacts(): Promise<HostFacts> {
  const si = await loadSi();
  const [cpu, os, mem, fs] = await Promise.all([readCpu(si), readOs(si), si.mem(), si.fsSize()]);
  // The same two readings si.time() returns, without the `date` child process it runs
  // synchronously (5-20 ms of blocked event loop) for a time zone that facts do not carry.
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
    memory: { totalBytes: Math.max(0, mem.total) },
    disks: realDisks(fs).slice(0, 256),
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

async function readCpu(si: SystemInformation): Promise<HostFacts['cpu']> {
  cpuFacts ??= si.cpu().then((c) => ({
    model: clip([c.manufacturer, c.brand].filter(Boolean).join(' ').trim(), 256),
    cores: Math.max(0, Math.trunc(c.cores)),
    physicalCores: Math.max(0, Math.trunc(c.physicalCores)),
    speedGHz: Math.max(0, Number(c.speedMax) || Number(c.speed) || 0),
  }));
  return cpuFacts.catch((err: unknown) => {
    cpuFacts = null; // do not cache a failure
    throw err;
  });
}

async function readOs(si: SystemInformation): Promise<Pick<HostFacts, 'os' | 'kernel'>> {
  const now = Date.now();
  if (!osFacts || now - osFacts.at > OS_TTL_MS) {
    const value = si.osInfo().then((o) => ({
      os: {
        platform: clip(o.platform, 64),
        distro: clip(o.distro, 128),
        release: clip(o.release, 128),
        codename: clip(o.codename, 128),
        arch: clip(o.arch, 32),
      },
      kernel: clip(o.kernel, 256),
    }));
    osFacts = { value, at: now };
  }
  const cached = osFacts;
  return cached.value.catch((err: unknown) => {
    if (osFacts === cached) osFacts = null;
    throw err;
  });
}

/** Real, data-holding filesystems, one entry per device (the shortest mount path wins). */
function realDisks(list: Systeminformation.FsSizeData[]): DiskFact[] {
  const byDevice = new Map<string, DiskFact>();
  for (const f of list) {
    const type = f.type.toLowerCase();
    if (VIRTUAL_FS.has(type) || type.startsWith('fuse.') || !(f.size > 0)) continue;
    if (f.fs.startsWith('/dev/loop') || f.mount.startsWith('/snap/')) continue;
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
  return [...byDevice.values()].sort((x, y) => x.mount.localeCompare(y.mount));
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
