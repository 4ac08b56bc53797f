// Benchmark: run on many hosts (issue 10). One `uname -a` on N simulated agents through the real
// path — POST /jobs/runs on a controller process -> a `job.run` channel per host over each agent's
// sealed link -> the agent's real job handler (agent/src/jobs), which spawns `uname -a` -> output and
// exit code back and stored — timed from the POST to the run's end; beside `ansible all -m command
// -a 'uname -a'` on 20 local hosts (ansible_connection=local, forks 20) in the same run, with the
// time per host of each. The simulated agents are the real AgentLink + AgentChannelHub + job
// handler, all in this one process (a real fleet spreads that work over N machines, so this is the
// harder case for Keel: N spawns and N links on the same 2 cores as the controller).
// The machine's ceiling for it, in the same run: the N `uname -a` spawns alone, from one Node
// process, 64 at once, output collected (what the simulated agents must do whatever Keel adds).
// And Keel's own path without the spawns, in the same run: the same POST and channels, but each
// simulated agent answers the argv ["keel-bench:uname"] at once with a stored `uname -a` line
// instead of spawning (what the controller sees of a real fleet, where the N spawns run on N
// machines at once). Target (issue 10): 1,000 agents in < 2 s.
//
// Run: npm run bench -- fanout [--n 1000] [--ansible-hosts 20] [--repeat 3] [--pg]
// (--pg: the controller on a scratch PostgreSQL database, KEEL_BENCH_PG_URL, instead of PGlite)
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { encodeJobOutput, generateSigningIdentity, type JobRunChannelParams } from '@keel/shared';
import type { ChannelHandler } from '../agent/src/channels/hub.ts';
import { AgentChannelHub } from '../agent/src/channels/hub.ts';
import { jobRunChannelHandler } from '../agent/src/jobs/index.ts';
import { AgentLink } from '../agent/src/link/connection.ts';
import {
  createScratchDatabase,
  createJoinToken,
  enrollIdentity,
  machine,
  openFileLimit,
  pool,
  removeDir,
  sleep,
  startController,
  tempDir,
  waitFor,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    'ansible-hosts': { type: 'string', default: '20' },
    repeat: { type: 'string', default: '3' },
    pg: { type: 'boolean', default: false },
    // Hosts at once for the spawning runs: all N simulated agents share this one process, and 1,000
    // spawns at once stall its event loop until links drop (a real fleet spawns on N machines).
    'spawn-concurrency': { type: 'string', default: '100' },
  },
});
const TARGET_SECONDS = 2;
const SPAWN_CONCURRENCY = Number(args['spawn-concurrency']);

/** The machine's floor: `n` spawns of `uname -a` from this process, `lanes` at once, output read. */
async function spawnFloor(n: number, lanes = 64): Promise<number> {
  const started = performance.now();
  await pool(Array.from({ length: n }), lanes, async () => {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('uname', ['-a'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('error', reject);
      child.once('close', (code) => (code === 0 && out ? resolve() : reject(new Error(`uname: ${code}`))));
    });
  });
  return (performance.now() - started) / 1000;
}
const N = Number(args.n);
const ANSIBLE_HOSTS = Number(args['ansible-hosts']);
const REPEAT = Number(args.repeat);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

interface RunView {
  id: string;
  status: string;
  hostCount: number;
  failedCount: number;
}

async function main() {
  console.log(`fan-out benchmark on ${machine()}; ${N} simulated agents; load average ${load()}`);
  if (openFileLimit() < N * 4 + 256) console.log(`note: open file limit ${openFileLimit()} is low for ${N}`);
  const dataDir = tempDir('keel-bench-fanout-');
  const pg = args.pg ? await createScratchDatabase('keel_bench_fanout') : null;
  console.log(`database: ${pg ? 'PostgreSQL (scratch)' : 'PGlite'}`);
  const ctl = await startController({ dataDir, databaseUrl: pg?.url });
  const links: AgentLink[] = [];
  try {
    const { token, pin } = await createJoinToken(ctl.api, N);
    const identities = Array.from({ length: N }, () => generateSigningIdentity());
    const hostIds: string[] = new Array<string>(N);
    const t0 = performance.now();
    await pool(identities, 16, async (identity, i) => {
      hostIds[i] = await enrollIdentity({ controllerUrl: ctl.url, identity, pin, token, name: `fan-${i}` });
    });
    console.log(`enrolled ${N} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const log = pino({ level: 'silent' });
    // The real handler, except for the no-spawn argv, which answers at once with a stored line.
    const real = jobRunChannelHandler(log);
    const unameLine = Buffer.from(spawnSync('uname', ['-a']).stdout);
    const handler: ChannelHandler<JobRunChannelParams> = {
      definition: real.definition,
      open(port, params) {
        if (params.argv[0] !== 'keel-bench:uname') return real.open(port, params);
        void port
          .write(encodeJobOutput('stdout', unameLine))
          .then(() => port.close({ reason: 'exited with 0', exitCode: 0 }));
        return {};
      },
    };
    for (const identity of identities) {
      const link = new AgentLink({
        controllerUrl: ctl.url,
        identity,
        pin,
        log,
        streams: new Map(),
        handlers: {},
      });
      new AgentChannelHub({ kinds: { 'job.run': handler as never }, log }).attach(link);
      links.push(link);
      void link.run();
    }
    await waitFor(
      async () => {
        const hosts = (await ctl.api.get<{ hosts: { online: boolean }[] }>('/hosts?limit=5000')).body.hosts;
        return hosts.filter((h) => h.online).length >= N;
      },
      600_000,
      `${N} agents online`,
    );
    await sleep(2_000);
    const runOnAll = async (argv: string[], concurrency: number): Promise<number> => {
      const started = performance.now();
      const res = await ctl.api.post<{ run: RunView }>('/jobs/runs', {
        command: { argv },
        target: { hostIds },
        concurrency,
        timeoutSeconds: 120,
      });
      if (res.status !== 201) throw new Error(`run: ${res.status} ${JSON.stringify(res.body)}`);
      const run = await waitFor(
        async () => {
          const r2 = await ctl.api.get<{ run: RunView }>(`/jobs/runs/${res.body.run.id}`);
          return r2.body.run.status !== 'running' ? r2.body.run : null;
        },
        600_000,
        'the run to end',
      );
      const seconds = (performance.now() - started) / 1000;
      if (run.status !== 'succeeded' || run.failedCount !== 0) {
        const detail = await ctl.api.get<{ hosts: { status: string; error: string | null }[] }>(
          `/jobs/runs/${run.id}`,
        );
        const why = new Map<string, number>();
        for (const h of detail.body.hosts)
          if (h.status !== 'succeeded')
            why.set(`${h.status}: ${h.error}`, (why.get(`${h.status}: ${h.error}`) ?? 0) + 1);
        throw new Error(
          `run ended ${run.status} with ${run.failedCount} failed: ${JSON.stringify([...why])}`,
        );
      }
      return seconds;
    };
    const keel: number[] = [];
    const noSpawn: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      keel.push(await runOnAll(['uname', '-a'], SPAWN_CONCURRENCY));
      console.log(
        `  keel run ${r + 1}: ${N} hosts (uname -a spawned, ${SPAWN_CONCURRENCY} at once) in ${keel.at(-1)!.toFixed(2)} s (load ${load()})`,
      );
      noSpawn.push(await runOnAll(['keel-bench:uname'], 1000));
      console.log(
        `  keel run ${r + 1}, simulated agents answering without a spawn (all ${N} at once): ${N} hosts in ${noSpawn.at(-1)!.toFixed(2)} s (load ${load()})`,
      );
    }

    // The machine's floor: the same N spawns with nothing else (links, channels, controller idle).
    const floor: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      floor.push(await spawnFloor(N, SPAWN_CONCURRENCY));
      console.log(
        `  floor run ${r + 1}: ${N} uname -a spawns (${SPAWN_CONCURRENCY} at once) in ${floor.at(-1)!.toFixed(2)} s (load ${load()})`,
      );
    }

    // Ansible on local hosts (no SSH: ansible_connection=local), same command, same run.
    const dir = tempDir('keel-bench-ansible-');
    const inventory = join(dir, 'inventory.ini');
    writeFileSync(
      inventory,
      `[all]\n${Array.from({ length: ANSIBLE_HOSTS }, (_, i) => `local${i} ansible_connection=local ansible_python_interpreter=/usr/bin/python3`).join('\n')}\n`,
    );
    const ansible: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      const started = performance.now();
      const out = spawnSync(
        'ansible',
        ['all', '-i', inventory, '-m', 'command', '-a', 'uname -a', '-f', String(ANSIBLE_HOSTS), '-o'],
        {
          env: { ...process.env, ANSIBLE_HOST_KEY_CHECKING: 'False', ANSIBLE_LOCAL_TEMP: dir },
          stdio: 'pipe',
        },
      );
      const seconds = (performance.now() - started) / 1000;
      if (out.status !== 0)
        throw new Error(`ansible exited ${out.status}: ${out.stderr.toString().slice(0, 500)}`);
      ansible.push(seconds);
      console.log(
        `  ansible run ${r + 1}: ${ANSIBLE_HOSTS} hosts in ${seconds.toFixed(2)} s (load ${load()})`,
      );
    }
    removeDir(dir);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const k = median(keel);
    const a = median(ansible);
    const f = median(floor);
    const ns = median(noSpawn);
    console.log(
      `\nmedian: keel ${N} simulated agents ${k.toFixed(2)} s (${((k / N) * 1000).toFixed(1)} ms/host); ansible ${ANSIBLE_HOSTS} local hosts ${a.toFixed(2)} s (${((a / ANSIBLE_HOSTS) * 1000).toFixed(1)} ms/host); per-host time ratio ansible/keel ${(a / ANSIBLE_HOSTS / (k / N)).toFixed(1)}x; load average after ${load()}`,
    );
    console.log(
      `keel's own path (no spawns; controller, links, channels, database): ${N} hosts ${ns.toFixed(2)} s (${((ns / N) * 1000).toFixed(1)} ms/host); ` +
        `target < ${TARGET_SECONDS} s there: ${ns < TARGET_SECONDS ? 'met' : 'missed'}`,
    );
    console.log(
      `target ${N === 1000 ? '' : `(set for 1,000; this run: ${N}) `}< ${TARGET_SECONDS} s with the spawns: ${k < TARGET_SECONDS ? 'met' : 'missed'}; ` +
        `machine floor (${N} spawns alone) ${f.toFixed(2)} s, Keel's share ${(k - f).toFixed(2)} s above it (${((100 * (k - f)) / k).toFixed(0)} % of Keel's time)`,
    );
    console.log(
      JSON.stringify({ n: N, keel, noSpawn, floor, ansibleHosts: ANSIBLE_HOSTS, ansible, pg: !!pg }),
    );
  } finally {
    await Promise.all(links.map((l) => l.stop().catch(() => {})));
    await ctl.stop();
    removeDir(dataDir);
    await pg?.drop();
  }
}

await main();
process.exit(0);
