// The Prometheus exposition (issue 9 item 7): one target for the whole fleet. Each host the caller
// may read (`metrics.read` on it) appears with its newest tick of the last few minutes as gauges
// labelled `host` (its name) and `host_id`, its interface byte counters as counters (so `rate()`
// works in Prometheus), its transfer this billing cycle, and `keel_host_up`; then the controller's
// own figures. Text format 0.0.4; names follow Prometheus conventions (base units, `_total`).
import { metricSeries, metricSeriesNames, type MetricSeriesName } from '@keel/shared';
import type { HostRepository } from '../repositories/hosts.ts';
import type { MetricsRepository } from '../repositories/metrics.ts';
import { hasHostPermission, type Actor } from './access.ts';
import type { TrafficService } from './traffic.ts';

/** A tick older than this is not exposed (a silent host's figures go stale in Prometheus, as they should). */
export const LATEST_WINDOW_MS = 5 * 60_000;

/** The exposed name of a series, e.g. `net_rx_bps` -> `keel_host_net_rx_bytes_per_second`. */
export function exposedName(series: MetricSeriesName): string {
  const unit = metricSeries[series];
  const base = series.replace(/_(bps|pct)$/, '');
  const suffix: Record<string, string> = {
    percent: '_percent',
    bytes: '_bytes',
    'bytes/s': '_bytes_per_second',
    seconds: '_seconds',
    celsius: '_celsius',
    load: '',
    count: '',
  };
  return `keel_host_${base}${suffix[unit] ?? ''}`;
}

const HELP: Record<string, string> = {
  percent: 'percent',
  bytes: 'bytes',
  'bytes/s': 'bytes per second',
  seconds: 'seconds',
  celsius: 'degrees Celsius',
  load: 'load average',
  count: 'count',
};

/** A label value escaped for the text format (backslash, double quote, newline). */
export function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value in the text format. */
function value(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Builds families: each metric name once with its HELP and TYPE, then its samples. */
class Exposition {
  #families = new Map<string, { help: string; type: string; lines: string[] }>();

  add(
    name: string,
    type: 'gauge' | 'counter',
    help: string,
    labels: Record<string, string>,
    v: number,
  ): void {
    let f = this.#families.get(name);
    if (!f) {
      f = { help, type, lines: [] };
      this.#families.set(name, f);
    }
    const l = Object.entries(labels)
      .map(([k, x]) => `${k}="${labelValue(x)}"`)
      .join(',');
    f.lines.push(`${name}${l ? `{${l}}` : ''} ${value(v)}`);
  }

  text(): string {
    let out = '';
    for (const [name, f] of this.#families) {
      out += `# HELP ${name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${f.type}\n`;
      out += f.lines.join('\n') + '\n';
    }
    return out;
  }
}

/** The controller's own figures, read when a scrape comes. */
export interface ControllerFigures {
  /** Agent handshakes completed since start. */
  handshakes?: () => number;
  /** Metrics batches waiting for the next group commit. */
  metricsQueueWaiting?: () => number;
  /** A host's last heartbeat round trip (ping to pong) in ms; undefined without a live session. */
  heartbeatRttMs?: (hostId: string) => number | undefined;
  /** Live channels open now, all agents together (set once the channel hub exists). */
  channelsOpen?: () => number;
  /** The MQTT bus between replicas (set only when one is configured). */
  bus?: () => BusFigures;
}

/** What the bus between replicas counted since start, and whether the broker is connected now. */
export interface BusFigures {
  connected: boolean;
  /** Fleet events published, received from other replicas, and not sent (broker away or slow). */
  published: number;
  received: number;
  unsent: number;
  /** Messages dropped: not a fleet event (malformed), or without a valid MAC, old or replayed. */
  malformed: number;
  unverified: number;
  /** Agent requests routed to another replica, and served here for another one. */
  routed: number;
  served: number;
  /** Routed requests, answers and revocations refused (unsealed, other key, too old, replayed). */
  refused: number;
  /** Revocations sent to the other replicas, and received that closed a session here. */
  revocationsSent: number;
  revocationsApplied: number;
  /** Live channels routed to another replica from here, served here for another; open now (both). */
  channelsOpened?: number;
  channelsServed?: number;
  channelsRouted?: number;
}

export interface PrometheusServiceDeps {
  hosts: Pick<HostRepository, 'list'>;
  metrics: Pick<MetricsRepository, 'latest'>;
  traffic: Pick<TrafficService, 'usageMany'>;
  controller?: ControllerFigures;
  now?: () => number;
}

export function createPrometheusService(deps: PrometheusServiceDeps) {
  const now = deps.now ?? Date.now;
  const started = Date.now() - process.uptime() * 1000;
  const figures: ControllerFigures = deps.controller ?? {};

  return {
    /** The controller's own figures; a part built after the services (the channel hub) adds its own. */
    figures,
    /** The exposition for `actor`: hosts it holds `metrics.read` on, and the controller's figures. */
    async render(actor: Actor): Promise<string> {
      const at = now();
      const all = await deps.hosts.list();
      const visible = all.filter((h) => !h.revokedAt && hasHostPermission(actor, 'metrics.read', h.id));
      const ids = visible.map((h) => h.id);
      const [latest, usage] = await Promise.all([
        deps.metrics.latest(ids, new Date(at - LATEST_WINDOW_MS)),
        deps.traffic.usageMany(ids, at),
      ]);
      const byId = new Map(latest.map((s) => [s.hostId, s]));
      const e = new Exposition();
      for (const h of visible) {
        const host = { host: h.name, host_id: h.id };
        e.add(
          'keel_host_up',
          'gauge',
          'Whether the host has a live agent session (1) or not (0).',
          host,
          h.online ? 1 : 0,
        );
      }
      for (const h of visible) {
        const rtt = figures.heartbeatRttMs?.(h.id);
        if (rtt === undefined) continue;
        e.add(
          'keel_host_heartbeat_rtt_seconds',
          'gauge',
          "The last heartbeat's round trip (the controller's ping to the agent's pong), seconds.",
          { host: h.name, host_id: h.id },
          rtt / 1000,
        );
      }
      for (const h of visible) {
        const s = byId.get(h.id);
        if (!s) continue;
        const host = { host: h.name, host_id: h.id };
        e.add(
          'keel_host_sample_timestamp_seconds',
          'gauge',
          'Time of the newest stored metrics tick of the host.',
          host,
          s.ts / 1000,
        );
        for (const series of metricSeriesNames) {
          const v = s.values[series];
          if (v === null || v === undefined) continue;
          e.add(
            exposedName(series),
            'gauge',
            `Host ${series.replace(/_/g, ' ')}, ${HELP[metricSeries[series]]}.`,
            host,
            v,
          );
        }
        s.detail?.cores?.forEach((v, core) => {
          if (v !== null)
            e.add(
              'keel_host_cpu_core_percent',
              'gauge',
              'CPU busy per core, percent.',
              { ...host, core: String(core) },
              v,
            );
        });
        for (const m of s.detail?.mounts ?? []) {
          const labels = { ...host, mount: m.mount, fstype: m.fs };
          e.add('keel_host_filesystem_size_bytes', 'gauge', 'File system size, bytes.', labels, m.size);
          e.add('keel_host_filesystem_used_bytes', 'gauge', 'File system space used, bytes.', labels, m.used);
        }
        for (const i of s.detail?.ifaces ?? []) {
          const labels = { ...host, iface: i.name };
          e.add(
            'keel_host_network_receive_bytes_total',
            'counter',
            'Bytes received by the interface (kernel counter).',
            labels,
            i.rxBytes,
          );
          e.add(
            'keel_host_network_transmit_bytes_total',
            'counter',
            'Bytes sent by the interface (kernel counter).',
            labels,
            i.txBytes,
          );
        }
        for (const t of s.detail?.temps ?? []) {
          e.add(
            'keel_host_temperature_celsius',
            'gauge',
            'Sensor temperature, degrees Celsius.',
            { ...host, sensor: t.name },
            t.c,
          );
        }
      }
      for (const h of visible) {
        const u = usage.get(h.id);
        if (!u) continue;
        const host = { host: h.name, host_id: h.id };
        for (const i of u.interfaces) {
          const help = 'Bytes moved in the current billing cycle, per interface and direction.';
          e.add(
            'keel_host_transfer_cycle_bytes',
            'gauge',
            help,
            { ...host, iface: i.iface, direction: 'rx' },
            i.rxBytes,
          );
          e.add(
            'keel_host_transfer_cycle_bytes',
            'gauge',
            help,
            { ...host, iface: i.iface, direction: 'tx' },
            i.txBytes,
          );
        }
        e.add(
          'keel_host_transfer_cycle_start_seconds',
          'gauge',
          'Start of the current billing cycle.',
          host,
          u.cycle.start / 1000,
        );
        if (u.quotaBytes !== null) {
          e.add(
            'keel_host_transfer_quota_bytes',
            'gauge',
            'Bytes (rx + tx) included per billing cycle.',
            host,
            u.quotaBytes,
          );
        }
      }
      // The controller's own figures.
      e.add(
        'keel_controller_hosts',
        'gauge',
        'Enrolled hosts (not revoked).',
        {},
        all.filter((h) => !h.revokedAt).length,
      );
      e.add(
        'keel_controller_agents_connected',
        'gauge',
        'Hosts with a live agent session.',
        {},
        all.filter((h) => h.online).length,
      );
      const handshakes = figures.handshakes?.();
      if (handshakes !== undefined) {
        e.add(
          'keel_controller_handshakes_total',
          'counter',
          'Agent handshakes completed since the controller started.',
          {},
          handshakes,
        );
      }
      const waiting = figures.metricsQueueWaiting?.();
      if (waiting !== undefined) {
        e.add(
          'keel_controller_metrics_queue_batches',
          'gauge',
          'Metrics batches waiting for the next group commit.',
          {},
          waiting,
        );
      }
      const channelsOpen = figures.channelsOpen?.();
      if (channelsOpen !== undefined) {
        e.add(
          'keel_controller_channels_open',
          'gauge',
          'Live channels (terminals, echo, live logs) open now through this controller.',
          {},
          channelsOpen,
        );
      }
      const bus = figures.bus?.();
      if (bus) {
        const busFigure = (name: string, help: string, labels: Record<string, string>, n: number) =>
          e.add(`keel_controller_bus_${name}`, 'counter', help, labels, n);
        e.add(
          'keel_controller_bus_connected',
          'gauge',
          '1 while the MQTT bus between replicas is connected to the broker.',
          {},
          bus.connected ? 1 : 0,
        );
        const events = 'Fleet events on the MQTT bus since start, by what happened to them.';
        busFigure('events_total', events, { outcome: 'published' }, bus.published);
        busFigure('events_total', events, { outcome: 'received' }, bus.received);
        busFigure('events_total', events, { outcome: 'unsent' }, bus.unsent);
        const dropped =
          'Messages from the broker dropped since start: malformed, or unverified (MAC, age, replay).';
        busFigure('dropped_total', dropped, { reason: 'malformed' }, bus.malformed);
        busFigure('dropped_total', dropped, { reason: 'unverified' }, bus.unverified);
        const requests = 'Agent requests routed between replicas since start: routed from here, served here.';
        busFigure('requests_total', requests, { direction: 'routed' }, bus.routed);
        busFigure('requests_total', requests, { direction: 'served' }, bus.served);
        busFigure(
          'sealed_refused_total',
          'Sealed bus messages (requests, answers, revocations, channel messages) refused: unsealed, another key, too old, replayed or out of order.',
          {},
          bus.refused,
        );
        const revocations = 'Revocations on the bus since start: sent to the other replicas, applied here.';
        busFigure('revocations_total', revocations, { direction: 'sent' }, bus.revocationsSent);
        busFigure('revocations_total', revocations, { direction: 'applied' }, bus.revocationsApplied);
        if (bus.channelsOpened !== undefined && bus.channelsServed !== undefined) {
          const channels =
            'Live channels routed between replicas since start: opened from here, served here for another.';
          busFigure('channels_total', channels, { direction: 'opened' }, bus.channelsOpened);
          busFigure('channels_total', channels, { direction: 'served' }, bus.channelsServed);
        }
        if (bus.channelsRouted !== undefined) {
          e.add(
            'keel_controller_bus_channels_open',
            'gauge',
            'Live channels routed between replicas open now through this one (either role).',
            {},
            bus.channelsRouted,
          );
        }
      }
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      e.add(
        'process_cpu_seconds_total',
        'counter',
        'Total user and system CPU time spent in seconds.',
        {},
        (cpu.user + cpu.system) / 1e6,
      );
      e.add('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', {}, mem.rss);
      e.add(
        'process_start_time_seconds',
        'gauge',
        'Start time of the process since unix epoch in seconds.',
        {},
        Math.floor(started / 1000),
      );
      e.add(
        'nodejs_heap_size_used_bytes',
        'gauge',
        'Process heap size used from Node.js in bytes.',
        {},
        mem.heapUsed,
      );
      e.add(
        'nodejs_heap_size_total_bytes',
        'gauge',
        'Process heap size from Node.js in bytes.',
        {},
        mem.heapTotal,
      );
      return e.text();
    },
  };
}

export type PrometheusService = ReturnType<typeof createPrometheusService>;
