// Proves that a controller starting beside another on one PostgreSQL resets only the presence of
// hosts whose replica is gone: a host connected to the running replica stays online (in the
// database and in the new replica's API), hosts held by a replica whose lease went stale or by no
// recorded replica go offline, a late offline from a replica the host has left is ignored, and a
// replica that stops cleanly removes its lease.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import postgres from 'postgres';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { ApiClient } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startReplicas,
  waitFor,
  type Proc,
  type Replicas,
} from './helpers/fleet.ts';
import { storeHost } from './helpers/stored-hosts.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
let replicas: Replicas | null = null;

after(async () => {
  for (const p of procs) await kill(p);
  await replicas?.close();
  for (const d of dirs) removeDir(d);
});

test('a starting replica resets only hosts whose replica is gone', { timeout: 120_000 }, async (t) => {
  replicas = await startReplicas(t, 'keel_replicas');
  if (!replicas) return;
  const sql = postgres(replicas.url, { max: 1, onnotice: () => {} });
  try {
    const a = await replicas.start();
    const dir = await enrollNewAgent(a, 'held-by-a');
    dirs.push(dir);
    procs.push(runAgent(dir));
    const held = (await a.services.hosts.list()).find((h) => h.name === 'held-by-a');
    assert.ok(held);
    await waitFor(() => a.gateway.isOnline(held.id), 30_000, 'agent online on A');
    await a.gateway.flushPresence();
    const [row] = await sql<{ online: boolean; session_replica: string | null }[]>`
      select online, session_replica from hosts where id = ${held.id}`;
    assert.equal(row?.online, true);
    const replicaA = row?.session_replica;
    assert.ok(replicaA, 'the session names the replica holding it');
    assert.equal((await sql`select 1 from controller_replicas where id = ${replicaA}`).length, 1);

    // Hosts stored online by replicas that are gone: one whose lease went stale, one whose
    // replica left no row, one from before replicas were recorded.
    const staleReplica = '00000000-0000-4000-8000-000000000001';
    await sql`insert into controller_replicas (id, started_at, heartbeat_at)
      values (${staleReplica}, now() - interval '2 hours', now() - interval '1 hour')`;
    const orphans: Record<string, string> = {};
    for (const name of ['stale-replica', 'no-replica-row', 'no-replica-recorded']) {
      orphans[name] = await storeHost(a, { name, facts: null, online: true });
    }
    await sql`update hosts set session_replica = ${staleReplica} where id = ${orphans['stale-replica']!}`;
    await sql`update hosts set session_replica = '00000000-0000-4000-8000-000000000002'
      where id = ${orphans['no-replica-row']!}`;

    // B starts beside A: A's host stays online; the gone replicas' hosts go offline.
    const b = await replicas.start();
    const online = async () =>
      Object.fromEntries(
        (await sql<{ name: string; online: boolean }[]>`select name, online from hosts`).map((r) => [
          r.name,
          r.online,
        ]),
      );
    assert.deepEqual(await online(), {
      'held-by-a': true,
      'stale-replica': false,
      'no-replica-row': false,
      'no-replica-recorded': false,
    });
    assert.equal((await sql`select 1 from controller_replicas where id = ${staleReplica}`).length, 0);
    assert.equal((await sql`select 1 from controller_replicas where id = ${replicaA}`).length, 1);
    const client = await ApiClient.signIn(b.url, a.firstAdmin!);
    const list = await client.get<{ hosts: { name: string; online: boolean }[] }>('/hosts');
    assert.equal(
      list.body.hosts.find((h) => h.name === 'held-by-a')?.online,
      true,
      "B's API shows A's host online",
    );

    // A late offline from a replica the host has left (here B, which never held it) is ignored.
    const hostsB = createHostRepository(b.database.db);
    const [bRow] = await sql<{ id: string }[]>`select id from controller_replicas where id <> ${replicaA}`;
    assert.ok(bRow);
    await hostsB.applyPresence(new Map([[held.id, { online: false }]]), new Date(), bRow.id);
    assert.equal((await online())['held-by-a'], true, "another replica's offline does not hide A's session");

    // B stops cleanly: its lease goes, A's host is untouched. A stops: its host goes offline.
    await replicas.stop(b);
    assert.equal((await sql`select 1 from controller_replicas where id = ${bRow.id}`).length, 0);
    assert.equal((await online())['held-by-a'], true);
    await replicas.stop(a);
    assert.equal((await online())['held-by-a'], false);
    assert.equal((await sql`select count(*)::int as n from controller_replicas`)[0]?.n, 0);
  } finally {
    await sql.end();
  }
});
