// Proves the metrics sampler turns two recorded /proc readings (fixtures/a, fixtures/b) into the
// exact figures (CPU %, per core, memory, disk and network rates across a 32-bit wrap and a reset,
// connections, mounts, temperatures, the agent's own CPU), that parsers tolerate what real hosts
// vary in, that the capability appends schema-valid ticks to its spool on aligned times, that
// metrics.configure changes the interval live, and that supervised processes ride in each tick.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MAX_PROCESS_SERIES, metricSampleSchema, metricsConfigureRequest } from '@keel/shared';
import { MetricsSampler } from './sampler.ts';
import { counterDelta, parseMounts, parseTcpEstablished } from './proc.ts';
import { metricsCapability, metricsIntervalFromEnv } from './index.ts';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const GiB = 1024 ** 3;
const statfs = async (path: string) => {
  if (path === '/') return { size: 100 * GiB, free: 25 * GiB };
  if (path === '/srv/my data') return { size: 10 * GiB, free: 9 * GiB };
  throw new Error(`unexpected statfs ${path}`);
};

test('two readings five seconds apart give exact rates and figures', async () => {
  // Getters: the sampler reads its root and own usage on each tick, and the host moves on.
  let root = fixture('a');
  let self = { cpuMicros: 0, rssBytes: 50e6 };
  const sampler = new MetricsSampler({
    get root() {
      return root;
    },
    statfs,
    self: () => self,
  });
  const first = await sampler.sample(1_000_000);
  metricSampleSchema.parse(first);
  assert.equal(first.v.cpu, null, 'no rate before two readings');
  assert.equal(first.v.net_rx_bps, null);
  assert.equal(first.v.disk_read_bps, null);
  assert.equal(first.v.agent_cpu, null);
  assert.deepEqual(first.cores, [null, null]);
  assert.equal(first.v.load1, 0.5);
  assert.equal(first.v.procs, 2);

  root = fixture('b');
  self = { cpuMicros: 50_000, rssBytes: 51e6 };
  const s = await sampler.sample(1_005_000);
  metricSampleSchema.parse(s);
  assert.equal(s.v.cpu, 50);
  assert.equal(s.v.cpu_user, 30);
  assert.equal(s.v.cpu_system, 10);
  assert.equal(s.v.cpu_steal, 10);
  assert.equal(s.v.cpu_iowait, 0);
  assert.deepEqual(s.cores, [60, 40]);
  assert.deepEqual([s.v.load1, s.v.load5, s.v.load15], [1.5, 0.6, 0.35]);
  assert.equal(s.v.mem_total, 8_000_000 * 1024);
  assert.equal(s.v.mem_used, 3_000_000 * 1024);
  assert.equal(s.v.mem_available, 5_000_000 * 1024);
  assert.equal(s.v.mem_cached, 2_300_000 * 1024);
  assert.equal(s.v.swap_used, 250_000 * 1024);
  // sda only: 10,240 sectors read and 20,480 written in 5 s (partitions, dm and loop ignored).
  assert.equal(s.v.disk_read_bps, (10_240 * 512) / 5);
  assert.equal(s.v.disk_write_bps, (20_480 * 512) / 5);
  // eth0 +50,000/+25,000; wg0 rx wrapped at 2^32 (+1,000), tx reset to 100 (+100); lo excluded.
  assert.equal(s.v.net_rx_bps, 10_000 + 200);
  assert.equal(s.v.net_tx_bps, 5_000 + 20);
  const wg0 = s.ifaces?.find((i) => i.name === 'wg0');
  assert.deepEqual(wg0, { name: 'wg0', rxBps: 200, txBps: 20, rxBytes: 704, txBytes: 100 });
  assert.equal(s.v.tcp_conns, 20);
  assert.equal(s.v.udp_conns, 5);
  assert.equal(s.v.uptime, 12350.67);
  assert.equal(s.v.procs, 2);
  assert.deepEqual(s.mounts, [
    { mount: '/', fs: 'ext4', size: 100 * GiB, used: 75 * GiB },
    { mount: '/srv/my data', fs: 'xfs', size: 10 * GiB, used: 1 * GiB },
  ]);
  assert.equal(s.v.disk_total, 110 * GiB);
  assert.equal(s.v.disk_used, 76 * GiB);
  assert.equal(s.v.disk_used_max_pct, 75);
  assert.deepEqual(s.temps, [
    { name: 'coretemp/Package id 0', c: 45 },
    { name: 'coretemp/temp2', c: 52.5 },
  ]);
  assert.equal(s.v.temp_max, 52.5);
  assert.equal(s.v.agent_cpu, 1); // 50 ms of CPU in 5 s
  assert.equal(s.v.agent_rss, 51e6);
});

test('counterDelta: growth, a 32-bit wrap, a reset', () => {
  assert.equal(counterDelta(10, 25), 15);
  assert.equal(counterDelta(2 ** 32 - 10, 5), 15);
  assert.equal(counterDelta(5_000_000_000, 300), 300, 'a 64-bit counter going back was reset');
  assert.equal(counterDelta(3_000, 100), 100, 'a small 32-bit value going back far is a reset');
});

test('parsers: mount escapes and duplicates, missing Tcp line', () => {
  assert.deepEqual(
    parseMounts('/dev/a / ext4 rw 0 0\n/dev/a /bind ext4 rw 0 0\n/dev/b /a\\040b xfs rw 0 0\n').map(
      (m) => m.mount,
    ),
    ['/', '/a b'],
    'one mount per device, octal escapes decoded',
  );
  assert.deepEqual(
    parseMounts('/dev/a / ext4 rw 0 0\noverlay / overlay rw 0 0\noverlay /x overlay rw 0 0\n').map(
      (m) => m.fs,
    ),
    ['overlay'],
    'the last mount over / hides the first; only an overlay root counts',
  );
  assert.equal(parseTcpEstablished('Udp: a\nUdp: 1\n'), null);
});

test('this host: a real sample is schema-valid and plausible', async () => {
  const sampler = new MetricsSampler();
  await sampler.sample(Date.now() - 1000);
  const s = metricSampleSchema.parse(await sampler.sample(Date.now()));
  assert.ok((s.v.mem_total ?? 0) > 0);
  assert.ok((s.v.procs ?? 0) > 0);
  assert.ok(s.v.cpu === null || (s.v.cpu! >= 0 && s.v.cpu! <= 100));
  assert.ok((s.v.agent_rss ?? 0) > 0);
});

test('metricsIntervalFromEnv: default 5, 1..60 whole seconds', () => {
  assert.equal(metricsIntervalFromEnv(undefined), 5);
  assert.equal(metricsIntervalFromEnv('1'), 1);
  assert.equal(metricsIntervalFromEnv('60'), 60);
  for (const bad of ['0', '61', '1.5', 'x']) assert.throws(() => metricsIntervalFromEnv(bad));
});

test('the capability appends one schema-valid record per aligned tick', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_002_500 });
  const appended: { ts: number; payload: Buffer }[] = [];
  const cap = metricsCapability({
    intervalSeconds: 5,
    sample: async (t) => ({ t, v: { cpu: 1 } }),
  });
  cap.start({
    log: { error: (o: unknown) => assert.fail(String(o)) } as never,
    emit: () => {},
    send: () => {},
    onSession: () => {},
    stream: (name) => {
      assert.equal(name, 'metrics');
      return { append: (records: { ts: number; payload: Buffer }[]) => appended.push(...records) } as never;
    },
  });
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  await settle();
  t.mock.timers.tick(2_500);
  await settle();
  t.mock.timers.tick(5_000);
  await settle();
  cap.stop();
  assert.deepEqual(
    appended.map((r) => r.ts),
    [1_000_000_000, 1_000_005_000, 1_000_010_000],
  );
  for (const r of appended) metricSampleSchema.parse(JSON.parse(r.payload.toString()));
});

test('metrics.configure changes the interval live, from the next tick; null returns to the own one', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000_000 });
  const appended: number[] = [];
  const cap = metricsCapability({ intervalSeconds: 5, sample: async (t) => ({ t, v: { cpu: 1 } }) });
  const configure = cap.requests['metrics.configure'];
  cap.start({
    log: { error: (o: unknown) => assert.fail(String(o)) } as never,
    emit: () => {},
    send: () => {},
    onSession: () => {},
    stream: () =>
      ({ append: (records: { ts: number }[]) => appended.push(...records.map((r) => r.ts)) }) as never,
  });
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  const advance = async (ms: number, step = 500) => {
    for (let done = 0; done < ms; done += step) {
      t.mock.timers.tick(step);
      await settle();
    }
  };
  await settle();
  await advance(5_000); // 1_000_005_000
  assert.deepEqual(configure({ intervalSeconds: 1 }), { intervalSeconds: 1 });
  assert.equal(cap.intervalSeconds(), 1);
  await advance(3_000); // three 1 s ticks
  assert.deepEqual(configure({ intervalSeconds: null }), { intervalSeconds: 5 });
  await advance(10_000);
  cap.stop();
  assert.deepEqual(
    appended,
    [1_000_000_000, 1_000_005_000, 1_000_006_000, 1_000_007_000, 1_000_008_000, 1_000_010_000, 1_000_015_000],
  );
  assert.throws(() => metricsConfigureRequest.params.parse({ intervalSeconds: 0 }));
  assert.throws(() => metricsConfigureRequest.params.parse({ intervalSeconds: 61 }));
});

test('supervised processes ride in the tick, at most MAX_PROCESS_SERIES', async () => {
  const sampler = new MetricsSampler({
    root: fixture('a'),
    statfs,
    supervised: () =>
      Array.from({ length: MAX_PROCESS_SERIES + 3 }, (_, i) => ({
        name: `p${i}`,
        cpuPercent: i === 0 ? null : 12.5,
        rssBytes: i === 0 ? null : 4096 * i,
      })),
  });
  const s = metricSampleSchema.parse(await sampler.sample(1_000_000));
  assert.equal(s.processes?.length, MAX_PROCESS_SERIES);
  assert.deepEqual(s.processes?.[0], { name: 'p0', cpu: null, rss: null });
  assert.deepEqual(s.processes?.[2], { name: 'p2', cpu: 12.5, rss: 8192 });
  const none = await new MetricsSampler({ root: fixture('a'), statfs, supervised: () => [] }).sample(1);
  assert.equal(none.processes, undefined, 'no processes: no field');
});
