// Proves a replica whose will is heard stops being taken for the holder of its hosts at once (one
// PostgreSQL, a real Mosquitto, replica B in this process and a stand-in for replica A: its lease row,
// a host whose session names it, and its bus with its will, killed without a goodbye while its lease
// is still fresh): through B, a channel ticket is refused and a ticket issued before ends at once,
// both with the reason, and a job host ends `offline` with it, where before they waited 10 s for "the
// agent did not open the channel in time"; A coming back on the bus (its will cleared) is reached again;
// A dead for good with its lease lapsed: B clears the will it left.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import postgres from 'postgres';
import { CHANNEL_KEY_PURPOSE, replicaWill } from '../controller/src/bus/channels.ts';
import { createMqttBus } from '../controller/src/bus/mqtt.ts';
import { HOLDER_GONE } from '../controller/src/bus/routing.ts';
import { subscriptionsHeld } from '../controller/src/bus/test-broker.ts';
import { replicaGoneTopic } from '../controller/src/bus/topics.ts';
import { createSecretBox } from '../controller/src/secrets.ts';
import { ApiClient } from './helpers/api.ts';
import { channelTicket, connectChannel } from './helpers/channels.ts';
import { enrollIdentity, waitFor } from './helpers/fleet.ts';
import { clearedAfter, replicaMasterKey, replicaServices, startReplica } from './helpers/replicas.ts';

const left = clearedAfter();
const { closers } = left;

test(
  "a replica's will makes its hosts offline through the others at once, until it is back",
  { timeout: 60_000 },
  async (t) => {
    const env = await replicaServices(t, left, 'keel_bus_gone');
    if (!env) return;
    const masterKey = replicaMasterKey();
    const b = await startReplica(left, env, masterKey);
    const apiB = await ApiClient.signIn(b.url, b.firstAdmin!);
    const { hostId } = await enrollIdentity(b, 'held-by-a');

    // Replica A as B sees it: a fresh lease, the host's session on it, and A on the bus with its will.
    const leaseA = randomUUID();
    const busIdA = randomUUID();
    const sql = postgres(env.DATABASE_URL, { max: 1, onnotice: () => {} });
    closers.push(() => sql.end());
    await sql`insert into controller_replicas (id) values (${leaseA})`;
    await sql`update hosts set online = true, session_replica = ${leaseA} where id = ${hostId}`;
    const channelKey = createSecretBox(Buffer.from(masterKey, 'base64')).deriveKey(CHANNEL_KEY_PURPOSE);
    const busA = async () => {
      const bus = await createMqttBus({
        url: env.KEEL_MQTT_URL,
        prefix: env.KEEL_MQTT_TOPIC_PREFIX,
        eventKey: randomBytes(32),
        log: pino({ level: 'silent' }),
        replicaId: busIdA,
        will: replicaWill(channelKey, env.KEEL_MQTT_TOPIC_PREFIX, busIdA, leaseA),
        backoff: { initialMs: 600_000, maxMs: 600_000 },
      });
      closers.push(() => bus.close());
      await subscriptionsHeld(bus.client, env.KEEL_MQTT_TOPIC_PREFIX);
      return bus;
    };
    const a = await busA();
    const ticket = async () =>
      apiB.post<{ url: string; error?: { code: string; message: string } }>(`/hosts/${hostId}/channels`, {
        kind: 'terminal',
        params: { cols: 80, rows: 24 },
      });
    assert.equal((await ticket()).status, 201, 'A alive: the host is reached through it');
    const early = await channelTicket(apiB, hostId, 'terminal', { cols: 80, rows: 24 });

    // A dies: its connection ends without a goodbye (the broker publishes its will), and its lease
    // row is still fresh (its hosts stay online in the database until it lapses, 30 s).
    a.client.stream.destroy();
    await a.close();
    const refused = await waitFor(
      async () => {
        const r = await ticket();
        return r.status === 201 ? null : r;
      },
      5_000,
      'the ticket refused',
    );
    assert.equal(refused.body.error?.code, 'host.offline');
    assert.equal(
      refused.body.error?.message,
      `${HOLDER_GONE.charAt(0).toUpperCase()}${HOLDER_GONE.slice(1)}.`,
    );

    // A ticket issued before the will: its socket ends at once with the reason.
    const startedAt = Date.now();
    const client = await connectChannel(b.url, early.url);
    const { code, end } = await client.closed;
    assert.ok(Date.now() - startedAt < 3_000, `ended after ${Date.now() - startedAt} ms`);
    assert.equal(code, 1000);
    assert.deepEqual(end, { type: 'close', reason: HOLDER_GONE, code: 'host.offline' });

    // A job on the host through B: offline with the reason, at once.
    const run = await apiB.post<{ run: { id: string } }>('/jobs/runs', {
      command: { argv: ['/bin/true'] },
      target: { hostIds: [hostId] },
    });
    assert.equal(run.status, 201, JSON.stringify(run.body));
    await waitFor(() => b.services.jobs.wait(run.body.run.id), 3_000, 'the run ends');
    const detail = await apiB.get<{ hosts: { status: string; error: string | null }[] }>(
      `/jobs/runs/${run.body.run.id}`,
    );
    assert.deepEqual(
      detail.body.hosts.map((h) => [h.status, h.error]),
      [['offline', HOLDER_GONE]],
    );

    // A only lost the broker and comes back (its lease was valid all along): it clears its will on
    // connecting, and B reaches the host through it again.
    const back = await busA();
    await waitFor(async () => (await ticket()).status === 201, 5_000, 'the host reached through A again');

    // A dies for good and its lease has lapsed (the row another replica's sweep forgets): B clears
    // the will A leaves as soon as it hears it, so wills of dead lives do not pile up on the broker.
    const watcher = await connectAsync(env.KEEL_MQTT_URL, { protocolVersion: 5, clean: true });
    closers.push(() => watcher.endAsync());
    const wills: Buffer[] = [];
    watcher.on('message', (_topic, body) => wills.push(body));
    await watcher.subscribeAsync(replicaGoneTopic(env.KEEL_MQTT_TOPIC_PREFIX, busIdA), { qos: 1 });
    await sql`delete from controller_replicas where id = ${leaseA}`;
    back.client.stream.destroy();
    await back.close();
    await waitFor(
      () => wills.length >= 2 && wills.at(-1)!.length === 0,
      5_000,
      "A's will published, then cleared by B",
    );
    assert.ok(wills[0]!.length > 0, 'the first message is the will');
  },
);
