// Benchmark: run on many hosts (issue 10). One `uname -a` on N simulated agents through the real
// path — POST /jobs/runs on a controller process -> a `job.run` channel per host over each agent's
// sealed link -> the agent's real job handler (agent/src/jobs), which spawns `uname -a` -> output and
// exit code back and stored — timed from the POST to the run's end; beside `ansible all -m command
// -a 'uname -a'` on 20 local hosts (ansible_connection=local, forks 20) in the same run, with the
// time per host of each. The simulated agents are the real AgentLink + AgentChannelHub + job
// handler, all in this one process (a real fleet spreads that work over N machines, so this is the
// harder case for Keel: N spawns and N links on the same 2 cores as the controller).
//
// Run: npm run bench -- fanout [--n 200] [--ansible-hosts 20] [--repeat 3]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { generateSigningIdentity } from '@keel/shared';
import { AgentChannelHub } from '../agent/src/channels/hub.ts';
import { jobRunChannelHandler } from '../agent/src/jobs/index.ts';
import { AgentLink } from '../agent/src/link/connection.ts';
import {
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
    n: { type: 'string', default: '200' },
    'ansible-hosts': { type: 'string', default: '20' },
    repeat: { type: 'string', default: '3' },
  },
});
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
  const ctl = await startController({ dataDir });
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
    for (const identity of identities) {
      const link = new AgentLink({
        controllerUrl: ctl.url,
        identity,
        pin,
        log,
        streams: new Map(),
        handlers: {},
      });
      new AgentChannelHub({ kinds: { 'job.run': jobRunChannelHandler(log) as never }, log }).attach(link);
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
    const keel: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      const started = performance.now();
      const res = await ctl.api.post<{ run: RunView }>('/jobs/runs', {
        command: { argv: ['uname', '-a'] },
        target: { hostIds },
        concurrency: 1000,
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
      if (run.status !== 'succeeded' || run.failedCount !== 0)
        throw new Error(`run ended ${run.status} with ${run.failedCount} failed`);
      keel.push(seconds);
      console.log(`  keel run ${r + 1}: ${N} hosts in ${seconds.toFixed(2)} s (load ${load()})`);
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
    console.log(
      `\nmedian: keel ${N} hosts ${k.toFixed(2)} s (${((k / N) * 1000).toFixed(1)} ms/host); ansible ${ANSIBLE_HOSTS} hosts ${a.toFixed(2)} s (${((a / ANSIBLE_HOSTS) * 1000).toFixed(1)} ms/host); per-host time ratio ansible/keel ${(a / ANSIBLE_HOSTS / (k / N)).toFixed(1)}x; load average after ${load()}`,
    );
    console.log(JSON.stringify({ n: N, keel, ansibleHosts: ANSIBLE_HOSTS, ansible }));
  } finally {
    await Promise.all(links.map((l) => l.stop().catch(() => {})));
    await ctl.stop();
    removeDir(dataDir);
  }
}

await main();
process.exit(0);
