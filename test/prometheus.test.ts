// Proves the controller's Prometheus target: GET /metrics needs a bearer token (or session) holding
// metrics.read (401 without, 403 with a token lacking it), shows each host's newest tick with a
// `host` label and the controller's own figures, passes `promtool check metrics` (Debian
// `prometheus`), and a real Prometheus started here scrapes it and answers a query for a host's CPU.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import { encodeRecords, type MetricSample } from '@keel/shared';
import { openTestApp, type TestApp } from '../controller/src/app-fixture.ts';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { createMetricsRepository } from '../controller/src/repositories/metrics.ts';
import { freePort, waitFor } from './helpers/fleet.ts';
import { need } from './install-helpers.ts';

describe('GET /metrics (Prometheus target)', () => {
  let t: TestApp;
  let server: ServerType;
  let base: string;
  let hostId: string;
  let scrapeToken: string;
  let viewToken: string;

  before(
    async () => {
      t = await openTestApp();
      const [row] = await t.db
        .insert(hosts)
        .values({ name: 'web "1"', publicKey: 'k'.repeat(43), online: true })
        .returning({ id: hosts.id });
      hostId = row!.id;
      // A tick from a minute ago: CPU 12.5 %, one interface, one mount, two cores.
      const ts = Math.floor(Date.now() / 5_000) * 5_000 - 60_000;
      const sample: MetricSample = {
        t: ts,
        v: { cpu: 12.5, load1: 0.25, mem_used: 1_048_576, net_rx_bps: 100, uptime: 3600, temp_max: null },
        cores: [10, 15],
        mounts: [{ mount: '/', fs: 'ext4', size: 1e10, used: 4e9 }],
        ifaces: [{ name: 'eth0', rxBps: 100, txBps: 50, rxBytes: 123_456, txBytes: 654_321 }],
      };
      const r = await createMetricsRepository(t.db).append(hostId, 'metrics', {
        firstSeq: 1,
        count: 1,
        body: encodeRecords([{ ts, payload: Buffer.from(JSON.stringify(sample)) }]),
      });
      assert.equal(r.stored, 1);
      const admin = await t.signInAs('admin');
      const make = async (permissions: string[]) => {
        const res = await t.request('/api/v1/tokens', {
          method: 'POST',
          as: admin,
          json: { name: 'scraper', permissions },
        });
        assert.equal(res.status, 201, await res.clone().text());
        return ((await res.json()) as { secret: string }).secret;
      };
      scrapeToken = await make(['metrics.read']);
      viewToken = await make(['host.view']);
      const port = await freePort();
      server = serve({ fetch: t.app.fetch, hostname: '127.0.0.1', port });
      base = `http://127.0.0.1:${port}`;
    },
    { timeout: 180_000 },
  );
  after(async () => {
    await new Promise((r) => server?.close(r));
    await t?.close();
  });

  const scrape = (token?: string) =>
    fetch(`${base}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

  test('needs a token with metrics.read; shows the host and the controller', async () => {
    assert.equal((await scrape()).status, 401);
    assert.equal((await scrape('kat_not-a-token')).status, 401);
    assert.equal((await scrape(viewToken)).status, 403);
    const res = await scrape(scrapeToken);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    const labels = `host="web \\"1\\"",host_id="${hostId}"`;
    assert.ok(body.includes(`keel_host_cpu_percent{${labels}} 12.5\n`), body);
    assert.ok(body.includes(`keel_host_up{${labels}} 1\n`));
    assert.ok(body.includes(`keel_host_load1{${labels}} 0.25\n`));
    assert.ok(body.includes(`keel_host_net_rx_bytes_per_second{${labels}} 100\n`));
    assert.ok(body.includes(`keel_host_cpu_core_percent{${labels},core="1"} 15\n`));
    assert.ok(body.includes(`keel_host_network_receive_bytes_total{${labels},iface="eth0"} 123456\n`));
    assert.ok(body.includes('# TYPE keel_host_network_receive_bytes_total counter\n'));
    assert.ok(!body.includes('keel_host_temp_max'), 'a null series is left out');
    assert.match(body, /^keel_controller_hosts 1$/m);
    assert.match(body, /^process_resident_memory_bytes \d+$/m);
  });

  test('passes promtool check metrics', { skip: need('promtool') }, async () => {
    const body = await (await scrape(scrapeToken)).text();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: body });
    assert.equal(r.status, 0, `${r.stdout.toString()}${r.stderr.toString()}`);
  });

  test(
    "a real Prometheus scrapes it and answers a query for the host's CPU",
    { skip: need('prometheus'), timeout: 120_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'keel-prometheus-'));
      let prom: ChildProcess | null = null;
      try {
        writeFileSync(join(dir, 'token'), scrapeToken);
        writeFileSync(
          join(dir, 'prometheus.yml'),
          [
            'global:',
            '  scrape_interval: 1s',
            'scrape_configs:',
            '  - job_name: keel',
            '    authorization:',
            `      credentials_file: ${join(dir, 'token')}`,
            '    static_configs:',
            `      - targets: ['${new URL(base).host}']`,
            '',
          ].join('\n'),
        );
        const port = await freePort();
        prom = spawn(
          'prometheus',
          [
            `--config.file=${join(dir, 'prometheus.yml')}`,
            `--storage.tsdb.path=${join(dir, 'data')}`,
            `--web.listen-address=127.0.0.1:${port}`,
            '--log.level=warn',
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let err = '';
        prom.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        const query = encodeURIComponent(`keel_host_cpu_percent{host_id="${hostId}"}`);
        const result = await waitFor(
          async () => {
            if (prom!.exitCode !== null) throw new Error(`prometheus exited: ${err}`);
            const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${query}`).catch(() => null);
            if (!res?.ok) return undefined;
            const body = (await res.json()) as {
              data: { result: { metric: Record<string, string>; value: [number, string] }[] };
            };
            return body.data.result[0];
          },
          90_000,
          'Prometheus answering the CPU query',
        );
        assert.equal(result.value[1], '12.5');
        assert.equal(result.metric.host, 'web "1"');
        assert.equal(result.metric.job, 'keel');
        // Its own view of the target: up.
        const up = (await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=up`)).json()) as {
          data: { result: { value: [number, string] }[] };
        };
        assert.equal(up.data.result[0]?.value[1], '1');
      } finally {
        if (prom && prom.exitCode === null) {
          const exited = new Promise((r) => prom!.once('exit', r));
          prom.kill('SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
