// Proves live channels between controller replicas on one PostgreSQL and a real Mosquitto: with an
// agent held by replica A (a `keel-controller serve` process), a browser served by replica B (in
// this process, no session of that host) opens a terminal that echoes its input, and a live log
// tail that shows new lines, both carried over the broker; a browser that stops reading holds the
// flood back on the agent (neither replica grows); closing the browser side ends the shell on the
// host; killing A ends B's channel at once with a clear reason.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeTerminalInput } from '@keel/shared';
import { ApiClient, firstAdminFrom } from './helpers/api.ts';
import { channelTicket, connectChannel, rssOf, type ChannelClient } from './helpers/channels.ts';
import {
  enrollThroughApi,
  runAgent,
  startControllerProcess,
  startTestController,
  tempDir,
  waitFor,
} from './helpers/fleet.ts';
import { clearedAfter, replicaServices } from './helpers/replicas.ts';

const left = clearedAfter();
const { procs, dirs, closers } = left;

/** A channel client that keeps what it received as text. */
async function open(api: ApiClient, hostId: string, kind: string, params?: unknown) {
  const { url } = await channelTicket(api, hostId, kind, params);
  const client = await connectChannel(api.baseUrl, url);
  const chunks: Buffer[] = [];
  const text = () => Buffer.concat(chunks).toString('utf8');
  let seen: (() => void) | null = null;
  client.onData = (chunk) => {
    chunks.push(chunk);
    seen?.();
  };
  await Promise.race([
    client.opened,
    client.closed.then(({ end }) => {
      throw new Error(`closed before it opened: ${JSON.stringify(end)}`);
    }),
  ]);
  return Object.assign(client as ChannelClient, {
    /** Resolves as soon as `marker` is in a chunk received after the call (for timing). */
    echoed: (marker: string) =>
      new Promise<void>((resolve) => {
        const from = chunks.length;
        seen = () => {
          if (!Buffer.concat(chunks.slice(from)).toString('utf8').includes(marker)) return;
          seen = null;
          resolve();
        };
      }),
    text,
    bytes: () => chunks.reduce((n, c) => n + c.length, 0),
    type: (s: string) => client.ws.send(encodeTerminalInput(s)),
    until: (re: RegExp, ms = 15_000) =>
      waitFor(() => re.exec(text())?.[1], ms, String(re)).catch(() =>
        assert.fail(`no ${re} after ${ms} ms in ${JSON.stringify(text().slice(-300))}`),
      ),
  });
}

test(
  'a terminal and a log tail through replica B reach the agent replica A holds, and end with it',
  { timeout: 240_000 },
  async (t) => {
    const services = await replicaServices(t, left, 'keel_bus_channels');
    if (!services) return;
    const env = {
      ...services,
      // Replicas share the master key: channel messages are sealed under a key derived from it.
      KEEL_MASTER_KEY: randomBytes(32).toString('base64'),
    };

    const a = await startControllerProcess(procs, { env });
    dirs.push(a.dataDir);
    // In this process the key is read from the data dir (KEEL_MASTER_KEY is the process's own env).
    const bDir = tempDir('keel-ctl-');
    writeFileSync(join(bDir, 'master.key'), `${env.KEEL_MASTER_KEY}\n`, { mode: 0o600 });
    const b = await startTestController({ dataDir: bDir, env });
    closers.push(() => b.close());
    dirs.push(b.dataDir);
    assert.ok(b.bus.connected, 'B is on the broker');
    const admin = firstAdminFrom(a.proc.output())!;
    const apiB = new ApiClient(b.url);
    await apiB.login(admin.username, admin.password);

    const agentDir = tempDir('keel-agent-');
    dirs.push(agentDir);
    const hostId = await enrollThroughApi(a.api, agentDir, 'held-by-a');
    const agent = runAgent(agentDir);
    procs.push(agent);
    await waitFor(
      async () =>
        (await apiB.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts.find(
          (h) => h.id === hostId,
        )?.online,
      30_000,
      'B shows the host online',
    );
    assert.equal(b.gateway.isOnline(hostId), false, 'the session is on A, not B');

    // A terminal through B: its input reaches the shell on the host and the echo comes back.
    const term = await open(apiB, hostId, 'terminal', { cols: 80, rows: 24 });
    term.type('echo "shell=$$ answer=$((6*7))"\r');
    const pid = Number(await term.until(/shell=(\d+) answer=42/, 60_000));
    assert.ok(pid > 1 && existsSync(`/proc/${pid}`), 'the shell runs on the host');
    assert.equal(b.channels.openCount, 1, "B relays the browser's channel");

    // What the detour costs: keystroke echo through B (two broker hops) beside a terminal on A.
    const echoMs = async (term: Awaited<ReturnType<typeof open>>, rounds: number) => {
      const times: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const echoed = term.echoed(`m${i}x`);
        const from = performance.now();
        term.type(`: m${i}x`);
        await echoed;
        times.push(Math.round((performance.now() - from) * 100) / 100);
        term.type('\x15'); // clears the line
      }
      return times.sort((x, y) => x - y);
    };
    const direct = await open(a.api, hostId, 'terminal', { cols: 80, rows: 24 });
    direct.type('echo "direct=$((6*7))"\r');
    await direct.until(/direct=(42)/, 60_000);
    const viaA = await echoMs(direct, 30);
    const viaB = await echoMs(term, 30);
    direct.ws.close();
    const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
    t.diagnostic(
      `keystroke echo, 30 each: on A p50 ${pct(viaA, 0.5)} ms p90 ${pct(viaA, 0.9)} ms; ` +
        `through B p50 ${pct(viaB, 0.5)} ms p90 ${pct(viaB, 0.9)} ms`,
    );

    // A browser that stops reading: the flood waits on the agent, neither replica piles it up.
    const rssA = await rssOf(a.proc.child.pid!);
    const heapB = process.memoryUsage().rss;
    term.type('yes routed-flood\r');
    await term.until(/(routed-flood\r\nrouted-flood)/);
    term.ws.pause();
    await new Promise((r) => setTimeout(r, 2_000));
    const heldBytes = term.bytes();
    await new Promise((r) => setTimeout(r, 1_000));
    const growthA = (await rssOf(a.proc.child.pid!)) - rssA;
    const growthB = process.memoryUsage().rss - heapB;
    assert.ok(growthA < 40 * 1024 * 1024, `replica A grew ${growthA} bytes`);
    assert.ok(growthB < 40 * 1024 * 1024, `replica B grew ${growthB} bytes`);
    term.type('\x03');
    term.ws.resume();
    await waitFor(() => term.bytes() > heldBytes, 10_000, 'the flood flows again');
    term.type('echo "after=$((7*6))"\r');
    await term.until(/after=(42)/, 30_000);

    // Closing the browser side ends the channel on the agent: the shell goes.
    term.ws.close();
    await term.closed;
    await waitFor(() => !existsSync(`/proc/${pid}`), 10_000, 'the shell ended on the host');
    await waitFor(() => b.channels.openCount === 0, 5_000, "B's relay ended");

    // A live log tail through B: lines the process writes after it opened arrive.
    const made = await apiB.request('POST', `/hosts/${hostId}/processes`, {
      name: 'ticker',
      argv: ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done'],
      autostart: false,
    });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const started = await apiB.request('POST', `/hosts/${hostId}/processes/ticker/start`);
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const tail = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    const ticks = () =>
      tail
        .text()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { l?: string })
        .map((r) => Number(/^tick-(\d+)/.exec(r.l ?? '')?.[1] ?? NaN))
        .filter((n) => n > 0);
    await waitFor(() => ticks().length > 0, 15_000, 'a first line through the tail');
    const first = ticks()[0]!;
    await waitFor(() => ticks().some((n) => n >= first + 3), 15_000, 'newer lines through the tail');
    assert.deepEqual(
      ticks().slice(0, 4),
      [first, first + 1, first + 2, first + 3],
      'lines come in order, none lost',
    );

    // Killing replica A: B's channel ends at once (the broker publishes A's will), with the reason.
    const killedAt = Date.now();
    await a.kill();
    const { code, end } = await tail.closed;
    const tookMs = Date.now() - killedAt;
    assert.equal(code, 4502, 'closed as "agent gone"');
    assert.equal(end?.type, 'close');
    assert.match((end as { reason: string }).reason, /replica holding this host's session stopped/);
    assert.ok(tookMs < 5_000, `B noticed in ${tookMs} ms`);
    await waitFor(() => b.channels.openCount === 0, 5_000, "B's relay ended");

    // B's /metrics counts the channels it routed, and none open now.
    const token = await apiB.request<{ secret: string }>('POST', '/tokens', {
      name: 'channels-scrape',
      permissions: ['metrics.read'],
    });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const scrape = await (
      await fetch(`${b.url}/metrics`, { headers: { authorization: `Bearer ${token.body.secret}` } })
    ).text();
    assert.match(scrape, /^keel_controller_bus_channels_total\{direction="opened"\} 2$/m);
    assert.match(scrape, /^keel_controller_bus_channels_open 0$/m);
  },
);
