// Proves what a terminal or a log tail through replica B does when the path to the host changes
// (one PostgreSQL, a real Mosquitto, two replicas in this process sharing the master and controller
// keys, an agent held by A): B losing its broker connection ends both at once with a reason (code
// 4502) and the shell ends on the host; once B is back on the broker a new terminal through it works;
// A losing its broker connection ends a tail through B at once (A's will), and a new one works;
// the host moving from A to B ends a tail routed through A with a reason too, and a new tail through
// B, and a terminal through A (now routed to B), work. Nothing hangs.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeTerminalInput } from '@keel/shared';
import type { MqttReplicaBus } from '../controller/src/bus/mqtt.ts';
import { ApiClient } from './helpers/api.ts';
import { channelTicket, connectChannel } from './helpers/channels.ts';
import { enrollNewAgent, kill, runAgent, waitFor } from './helpers/fleet.ts';
import { clearedAfter, replicaMasterKey, replicaServices, startReplica } from './helpers/replicas.ts';

const left = clearedAfter();
const { procs, dirs } = left;

/** A channel through `api`, opened, with what it received as text. */
async function open(api: ApiClient, hostId: string, kind: string, params?: unknown) {
  const { url } = await channelTicket(api, hostId, kind, params);
  const client = await connectChannel(api.baseUrl, url);
  const chunks: Buffer[] = [];
  client.onData = (chunk) => chunks.push(chunk);
  await Promise.race([
    client.opened,
    client.closed.then(({ end }) => assert.fail(`closed before it opened: ${JSON.stringify(end)}`)),
  ]);
  const text = () => Buffer.concat(chunks).toString('utf8');
  return {
    ...client,
    text,
    type: (s: string) => client.ws.send(encodeTerminalInput(s)),
    until: (re: RegExp, ms = 30_000) => waitFor(() => re.exec(text())?.[1], ms, String(re)),
    /** How it ended, within `ms`: the close code and the reason the console shows. */
    ended: async (ms = 10_000) => {
      const timer = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms).unref(),
      );
      const { code, end } = await Promise.race([client.closed, timer]);
      return { code, reason: (end as { reason?: string } | undefined)?.reason ?? '' };
    },
  };
}

test(
  'a terminal and a tail through B end with a reason when the bus or the host moves; new ones work',
  { timeout: 180_000 },
  async (t) => {
    const env = await replicaServices(t, left, 'keel_bus_recovery');
    if (!env) return;
    // One deployment: the same master key, and the same controller key (an agent pins it, and may
    // then be served by either replica, as behind a load balancer).
    const masterKey = replicaMasterKey();
    const a = await startReplica(left, env, masterKey);
    const b = await startReplica(left, env, masterKey, { controllerKeyOf: a });
    assert.equal(b.fingerprint, a.fingerprint);
    const apiA = await ApiClient.signIn(a.url, a.firstAdmin!);
    const apiB = await ApiClient.signIn(b.url, a.firstAdmin!);

    const agentDir = await enrollNewAgent(a, 'moving');
    dirs.push(agentDir);
    let agent = runAgent(agentDir);
    procs.push(agent);
    const hostId = (await a.services.hosts.list()).find((h) => h.name === 'moving')!.id;
    await waitFor(() => a.gateway.isOnline(hostId), 30_000, 'the agent on A');
    await waitFor(
      async () => (await b.services.hosts.list()).find((h) => h.id === hostId)?.online,
      15_000,
      "online in B's view",
    );
    const made = await apiB.request('POST', `/hosts/${hostId}/processes`, {
      name: 'ticker',
      argv: ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done'],
      autostart: true,
    });
    assert.equal(made.status, 200, JSON.stringify(made.body));

    // A terminal and a tail through B, on A's session.
    const term = await open(apiB, hostId, 'terminal', { cols: 80, rows: 24 });
    term.type('echo "shell=$$ x=$((6*7))"\r');
    const pid = Number(await term.until(/shell=(\d+) x=42/));
    const tail = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    await tail.until(/(tick-\d+)/);

    // B loses its broker connection: both end at once, with the reason; the shell ends on the host.
    const busB = b.bus as MqttReplicaBus;
    busB.client.stream.destroy();
    for (const c of [term, tail]) {
      const { code, reason } = await c.ended(5_000);
      assert.equal(code, 4502);
      assert.match(reason, /lost the message bus to the controller replica holding this host's session/);
    }
    await waitFor(() => !existsSync(`/proc/${pid}`), 10_000, 'the shell ended on the host');
    await waitFor(() => a.channels.openCount === 0, 10_000, "A's side ended (B's will)");

    // B is back on the broker: a new terminal through it reaches the host.
    await waitFor(() => busB.connected, 15_000, 'B back on the broker');
    const again = await open(apiB, hostId, 'terminal', { cols: 80, rows: 24 });
    again.type('echo "again=$((7*6))"\r');
    await again.until(/again=(42)/);
    again.ws.close();

    // A, holding the host, loses its broker connection: the broker publishes A's will, and B ends
    // its tail at once with the reason; a new tail works once A is back.
    const busA = a.bus as MqttReplicaBus;
    const beforeA = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    await beforeA.until(/(tick-\d+)/);
    busA.client.stream.destroy();
    const lostA = await beforeA.ended(5_000);
    assert.equal(lostA.code, 4502);
    assert.match(lostA.reason, /replica holding this host's session stopped or lost the message bus/);
    await waitFor(() => busA.connected, 15_000, 'A back on the broker');
    // Until B hears A clear its will, B refuses channels on A's hosts (A is gone from the bus).
    await waitFor(
      async () =>
        (await apiB.post(`/hosts/${hostId}/channels`, { kind: 'process.logs', params: { name: 'ticker' } }))
          .status === 201,
      5_000,
      'B hears A back',
    );
    const afterA = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    await afterA.until(/(tick-\d+)/);
    afterA.ws.close();

    // The host moves to B: its agent stops and comes back through B's address. A tail through B
    // on A's session ends with a reason; one opened now is B's own; a terminal through A goes to B.
    const moving = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    await moving.until(/(tick-\d+)/);
    await kill(agent);
    const moved = await moving.ended(10_000);
    assert.equal(moved.code, 4502);
    assert.equal(moved.reason, 'agent disconnected', 'as on the replica holding it');
    const enrollment = join(agentDir, 'enrollment.json');
    const saved = JSON.parse(readFileSync(enrollment, 'utf8')) as { controllerUrl: string };
    writeFileSync(enrollment, JSON.stringify({ ...saved, controllerUrl: b.url }), { mode: 0o600 });
    agent = runAgent(agentDir);
    procs.push(agent);
    await waitFor(() => b.gateway.isOnline(hostId), 30_000, 'the agent on B');
    await waitFor(
      async () => (await a.services.hosts.list()).find((h) => h.id === hostId)?.online,
      15_000,
      "online in A's view",
    );
    const local = await open(apiB, hostId, 'process.logs', { name: 'ticker', backlogBytes: 0 });
    await local.until(/(tick-\d+)/);
    local.ws.close();
    const viaA = await open(apiA, hostId, 'terminal', { cols: 80, rows: 24 });
    viaA.type('echo "via=$((6*7))"\r');
    await viaA.until(/via=(42)/);
    viaA.ws.close();
    await waitFor(() => a.channels.openCount === 0 && b.channels.openCount === 0, 10_000, 'all ended');
  },
);
