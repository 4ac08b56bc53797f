// Benchmark: `npm test`'s wall time against issue 7's target (under 4 minutes on a 2-core machine),
// with what bounds it on this machine. The run is the README's command (`node scripts/test.mjs`, the
// whole suite, the PostgreSQL half only when KEEL_TEST_DATABASE_URL is set); its summary gives the
// CPU seconds in all and how busy the cores were. The floor is that CPU over the cores: no schedule
// ends the same work sooner on this machine, so a run near its floor is bound by CPU, and only less
// work (or a faster machine) shortens it.
//
// Peer: the same suite on the fastest VM seen (2 Dec evening, Intel Xeon: 4:17.3, 443.8 CPU-s in
// all, cores 95 % busy; docs/testing.md "2–3 Dec"), beside this machine's probes of what the suite is
// made of (a busy loop, fresh memory pages, process starts), taken first on the quiet machine so two
// VMs' runs can be told apart: the VMs our sessions get differ up to ~2.3x on this suite.
//
// Run: npm run bench -- test-suite [--runs 1] [--probes-only]
// A run leaves the runner's own record (node_modules/.cache/keel-test/) as `npm test` does.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, machineBusyMs } from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    'probes-only': { type: 'boolean', default: false },
  },
});
const RUNS = Number(args.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error('--runs takes a whole number ≥ 1');
const TARGET_S = 240;
const cores = cpus().length;
/** The peer: the best whole run recorded, and its machine's probes (docs/testing.md, "2–3 Dec"). */
const PEER = {
  wall: 257.3,
  cpu: 443.8,
  busy: 95,
  loopS: 4.97,
  pageUs: 1.8,
  machine: 'Intel Xeon, 2 vCPUs, 2 Dec',
};

/** Runs a node snippet in a fresh process and returns what it prints as a number. */
function nodeFigure(code: string): number {
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

function probes() {
  // Seconds for 1e9 additions (run 2e8 and scaled: the same loop docs/testing.md quotes).
  const loopS =
    nodeFigure(
      'let s=0;const t=performance.now();for(let i=0;i<2e8;i++)s+=i;console.log((performance.now()-t)/1000+s*0)',
    ) * 5;
  // µs per first touch of a 4 KiB page of fresh anonymous memory (256 MiB, outside V8's heap).
  const pageUs = nodeFigure(
    'const b=Buffer.allocUnsafeSlow(256*1024*1024);const t=performance.now();' +
      'for(let i=0;i<b.length;i+=4096)b[i]=1;console.log((performance.now()-t)*1000/(b.length/4096))',
  );
  // ms of wall per start and exit of a bare node process (ten in a row).
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) spawnSync(process.execPath, ['-e', '0']);
  const nodeStartMs = (performance.now() - t0) / 10;
  // ms per fork + exec + exit of /bin/true (a hundred, as shells and Ansible spawn them).
  const t1 = performance.now();
  for (let i = 0; i < 100; i++) spawnSync('/bin/true');
  const spawnMs = (performance.now() - t1) / 100;
  return { loopS, pageUs, nodeStartMs, spawnMs };
}

interface RunFigures {
  wall: number;
  phase?: number;
  cpu?: number;
  busy?: number;
  tests?: string;
  failed: boolean;
}

async function runSuite(i: number): Promise<RunFigures> {
  const log = join(tmpdir(), `keel-bench-test-suite-${process.pid}-${i}.log`);
  const out = createWriteStream(log);
  const busy0 = machineBusyMs();
  const t0 = performance.now();
  const child = spawn(process.execPath, ['scripts/test.mjs'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const keep = (d: Buffer) => {
    out.write(d);
    text += d.toString('utf8');
    if (text.length > 4_000_000) text = text.slice(-1_000_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  out.end();
  const wall = (performance.now() - t0) / 1000;
  const busyAll = (machineBusyMs() - busy0) / 1000 / cores / wall;
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const figures: RunFigures = {
    wall,
    phase: num(/^\d+ files, \d+ processes .*: ([\d.]+) s$/m),
    cpu: num(/^CPU: .* ([\d.]+) s in all/m),
    busy: num(/^cores: (\d+) % busy/m),
    tests: /^tests \d+.*$/m.exec(text)?.[0],
    failed: code !== 0,
  };
  console.log(
    `run ${i + 1}: ${clock(wall)} wall (target ${clock(TARGET_S)}), test phase ${figures.phase?.toFixed(1) ?? '?'} s, ` +
      `${figures.cpu?.toFixed(1) ?? '?'} CPU-s in all, cores ${figures.busy ?? '?'} % busy in the test phase ` +
      `(${(100 * busyAll).toFixed(0)} % over the whole run)`,
  );
  console.log(
    `  ${figures.tests ?? 'no summary'}${figures.failed ? ` — FAILED (exit ${code}), log: ${log}` : ''}`,
  );
  if (figures.cpu !== undefined) {
    const floor = figures.cpu / cores;
    console.log(
      `  floor on this machine: ${clock(floor)} (the CPU over ${cores} cores); the run took ` +
        `${((100 * floor) / wall).toFixed(0)} % of its wall time at the floor's pace; under ` +
        `${clock(TARGET_S)} here needs ≤ ${((TARGET_S * cores * (figures.busy ?? 100)) / 100).toFixed(0)} CPU-s ` +
        `at this busy share`,
    );
  }
  return figures;
}

function clock(s: number): string {
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, '0')}`;
}

console.log(
  `machine: ${machine()}, load average ${loadavg()[0]!.toFixed(1)} (the probes mean something on a quiet machine only)`,
);
const p = probes();
console.log(
  `probes: 1e9-addition loop ${p.loopS.toFixed(2)} s, fresh memory ${p.pageUs.toFixed(2)} µs per 4 KiB page, ` +
    `node start+exit ${p.nodeStartMs.toFixed(0)} ms, /bin/true spawn ${p.spawnMs.toFixed(2)} ms`,
);
console.log(
  `peer (${PEER.machine}): ${clock(PEER.wall)} wall, ${PEER.cpu} CPU-s in all, cores ${PEER.busy} % busy; ` +
    `loop ${PEER.loopS} s, fresh memory ${PEER.pageUs} µs per page`,
);
if (!args['probes-only']) {
  const runs: RunFigures[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await runSuite(i));
  const ok = runs.filter((r) => !r.failed);
  if (ok.length) {
    const best = Math.min(...ok.map((r) => r.wall));
    console.log(
      `best green run ${clock(best)}: ${best < TARGET_S ? 'under' : 'over'} the ${clock(TARGET_S)} target; ` +
        `the peer's run ${clock(PEER.wall)}`,
    );
  }
  if (runs.some((r) => r.failed)) process.exitCode = 1;
}
