// Human-readable figures for the console: byte sizes, durations, relative times, host state.
import type { Host, HostFacts, HostState, Timestamp } from './types.ts';

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Binary-unit size, e.g. `formatBytes(16_777_216)` -> "16 MiB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes) || bytes < 0) return '—';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${Number(value.toFixed(digits))} ${BYTE_UNITS[unit]}`;
}

/**
 * Tick spacings a chart's byte axis may use: powers of two (1/16 B … 512 PiB), so ticks fall on
 * whole binary units (256 KiB, 512 KiB, 768 KiB, 1 MiB) instead of decimal steps that read as
 * "1000 B/s" beside a legend in KiB/s.
 */
export const BYTE_TICK_INCREMENTS: readonly number[] = Array.from({ length: 64 }, (_, i) => 2 ** (i - 4));

/**
 * A byte axis's tick labels, all in one unit: the largest binary unit the biggest tick reaches
 * (so 0, 256 KiB, …, 1 MiB reads "0 MiB", "0.25 MiB", …, "1 MiB"), with as few decimals as the
 * ticks need (at most three). `suffix` follows the unit ("/s" for a rate).
 *
 * @example formatByteTicks([0, 512, 1024, 1536], '/s') // ['0 KiB/s', '0.5 KiB/s', '1 KiB/s', '1.5 KiB/s']
 */
export function formatByteTicks(ticks: readonly number[], suffix = ''): string[] {
  const biggest = Math.max(0, ...ticks.filter(Number.isFinite).map(Math.abs));
  let unit = 0;
  while (unit < BYTE_UNITS.length - 1 && biggest >= 1024 ** (unit + 1)) unit++;
  const scaled = ticks.map((t) => t / 1024 ** unit);
  let digits = 0;
  while (digits < 3 && scaled.some((v) => Math.abs(v * 10 ** digits - Math.round(v * 10 ** digits)) > 1e-6))
    digits++;
  return scaled.map((v) =>
    Number.isFinite(v) ? `${Number(v.toFixed(digits))} ${BYTE_UNITS[unit]}${suffix}` : '',
  );
}

/** Compact duration, two most significant units: "3d 4h", "5h 12m", "42s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** Milliseconds since the epoch from an API timestamp, or null. */
export function toMs(ts: Timestamp | undefined): number | null {
  if (ts == null) return null;
  if (typeof ts === 'number') return Number.isFinite(ts) ? ts : null;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? null : ms;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago"; future times read "in …". */
export function formatRelative(ts: Timestamp | undefined, now: number): string {
  const ms = toMs(ts);
  if (ms == null) return 'never';
  const diff = Math.round((now - ms) / 1000);
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 10) return 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
  else text = `${Math.floor(abs / 86400)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** Absolute local date and time, for titles and detail views. */
export function formatDateTime(ts: Timestamp | undefined): string {
  const ms = toMs(ts);
  if (ms == null) return '—';
  return new Date(ms).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** The host's boot time in epoch ms; tolerates epoch seconds (values before 1973 in ms). */
export function bootTimeMs(facts: HostFacts | null | undefined): number | null {
  const boot = facts?.bootTime;
  if (boot == null || !Number.isFinite(boot) || boot <= 0) return null;
  return boot < 1e11 ? boot * 1000 : boot;
}

/** Uptime in seconds at `now`, ticking from the boot time; null when the host is not online. */
export function uptimeSeconds(host: Host, now: number): number | null {
  if (hostState(host) !== 'online' || !host.facts) return null;
  const boot = bootTimeMs(host.facts);
  if (boot != null) return Math.max(0, (now - boot) / 1000);
  return host.facts.uptimeSeconds;
}

/** Online, offline or revoked. */
export function hostState(host: Host): HostState {
  if (host.revokedAt != null) return 'revoked';
  return host.online ? 'online' : 'offline';
}

/** "Debian GNU/Linux 12" — distro and release without repeating the release. */
export function formatOs(facts: HostFacts | null | undefined): string {
  if (!facts) return '—';
  const { distro, release, platform } = facts.os;
  if (!distro) return release || platform || '—';
  return release && !distro.includes(release) ? `${distro} ${release}` : distro;
}

/** Percentage of a disk in use, 0–100, or null when either figure is unknown or the size is 0. */
export function usedPercent(used: number | null, size: number | null): number | null {
  if (used == null || size == null || !(size > 0)) return null;
  return Math.min(100, Math.max(0, (used / size) * 100));
}

/** ISO 8601 form of an API timestamp for `<time datetime>`, or undefined. */
export function toIso(ts: Timestamp | undefined): string | undefined {
  const ms = toMs(ts);
  return ms == null ? undefined : new Date(ms).toISOString();
}

/** CPU model without marketing noise for tight columns: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz" -> "Intel Xeon E5-2680 v4". */
export function shortCpuModel(model: string | null): string {
  if (!model) return '';
  const short = model
    .replace(/\((R|TM)\)/gi, '')
    .replace(/\s+@.*$/, '')
    .replace(/\b\d+-Core Processor\b/i, '')
    .replace(/\b(CPU|Processor)\b/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return short || model;
}

/**
 * A short label for a browser's User-Agent string ("Chromium on Linux", "Safari on iOS", "curl"),
 * for lists of sessions; the full string stays for a hover. Unknown strings give their first word.
 *
 * @example describeUserAgent('Mozilla/5.0 (X11; Linux x86_64) … Chrome/131.0.0.0 Safari/537.36') // 'Chrome on Linux'
 */
export function describeUserAgent(ua: string | null | undefined): string {
  if (!ua || !ua.trim()) return 'Unknown';
  const browser = /\bEdg(?:e|A|iOS)?\//.test(ua)
    ? 'Edge'
    : /\b(?:OPR|Opera)\//.test(ua)
      ? 'Opera'
      : /\bFirefox\/|\bFxiOS\//.test(ua)
        ? 'Firefox'
        : /\bHeadlessChrome\//.test(ua)
          ? 'Headless Chrome'
          : /\bChromium\//.test(ua)
            ? 'Chromium'
            : /\b(?:Chrome|CriOS)\//.test(ua)
              ? 'Chrome'
              : /\bVersion\/[\d.]+.*\bSafari\//.test(ua)
                ? 'Safari'
                : null;
  const os = /\b(?:iPhone|iPad|iPod)\b/.test(ua)
    ? 'iOS'
    : /\bAndroid\b/.test(ua)
      ? 'Android'
      : /\bCrOS\b/.test(ua)
        ? 'ChromeOS'
        : /\bWindows\b/.test(ua)
          ? 'Windows'
          : /\bMac OS X\b|\bMacintosh\b/.test(ua)
            ? 'macOS'
            : /\bLinux\b|\bX11\b/.test(ua)
              ? 'Linux'
              : null;
  if (browser) return os ? `${browser} on ${os}` : browser;
  // A tool (curl/8.5.0, python-requests/2.31, node): its name without the version.
  const tool = /^([A-Za-z][\w.-]*)/.exec(ua.trim())?.[1] ?? 'Unknown';
  return os && tool === 'Mozilla' ? `A browser on ${os}` : tool;
}
