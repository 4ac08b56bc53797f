// The metrics sampler: reads /proc (and /sys for temperatures, statfs for mounts) once per tick
// and turns counters into rates against the previous tick. The root directory and statfs are
// injectable so tests run on recorded fixtures; a file that is missing (a container without
// /proc/net/snmp, a host without sensors) leaves its series null instead of failing the tick.
import { readdir, readFile, statfs as fsStatfs } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_PROCESS_SERIES, type MetricSample, type MetricSeriesName } from '@keel/shared';
import {
  counterDelta,
  cpuPercent,
  memoryOf,
  parseDiskstats,
  parseLoadavg,
  parseMeminfo,
  parseMounts,
  parseNetDev,
  parseStat,
  parseTcpEstablished,
  parseUdpInUse,
  parseUptime,
  type CpuTimes,
} from './proc.ts';

/** Size and free space of one mounted file system, in bytes. */
export type StatfsFn = (path: string) => Promise<{ size: number; free: number }>;

const realStatfs: StatfsFn = async (path) => {
  const s = await fsStatfs(path);
  // `bavail` (what unprivileged users may still write) is what "free" means to an operator.
  return { size: s.blocks * s.bsize, free: s.bavail * s.bsize };
};

export interface SamplerOptions {
  /** Where `proc/` and `sys/` are found. Default `/`. */
  root?: string;
  statfs?: StatfsFn;
  /** The agent's own CPU time and RSS (default: this process). */
  self?: () => { cpuMicros: number; rssBytes: number };
  /**
   * Supervised processes with their group's CPU (% of one core) and RSS (the supervisor computes
   * them from its /proc scan); their series ride in each tick.
   */
  supervised?: () => { name: string; cpuPercent: number | null; rssBytes: number | null }[];
}

interface Counters {
  at: number;
  cpu: CpuTimes | null;
  cores: CpuTimes[];
  disk: { readBytes: number; writeBytes: number } | null;
  net: Map<string, { rx: number; tx: number }>;
  selfCpuMicros: number;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

/** Samples the host; `sample(now)` returns one tick (rates are null on the first). */
export class MetricsSampler {
  #opts: SamplerOptions;
  #statfs: StatfsFn;
  #self: () => { cpuMicros: number; rssBytes: number };
  #prev: Counters | null = null;

  constructor(opts: SamplerOptions = {}) {
    this.#opts = opts;
    this.#statfs = opts.statfs ?? realStatfs;
    this.#self =
      opts.self ??
      (() => {
        const u = process.cpuUsage();
        return { cpuMicros: u.user + u.system, rssBytes: process.memoryUsage.rss() };
      });
  }

  #path(...parts: string[]): string {
    // Read on each use: tests move a sampler from one recorded reading to the next.
    return join(this.#opts.root ?? '/', ...parts);
  }

  /** One tick at time `now` (epoch ms). */
  async sample(now: number): Promise<MetricSample> {
    const [stat, loadavg, meminfo, diskstats, netdev, snmp, sockstat, sockstat6, uptime, mounts] =
      await Promise.all(
        [
          'proc/stat',
          'proc/loadavg',
          'proc/meminfo',
          'proc/diskstats',
          'proc/net/dev',
          'proc/net/snmp',
          'proc/net/sockstat',
          'proc/net/sockstat6',
          'proc/uptime',
          'proc/self/mounts',
        ].map((p) => readText(this.#path(p))),
      );
    const v: Partial<Record<MetricSeriesName, number | null>> = {};
    const prev = this.#prev;
    const seconds = prev ? (now - prev.at) / 1000 : 0;
    const rate = (p: number | undefined, c: number): number | null =>
      p === undefined || !(seconds > 0) ? null : counterDelta(p, c) / seconds;

    const cpu = stat ? parseStat(stat) : { total: null, cores: [] };
    const pct = prev?.cpu && cpu.total ? cpuPercent(prev.cpu, cpu.total) : null;
    v.cpu = pct?.busy ?? null;
    v.cpu_user = pct?.user ?? null;
    v.cpu_system = pct?.system ?? null;
    v.cpu_iowait = pct?.iowait ?? null;
    v.cpu_steal = pct?.steal ?? null;
    const cores = cpu.cores.map((c, i) => {
      const p = prev?.cores[i];
      return p ? (cpuPercent(p, c)?.busy ?? null) : null;
    });

    const load = loadavg ? parseLoadavg(loadavg) : null;
    [v.load1, v.load5, v.load15] = load ?? [null, null, null];

    if (meminfo) {
      const m = memoryOf(parseMeminfo(meminfo));
      v.mem_total = m.total;
      v.mem_used = m.used;
      v.mem_available = m.available;
      v.mem_cached = m.cached;
      v.swap_total = m.swapTotal;
      v.swap_used = m.swapUsed;
    }

    const disk = diskstats ? parseDiskstats(diskstats) : null;
    v.disk_read_bps = disk && prev?.disk ? rate(prev.disk.readBytes, disk.readBytes) : null;
    v.disk_write_bps = disk && prev?.disk ? rate(prev.disk.writeBytes, disk.writeBytes) : null;

    const net = netdev ? parseNetDev(netdev) : new Map<string, { rx: number; tx: number }>();
    const ifaces: NonNullable<MetricSample['ifaces']> = [];
    let rxSum: number | null = prev ? 0 : null;
    let txSum: number | null = prev ? 0 : null;
    for (const [name, c] of net) {
      if (name === 'lo') continue;
      const p = prev?.net.get(name);
      const rxBps = rate(p?.rx, c.rx);
      const txBps = rate(p?.tx, c.tx);
      ifaces.push({ name, rxBps, txBps, rxBytes: c.rx, txBytes: c.tx });
      if (rxSum !== null) rxSum += rxBps ?? 0;
      if (txSum !== null) txSum += txBps ?? 0;
    }
    v.net_rx_bps = rxSum;
    v.net_tx_bps = txSum;

    v.tcp_conns = snmp ? parseTcpEstablished(snmp) : null;
    v.udp_conns = sockstat ? parseUdpInUse(sockstat) + (sockstat6 ? parseUdpInUse(sockstat6) : 0) : null;
    v.uptime = uptime ? parseUptime(uptime) : null;
    v.procs = await this.#processCount();

    const watched = mounts ? parseMounts(mounts) : [];
    const mountFigures: NonNullable<MetricSample['mounts']> = [];
    for (const m of watched) {
      try {
        const s = await this.#statfs(m.mount);
        if (s.size <= 0) continue;
        mountFigures.push({ mount: m.mount, fs: m.fs, size: s.size, used: Math.max(0, s.size - s.free) });
      } catch {
        // unmounted since /proc/self/mounts was read, or not ours to stat
      }
    }
    if (mountFigures.length > 0) {
      v.disk_total = mountFigures.reduce((a, m) => a + m.size, 0);
      v.disk_used = mountFigures.reduce((a, m) => a + m.used, 0);
      v.disk_used_max_pct = Math.max(...mountFigures.map((m) => (m.used / m.size) * 100));
    } else {
      v.disk_total = v.disk_used = v.disk_used_max_pct = null;
    }

    const temps = await this.#temperatures();
    v.temp_max = temps.length > 0 ? Math.max(...temps.map((t) => t.c)) : null;

    const self = this.#self();
    v.agent_cpu =
      prev && seconds > 0 ? Math.max(0, (self.cpuMicros - prev.selfCpuMicros) / 1e6 / seconds) * 100 : null;
    v.agent_rss = self.rssBytes;

    this.#prev = { at: now, cpu: cpu.total, cores: cpu.cores, disk, net, selfCpuMicros: self.cpuMicros };
    const sample: MetricSample = { t: Math.round(now), v };
    if (cores.length > 0) sample.cores = cores;
    if (mountFigures.length > 0) sample.mounts = mountFigures;
    if (ifaces.length > 0) sample.ifaces = ifaces;
    if (temps.length > 0) sample.temps = temps;
    const supervised = this.#supervised();
    if (supervised.length > 0) sample.processes = supervised;
    return sample;
  }

  #supervised(): NonNullable<MetricSample['processes']> {
    if (!this.#opts.supervised) return [];
    try {
      return this.#opts
        .supervised()
        .slice(0, MAX_PROCESS_SERIES)
        .map((p) => ({ name: p.name, cpu: p.cpuPercent, rss: p.rssBytes }));
    } catch {
      return []; // the supervisor is not started yet
    }
  }

  async #processCount(): Promise<number | null> {
    try {
      const entries = await readdir(this.#path('proc'));
      return entries.filter((e) => /^\d+$/.test(e)).length;
    } catch {
      return null;
    }
  }

  /** hwmon sensors (temp*_input, millidegrees), else thermal zones. */
  async #temperatures(): Promise<{ name: string; c: number }[]> {
    const out: { name: string; c: number }[] = [];
    const hwmon = this.#path('sys/class/hwmon');
    for (const dir of await readdir(hwmon).catch(() => [] as string[])) {
      const base = join(hwmon, dir);
      const chip = (await readText(join(base, 'name')))?.trim() || dir;
      for (const file of await readdir(base).catch(() => [] as string[])) {
        const m = /^temp(\d+)_input$/.exec(file);
        if (!m) continue;
        const milli = Number((await readText(join(base, file)))?.trim());
        if (!Number.isFinite(milli)) continue;
        const label = (await readText(join(base, `temp${m[1]}_label`)))?.trim();
        out.push({ name: `${chip}/${label || `temp${m[1]}`}`.slice(0, 128), c: milli / 1000 });
      }
    }
    if (out.length > 0) return out;
    const thermal = this.#path('sys/class/thermal');
    for (const dir of await readdir(thermal).catch(() => [] as string[])) {
      if (!dir.startsWith('thermal_zone')) continue;
      const milli = Number((await readText(join(thermal, dir, 'temp')))?.trim());
      if (!Number.isFinite(milli)) continue;
      const type = (await readText(join(thermal, dir, 'type')))?.trim() || dir;
      out.push({ name: type.slice(0, 128), c: milli / 1000 });
    }
    return out;
  }
}
