// Benchmark: `curl … | sh` to host online. The console's one-line install command (from
// POST /join-tokens) runs the real install.sh served by a real controller process, which
// downloads the real agent bundle from it, verifies it, unpacks it, writes the launcher, config and
// unit, enrolls and starts the agent, and waits until the controller shows the host online — the
// script's exit is the end of the measurement. Each run installs into its own root (KEEL_ROOT)
// with the stand-in systemctl (systemd is not PID 1 here; it runs the unit's ExecStart), as the
// install tests do; the agent is stopped after each run so runs do not load each other.
//
// Peer: the target (< 30 s, most of it Node start and the download). Beszel's and Nezha's
// install scripts download from GitHub, which this machine cannot reach, so they are not timed.
//
// Run: npm run bench -- install [--n 5]
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildAgentBundle, sh, standInSystemctl, stopStandInServices } from '../test/install-helpers.ts';
import { machine, removeDir, startController, tempDir } from './lib/harness.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '5' } } });
const N = Number(values.n);

const work = tempDir('keel-bench-install-');
process.env.KEEL_AGENT_BUNDLE_DIR = buildAgentBundle(work);
const ctl = await startController({ dataDir: join(work, 'data') });
process.on('exit', () => {
  stopStandInServices(work);
  ctl.child.kill('SIGKILL');
});
console.log(`machine: ${machine()}`);

const times: number[] = [];
for (let i = 0; i < N; i++) {
  const created = await ctl.api.post<{ command: string }>('/join-tokens', { note: `bench-${i}` });
  if (created.status !== 201) throw new Error(JSON.stringify(created.body));
  const root = join(work, `root-${i}`);
  const env = { KEEL_ROOT: root, KEEL_SYSTEMCTL: standInSystemctl, KEEL_WAIT_SECONDS: '120' };
  const load = loadavg()[0]!.toFixed(1);
  const t0 = performance.now();
  const r = await sh(`${created.body.command} --name bench-${i}`, env, 180_000);
  const s = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`install ${i} failed:\n${r.out}`);
  times.push(s);
  const last = r.out.trim().split('\n').at(-1);
  console.log(`run ${i + 1}: ${s.toFixed(1)} s from curl to online (load ${load}) — install.sh: ${last}`);
  spawnSync(standInSystemctl, ['stop', 'keel-agent.service'], { env: { ...process.env, ...env } });
}
const sorted = [...times].sort((a, b) => a - b);
console.log(
  `\ncurl | sh to host online, ${N} runs: median ${sorted[Math.floor(N / 2)]!.toFixed(1)} s, ` +
    `min ${sorted[0]!.toFixed(1)} s, max ${sorted.at(-1)!.toFixed(1)} s (target < 30 s)`,
);
await ctl.stop();
removeDir(work);
