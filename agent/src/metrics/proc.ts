// Parsers for the /proc and /sys files the metrics sampler reads. Pure functions over file text,
// so they are tested on recorded fixtures (metrics/fixtures/) rather than on whatever machine the
// tests run on. Reading /proc directly costs a few hundred microseconds a tick, far less than
// systeminformation's per-call process spawns (see docs/metrics.md).

/** CPU time counters of one `cpu` line of /proc/stat, in clock ticks. */
export interface CpuTimes {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
}

/** /proc/stat: the total line and one per core, in core order. */
export function parseStat(text: string): { total: CpuTimes | null; cores: CpuTimes[] } {
  let total: CpuTimes | null = null;
  const cores: CpuTimes[] = [];
  // Line by line while lines start with `cpu` (they come first): the rest of the file (the
  // interrupt counters' long line among it) is never cut into strings.
  for (let at = 0; text.startsWith('cpu', at);) {
    const nl = text.indexOf('\n', at);
    const line = text.slice(at, nl < 0 ? text.length : nl);
    at = nl < 0 ? text.length : nl + 1;
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    const times: CpuTimes = {
      user: f[0] ?? 0,
      nice: f[1] ?? 0,
      system: f[2] ?? 0,
      idle: f[3] ?? 0,
      iowait: f[4] ?? 0,
      irq: f[5] ?? 0,
      softirq: f[6] ?? 0,
      steal: f[7] ?? 0,
    };
    if (m[1] === '') total = times;
    else cores[Number(m[1])] = times;
  }
  return { total, cores: cores.filter(Boolean) };
}

const sumTimes = (t: CpuTimes) =>
  t.user + t.nice + t.system + t.idle + t.iowait + t.irq + t.softirq + t.steal;

/** CPU percentages between two readings; null when no time passed or the counters went backwards. */
export function cpuPercent(
  prev: CpuTimes,
  cur: CpuTimes,
): { busy: number; user: number; system: number; iowait: number; steal: number } | null {
  const total = sumTimes(cur) - sumTimes(prev);
  if (!(total > 0)) return null;
  const d = (k: keyof CpuTimes) => Math.max(0, cur[k] - prev[k]);
  const pct = (v: number) => Math.min(100, (v / total) * 100);
  return {
    busy: pct(total - d('idle') - d('iowait')),
    user: pct(d('user') + d('nice')),
    system: pct(d('system') + d('irq') + d('softirq')),
    iowait: pct(d('iowait')),
    steal: pct(d('steal')),
  };
}

/** /proc/loadavg: the three load averages. */
export function parseLoadavg(text: string): [number, number, number] | null {
  const f = text.trim().split(/\s+/).slice(0, 3).map(Number);
  return f.length === 3 && f.every(Number.isFinite) ? (f as [number, number, number]) : null;
}

/** /proc/meminfo: values in bytes by key (the file says kB). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(?:\s+kB)?/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]) * (line.includes('kB') ? 1024 : 1));
  }
  return out;
}

/** Memory figures from /proc/meminfo, as the console shows them. */
export function memoryOf(mem: Map<string, number>) {
  const total = mem.get('MemTotal') ?? null;
  // MemAvailable exists since Linux 3.14; older kernels: free + buffers + cached is the estimate.
  const available =
    mem.get('MemAvailable') ??
    (total === null
      ? null
      : (mem.get('MemFree') ?? 0) + (mem.get('Buffers') ?? 0) + (mem.get('Cached') ?? 0));
  const cached = (mem.get('Cached') ?? 0) + (mem.get('SReclaimable') ?? 0);
  const swapTotal = mem.get('SwapTotal') ?? null;
  const swapFree = mem.get('SwapFree') ?? null;
  return {
    total,
    available,
    used: total !== null && available !== null ? Math.max(0, total - available) : null,
    cached,
    swapTotal,
    swapUsed: swapTotal !== null && swapFree !== null ? Math.max(0, swapTotal - swapFree) : null,
  };
}

/** Whole-disk names (partitions, loop, ram and device-mapper devices would count bytes twice). */
const WHOLE_DISK = /^(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+|mmcblk\d+)$/;

/** /proc/diskstats summed over whole disks: bytes read and written (sectors are 512 bytes). */
export function parseDiskstats(text: string): { readBytes: number; writeBytes: number } {
  // Field by field without splitting each line (a host has dozens of loop, dm and partition lines,
  // ~20 fields each, read on every tick): only a whole disk's name is taken out of the text.
  let readBytes = 0;
  let writeBytes = 0;
  const f = new FieldCursor(text);
  while (f.line()) {
    if (!f.skip(2)) continue;
    const name = f.word();
    if (name === null || !WHOLE_DISK.test(name) || !f.skip(2)) continue;
    const read = f.number();
    if (!f.skip(3)) continue;
    const written = f.number();
    if (read === null || written === null) continue;
    readBytes += read * 512;
    writeBytes += written * 512;
  }
  return { readBytes, writeBytes };
}

/**
 * Walks whitespace-separated fields of a text line by line, taking numbers out without making a
 * string of each (the sampler reads /proc on every tick; see parseDiskstats, memoryOfText).
 */
class FieldCursor {
  #text: string;
  #at = 0;
  #end = 0;
  #next = 0;

  constructor(text: string) {
    this.#text = text;
  }

  /** Moves to the next line; false at the end of the text. */
  line(): boolean {
    if (this.#next >= this.#text.length) return false;
    this.#at = this.#next;
    const nl = this.#text.indexOf('\n', this.#at);
    this.#end = nl < 0 ? this.#text.length : nl;
    this.#next = this.#end + 1;
    return true;
  }

  #blank(c: number): boolean {
    return c === 32 || c === 9;
  }

  #skipBlanks(): void {
    while (this.#at < this.#end && this.#blank(this.#text.charCodeAt(this.#at))) this.#at++;
  }

  /** Skips `n` fields; false when the line has fewer. */
  skip(n: number): boolean {
    for (let i = 0; i < n; i++) {
      this.#skipBlanks();
      if (this.#at >= this.#end) return false;
      while (this.#at < this.#end && !this.#blank(this.#text.charCodeAt(this.#at))) this.#at++;
    }
    return true;
  }

  /** The next field as a string, or null at the line's end. */
  word(): string | null {
    this.#skipBlanks();
    const from = this.#at;
    while (this.#at < this.#end && !this.#blank(this.#text.charCodeAt(this.#at))) this.#at++;
    return this.#at > from ? this.#text.slice(from, this.#at) : null;
  }

  /** The next field as a whole number (digits only), or null when it is not one. */
  number(): number | null {
    this.#skipBlanks();
    let n = 0;
    let digits = 0;
    while (this.#at < this.#end) {
      const c = this.#text.charCodeAt(this.#at);
      if (c < 48 || c > 57) break;
      n = n * 10 + (c - 48);
      digits++;
      this.#at++;
    }
    if (digits === 0 || (this.#at < this.#end && !this.#blank(this.#text.charCodeAt(this.#at)))) {
      while (this.#at < this.#end && !this.#blank(this.#text.charCodeAt(this.#at))) this.#at++;
      return null;
    }
    return n;
  }
}

/** The value of `key` in /proc/meminfo's text, in bytes (the file says kB), or undefined. */
function meminfoValue(text: string, key: string): number | undefined {
  // `key` is `\nName:`; the file's first line has no newline before it.
  let at = text.startsWith(key.slice(1)) ? 0 : text.indexOf(key);
  if (at < 0) return undefined;
  at = text.indexOf(':', at) + 1;
  while (text.charCodeAt(at) === 32 || text.charCodeAt(at) === 9) at++;
  let n = 0;
  let digits = 0;
  for (let c = text.charCodeAt(at); c >= 48 && c <= 57; c = text.charCodeAt(++at)) {
    n = n * 10 + (c - 48);
    digits++;
  }
  if (digits === 0) return undefined;
  while (text.charCodeAt(at) === 32) at++;
  return text.startsWith('kB', at) ? n * 1024 : n;
}

/** The /proc/meminfo lines memoryOf reads, as meminfoValue looks for them. */
const MEMINFO_KEYS = [
  'MemTotal',
  'MemAvailable',
  'MemFree',
  'Buffers',
  'Cached',
  'SReclaimable',
  'SwapTotal',
  'SwapFree',
].map((k) => [k, `\n${k}:`] as const);

/** memoryOf(parseMeminfo(text)) without a Map of every line: the keys it needs, found in the text. */
export function memoryOfText(text: string): ReturnType<typeof memoryOf> {
  const mem = new Map<string, number>();
  for (const [k, line] of MEMINFO_KEYS) {
    const v = meminfoValue(text, line);
    if (v !== undefined) mem.set(k, v);
  }
  return memoryOf(mem);
}

/** /proc/net/dev: byte counters per interface (loopback included; callers drop it from sums). */
export function parseNetDev(text: string): Map<string, { rx: number; tx: number }> {
  const out = new Map<string, { rx: number; tx: number }>();
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 9) continue;
    out.set(m[1]!, { rx: f[0]!, tx: f[8]! });
  }
  return out;
}

/** The first `max` lines of `text` that start with `prefix`, without cutting the others into strings. */
function linesStartingWith(text: string, prefix: string, max: number): string[] {
  const out: string[] = [];
  const next = (from: number) => {
    const i = text.indexOf(`\n${prefix}`, from);
    return i < 0 ? -1 : i + 1;
  };
  let at = text.startsWith(prefix) ? 0 : next(0);
  while (at >= 0 && out.length < max) {
    const nl = text.indexOf('\n', at);
    out.push(text.slice(at, nl < 0 ? text.length : nl));
    at = nl < 0 ? -1 : next(nl);
  }
  return out;
}

/** /proc/net/snmp: `Tcp: CurrEstab` (IPv4 and IPv6 share these counters). */
export function parseTcpEstablished(snmp: string): number | null {
  const lines = linesStartingWith(snmp, 'Tcp:', 2);
  if (lines.length < 2) return null;
  const keys = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const i = keys.indexOf('CurrEstab');
  const v = i < 0 ? NaN : Number(values[i]);
  return Number.isFinite(v) ? v : null;
}

/** /proc/net/sockstat or sockstat6: UDP sockets in use (`UDP: inuse N` / `UDP6: inuse N`). */
export function parseUdpInUse(sockstat: string): number {
  const m = /^UDP6?: inuse (\d+)/m.exec(sockstat);
  return m ? Number(m[1]) : 0;
}

/** /proc/uptime: seconds since boot. */
export function parseUptime(text: string): number | null {
  const v = Number(text.trim().split(/\s+/)[0]);
  return Number.isFinite(v) ? v : null;
}

/** File system types worth watching (data lives there); pseudo and memory file systems are not. */
const DISK_FS = new Set([
  'ext2',
  'ext3',
  'ext4',
  'xfs',
  'btrfs',
  'zfs',
  'f2fs',
  'vfat',
  'exfat',
  'ntfs',
  'ntfs3',
  'jfs',
  'reiserfs',
  'bcachefs',
]);

/**
 * /proc/self/mounts: the mounts to watch, one per device (bind mounts and btrfs subvolumes of the
 * same device would count its space twice), the last one per mount point. An overlay root
 * (containers) is kept as `/`.
 */
export function parseMounts(text: string): { mount: string; fs: string; device: string }[] {
  // By mount point: a later mount over the same point hides the earlier one.
  const byPoint = new Map<string, { mount: string; fs: string; device: string }>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3) continue;
    // Octal escapes (\040 for a space) in mount points.
    const mount = f[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const fs = f[2]!;
    const device = f[0]!;
    if (!(DISK_FS.has(fs) || (fs === 'overlay' && mount === '/'))) continue;
    byPoint.delete(mount);
    byPoint.set(mount, { mount, fs, device });
  }
  const seen = new Set<string>();
  return [...byPoint.values()].filter((m) => !seen.has(m.device) && seen.add(m.device));
}

/** The 2^32 boundary: a counter below it that goes backwards most likely wrapped (32-bit kernels). */
const U32 = 2 ** 32;

/**
 * How much a monotonic counter grew between two readings, robust to wraps and resets: a 32-bit
 * counter that went backwards wrapped once; a larger one went backwards because it was reset
 * (interface re-created, driver reloaded, reboot) and counted from zero since, so its value is the
 * growth.
 */
export function counterDelta(prev: number, cur: number): number {
  if (cur >= prev) return cur - prev;
  if (prev < U32) {
    const wrapped = cur + U32 - prev;
    // A true wrap leaves a small remainder; a value far from it is a reset.
    if (wrapped < U32 / 2) return wrapped;
  }
  return cur;
}
