// Benchmark: issue 12's proxy users figures, on the controller's real path.
//  fan-out   10,000 proxy users on 20 simulated nodes (every user on every node): the time from one
//            user change through the proxy users service (what the PATCH route calls) until the new
//            config is applied on all 20 nodes. The path is the real one: coalesced re-apply, one
//            batch query for every node's users, the proxy nodes service assigning and storing
//            each generation (users by reference to a stored user set, rendered files by
//            content hash), the controller's side of the gateway (params size check and validation,
//            result validation), and a simulated agent per node that renders the v2ray config with
//            the agent's own adapter (v2rayAdapter.render, 10,000 clients) and answers config.apply.
//            Real agents render on their own hosts at the same time, so the simulated agents render
//            a given users list once and every node with that list waits for it (the wall time of
//            20 parallel renders is one render; rendering 20 times in this one process would
//            measure this machine's core count instead). A user-only change skips `v2ray -test` on
//            the agent (see docs/proxies.md), so the simulated agent does not run it either.
//            Target: < 2 s.
//  enforce   the delay from a node's counters crossing a user's quota to the user being gone from
//            the rendered config of all 20 nodes, with the scraper running at a 2 s interval.
//            Target: one scrape interval.
//  peer      Ansible pushing the same change the way operators without a panel do: the rendered
//            10,000-client v2ray config (one user changed each run) copied to 20 local hosts
//            (ansible_connection=local, forks 20, `copy` module: checksum, temp file, rename), in
//            the same run. It does not reload v2ray or render per host, so it is a floor for the
//            peer. Skipped when `ansible` is not installed or with --no-peer.
// Render + validate of one 10,000-user config: `npm run bench -- proxies-render` (the agent side).
// Run: npm run bench -- proxies [--users 10000] [--nodes 20] [--runs 5] [--no-peer]
// PostgreSQL from KEEL_BENCH_DATABASE_URL, else KEEL_TEST_DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/test (a scratch database is made and dropped).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { adapterSettingsSchemas, requestDefinition, type ProxyUserSpec } from '@keel/shared';
import { checkParamsSize } from '../controller/src/gateway/parts.ts';
import { v2rayAdapter } from '../agent/src/configs/v2ray.ts';
import type { AdapterContext } from '../agent/src/configs/adapter.ts';
import { createLocalBus } from '../controller/src/bus/index.ts';
import { hosts } from '../controller/src/db/schema/hosts.ts';
import { proxyNodes } from '../controller/src/db/schema/proxy-nodes.ts';
import { proxyUserNodes, proxyUsers } from '../controller/src/db/schema/proxy-users.ts';
import { testDatabaseTargets } from '../controller/src/db/test-databases.ts';
import type { AgentGateway } from '../controller/src/gateway/types.ts';
import { createServices } from '../controller/src/services/index.ts';
import { createProxyUsersRepository } from '../controller/src/repositories/proxy-users.ts';
import { actorOf } from '../controller/src/services/access.ts';

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '10000' },
    nodes: { type: 'string', default: '20' },
    runs: { type: 'string', default: '5' },
    'no-peer': { type: 'boolean', default: false },
  },
  allowPositionals: true,
});
const USERS = Number(args.users);
const NODES = Number(args.nodes);
const RUNS = Number(args.runs);
const SCRAPE_SECONDS = 2;
const url =
  process.env.KEEL_BENCH_DATABASE_URL ??
  process.env.KEEL_TEST_DATABASE_URL ??
  'postgres://postgres@127.0.0.1:5432/test';

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const ms = (x: number) => `${x.toFixed(0)} ms`;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

const settings = adapterSettingsSchemas.v2ray.parse({
  listenAddress: '127.0.0.1',
  inbounds: [{ tag: 'vless-in', protocol: 'vless', port: 8443 }],
});
const ctxFor = (instance: string) =>
  ({ instance, dir: `/nonexistent/${instance}` }) as unknown as AdapterContext;

/** What each simulated node applied last: the user ids it rendered. */
const applied = new Map<string, Set<string>>();
/** Traffic counters each simulated node reports. */
const counters = new Map<string, Map<string, number>>();
const counterEpoch = `bench-${Date.now()}`;

/** Renders per users list (see the header: real agents render in parallel on their hosts). */
const renders = new WeakMap<object, ReturnType<typeof v2rayAdapter.render>>();
let rendersDone = 0;

/**
 * Simulated agents behind the controller's side of the real gateway: params size-checked and
 * validated, results validated, as Gateway.request does; render with the agent's v2ray adapter.
 */
function simulatedGateway(): AgentGateway {
  const gw = {
    isOnline: () => true,
    disconnect: () => false,
    async request(hostId: string, method: string, params: Record<string, unknown>) {
      const def = requestDefinition(method)!;
      checkParamsSize(method, params);
      if (!def.params.safeParse(params).success)
        throw new Error(`simulated gateway: bad params for ${method}`);
      const result = await answer(hostId, method, params);
      const checked = def.result.safeParse(result);
      if (!checked.success) throw new Error(`simulated gateway: bad result for ${method}`);
      return checked.data;
    },
  };
  return gw as unknown as AgentGateway;
}

/** A simulated agent's answer. */
async function answer(hostId: string, method: string, params: Record<string, unknown>) {
  if (method === 'config.apply') {
    const users = params.users as ProxyUserSpec[];
    let rendering = renders.get(users);
    if (!rendering) {
      rendering = v2rayAdapter.render(settings, users, ctxFor(params.instance as string));
      renders.set(users, rendering);
      rendersDone++;
    }
    const files = await rendering;
    applied.set(hostId, new Set(users.map((u) => u.id)));
    return {
      instance: params.instance,
      generation: params.generation,
      method: 'api',
      files: files.map((f) => ({
        path: `/etc/keel/${params.instance as string}/${f.name}`,
        sha256: createHash('sha256').update(f.content).digest('hex'),
        content: f.content,
      })),
      appliedAt: Date.now(),
    };
  }
  if (method === 'config.traffic') {
    const c = counters.get(hostId) ?? new Map<string, number>();
    return {
      instance: params.instance,
      counterEpoch,
      users: [...c].map(([id, bytes]) => ({ id, upBytes: bytes, downBytes: 0 })),
    };
  }
  throw new Error(`simulated agent: ${method} not simulated`);
}

async function main(): Promise<void> {
  console.log(
    `proxies benchmark: ${USERS} users on ${NODES} simulated nodes; ${cpus().length} cores (${cpus()[0]?.model}); load average ${load()}`,
  );
  const target = testDatabaseTargets({ KEEL_TEST_DATABASE_URL: url }).find((t) => t.driver === 'postgres');
  if (!target) throw new Error('no PostgreSQL target');
  const testDb = await target.create();
  try {
    const { db } = await testDb.open();
    const log = pino({ level: process.env.KEEL_BENCH_LOG ?? 'silent' });
    const services = createServices({
      db,
      bus: createLocalBus(),
      gateway: simulatedGateway(),
      log,
      config: { publicUrl: 'https://keel.example.net', joinTokenTtlSeconds: 3600 },
      controllerFingerprint: 'sha256:bench',
    });
    const svc = services.proxyUsers;

    // ---- data: hosts, nodes, users, placements (bulk, outside the measured path) ----
    const t0 = performance.now();
    const hostIds = (
      await db
        .insert(hosts)
        .values(
          Array.from({ length: NODES }, (_, i) => ({
            name: `node-${i}.example.net`,
            publicKey: randomBytes(32).toString('base64url'),
          })),
        )
        .returning({ id: hosts.id })
    ).map((r) => r.id);
    await db.insert(proxyNodes).values(
      hostIds.map((hostId) => ({
        hostId,
        instance: 'vpn',
        adapter: 'v2ray',
        settings,
        state: 'applied' as const,
      })),
    );
    const userIds: string[] = [];
    for (let i = 0; i < USERS; i += 1000) {
      const rows = await db
        .insert(proxyUsers)
        .values(
          Array.from({ length: Math.min(1000, USERS - i) }, (_, k) => ({
            name: `user-${i + k}`,
            secret: randomBytes(16).toString('hex'),
            uuid: randomUUID(),
            password: randomBytes(18).toString('base64url'),
            subscriptionToken: randomBytes(32).toString('base64url'),
          })),
        )
        .returning({ id: proxyUsers.id });
      userIds.push(...rows.map((r) => r.id));
    }
    for (const hostId of hostIds) {
      for (let i = 0; i < userIds.length; i += 2000) {
        await db
          .insert(proxyUserNodes)
          .values(userIds.slice(i, i + 2000).map((userId) => ({ userId, hostId, instance: 'vpn' })));
      }
    }
    console.log(
      `setup: ${NODES} nodes, ${USERS} users, ${USERS * NODES} placements in ${ms(performance.now() - t0)}`,
    );

    const owner = { ...actorOf({ id: randomUUID(), role: 'owner' }), ip: null };
    const allNodesApplied = () =>
      new Promise<void>((resolve) => {
        let n = 0;
        const off = svc.onApplied((_node, ok) => {
          if (!ok) console.log('  a node apply failed');
          if (++n === NODES) {
            off();
            resolve();
          }
        });
      });

    // ---- fan-out ----
    const times: number[] = [];
    /** CPU time this process (controller + simulated agents' one render) spent per fan-out. */
    const cpuTimes: number[] = [];
    for (let r = 0; r <= RUNS; r++) {
      const id = userIds[r % userIds.length]!;
      const done = allNodesApplied();
      const start = performance.now();
      const rendersBefore = rendersDone;
      const cpu0 = process.cpuUsage();
      await svc.update(owner, id, { note: `change ${r}`, maxConnections: 10 + r });
      await done;
      const took = performance.now() - start;
      if (rendersDone - rendersBefore !== 1)
        console.log(`  (${rendersDone - rendersBefore} distinct renders)`);
      const cpu = process.cpuUsage(cpu0);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      if (r > 0) times.push(took); // the first run warms caches and JIT
      if (r > 0) cpuTimes.push(cpuMs);
      console.log(
        `  ${r === 0 ? 'warm-up' : `run ${r}`}: one user change -> applied on ${NODES} nodes in ${ms(took)} (this process's CPU ${ms(cpuMs)}; load ${load()})`,
      );
    }
    // Where the time goes: the one batch query for every node's users, and one node's apply
    // through the proxy nodes service alone (generation stored with 10,000 ids and the file).
    const q0 = performance.now();
    await createProxyUsersRepository(db).activeOnNodes(
      hostIds.map((hostId) => ({ hostId, instance: 'vpn' })),
    );
    const queryAll = performance.now() - q0;
    const a0 = performance.now();
    await services.proxyNodes.apply({ system: true, id: 'bench' }, hostIds[0]!, 'vpn', { reason: 'bench' });
    const applyOne = performance.now() - a0;
    console.log(
      `  breakdown: users of all ${NODES} nodes in one query ${ms(queryAll)}; one node's apply (proxy nodes service + simulated agent) ${ms(applyOne)}`,
    );
    const renderStart = performance.now();
    await v2rayAdapter.render(settings, await svc.usersForNode(hostIds[0]!, 'vpn'), ctxFor('vpn'));
    const renderOne = performance.now() - renderStart;
    console.log(
      `fan-out: median ${ms(pct(times, 0.5))}, max ${ms(Math.max(...times))} (target < 2000 ms), CPU of this process median ${ms(pct(cpuTimes, 0.5))}; of which one node's render in this process ~${ms(renderOne)} (x${NODES} here; on real nodes each agent renders its own in parallel)`,
    );

    // ---- peer: Ansible copying the same rendered config to 20 local hosts ----
    if (!args['no-peer'] && spawnSync('ansible', ['--version'], { stdio: 'ignore' }).status === 0) {
      const dir = mkdtempSync(join(tmpdir(), 'keel-bench-proxies-ansible-'));
      try {
        const inventory = join(dir, 'inventory.ini');
        writeFileSync(
          inventory,
          `[all]\n${hostIds.map((_, i) => `node${i} ansible_connection=local ansible_python_interpreter=/usr/bin/python3`).join('\n')}\n`,
        );
        for (let i = 0; i < NODES; i++) mkdirSync(join(dir, `node${i}`));
        const users = await svc.usersForNode(hostIds[0]!, 'vpn');
        const peer: number[] = [];
        for (let r = 0; r <= Math.min(RUNS, 3); r++) {
          // One user changed, as in the Keel runs: a new file each time, so every host copies.
          const changed = users.map((u, k) => (k === r ? { ...u, uuid: randomUUID() } : u));
          const [file] = await v2rayAdapter.render(settings, changed, ctxFor('vpn'));
          const src = join(dir, 'config.json');
          writeFileSync(src, file!.content);
          const started = performance.now();
          const out = spawnSync(
            'ansible',
            [
              'all',
              '-i',
              inventory,
              '-m',
              'copy',
              '-a',
              `src=${src} dest=${dir}/{{ inventory_hostname }}/config.json mode=0600`,
              '-f',
              String(NODES),
              '-o',
            ],
            { env: { ...process.env, ANSIBLE_LOCAL_TEMP: dir }, stdio: 'pipe' },
          );
          const took = performance.now() - started;
          if (out.status !== 0)
            throw new Error(`ansible exited ${out.status}: ${out.stderr.toString().slice(0, 500)}`);
          if (r > 0) peer.push(took);
          console.log(
            `  ansible ${r === 0 ? 'warm-up' : `run ${r}`}: ${(file!.content.length / 1e6).toFixed(2)} MB config copied to ${NODES} local hosts in ${ms(took)} (load ${load()})`,
          );
        }
        console.log(
          `peer: ansible copy of the same config to ${NODES} local hosts, median ${ms(pct(peer, 0.5))} (no render per host, no reload: a floor for the peer); keel fan-out median ${ms(pct(times, 0.5))}`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    // ---- enforcement delay ----
    const victim = userIds[USERS - 1]!;
    const victimName = `user-${USERS - 1}`;
    await svc.update(owner, victim, { dataLimitBytes: 1_000_000 });
    await svc.settled();
    svc.start(); // scrapes every SCRAPE_SECONDS (set below through the env default)
    // Let a couple of rounds pass, then cross the quota on two nodes combined at a random moment.
    await new Promise((r) => setTimeout(r, 1000 + Math.random() * SCRAPE_SECONDS * 1000));
    counters.set(hostIds[0]!, new Map([[victimName, 600_000]]));
    counters.set(hostIds[1]!, new Map([[victimName, 500_000]]));
    const crossed = performance.now();
    for (;;) {
      if (hostIds.every((h) => !applied.get(h)?.has(victimName))) break;
      await new Promise((r) => setTimeout(r, 20));
      if (performance.now() - crossed > 600_000) throw new Error('not enforced within 600 s');
    }
    const delay = performance.now() - crossed;
    console.log(
      `enforce: over quota on 2 nodes combined -> gone from all ${NODES} nodes in ${ms(delay)} (scrape interval ${SCRAPE_SECONDS * 1000} ms; target <= one interval + the fan-out)`,
    );
    await svc.stop();
    await services.proxyNodes.stop();
  } finally {
    await testDb.cleanup();
  }
}

process.env.KEEL_PROXY_SCRAPE_SECONDS = String(SCRAPE_SECONDS);
await main();
process.exit(0);
