// Benchmark tool: where a channel round trip's time goes, hop by hop (issue 6). Every process of
// the path — this client, the controller, the agent (dist bundle) — runs with
// bench/lib/hop-trace-preload.mjs, which stamps each socket read and write with the monotonic
// clock shared by all processes; for each 1-byte round trip the stamps in its window are lined up
// and the median time of each hop is printed: client write -> controller read -> controller write
// -> agent read -> agent write -> ... -> client read. With --floor the same for the bare-ws floor
// (bench/channel-floor.ts, sealed). Also prints CPU and read/write syscalls per round trip of each
// process. KIND=terminal traces a terminal running `cat` on a raw tty instead of the echo channel.
//
// Run: npx tsx bench/channel-hops.ts [--sends 1000] [--floor] [--kind echo|terminal]
//      (KEEL_BENCH_AGENT_NODE_ARGS as for `channel`)
import './lib/hop-trace-preload.mjs';
import { channelTicket, connectChannel } from '../test/helpers/channels.ts';
import { encodeTerminalInput } from '@keel/shared';
import { agentNodeArgs, buildAgentBundle, startBundledAgent } from './lib/bundled-agent.ts';
import { procSyscalls, procCpuMs, removeDir, sleep, startController, tempDir } from './lib/harness.ts';
import { spawn } from 'node:child_process';
import WebSocket from 'ws';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    sends: { type: 'string', default: '1000' },
    floor: { type: 'boolean', default: false },
    kind: { type: 'string', default: 'echo' },
  },
});
const SENDS = Number(args.sends);
const kind = args.kind!;
const traceDir = tempDir('keel-hops-');
process.env.KEEL_TRACE_DIR = traceDir;
const P = `--import ${fileURLToPath(new URL('./lib/hop-trace-preload.mjs', import.meta.url))}`;
process.env.KEEL_BENCH_CONTROLLER_NODE_ARGS = P;
process.env.KEEL_TRACE_NAME = 'controller';
buildAgentBundle();
const dataDir = tempDir('keel-trace-ctl-');
const ctl = await startController({ dataDir });
process.env.KEEL_BENCH_AGENT_NODE_ARGS = `${agentNodeArgs().join(' ')} ${P}`;
const agent = await startBundledAgent(ctl, { KEEL_TRACE_NAME: 'agent' });
const params = kind === 'terminal' ? { cols: 120, rows: 40 } : undefined;
const { url } = await channelTicket(ctl.api, agent.hostId, kind, params);
const client = await connectChannel(ctl.url, url);
await client.opened;
const send = (b: Buffer) => client.ws.send(kind === 'terminal' ? encodeTerminalInput(b) : b);
if (kind === 'terminal') {
  let tail = '';
  await new Promise<void>((resolve) => {
    client.onData = (d) => {
      tail += d.toString('latin1');
      if (tail.includes('READY42')) resolve();
    };
    send(Buffer.from('stty raw -echo; echo READY$((40+2)); exec cat\r'));
  });
  await sleep(300);
}
const marks: [number, number][] = [];
const cpu0 = [procCpuMs(ctl.pid), procCpuMs(agent.pid)];
const sc0 = [procSyscalls(ctl.pid), procSyscalls(agent.pid)];
const now = () => Number(process.hrtime.bigint()) / 1e6;
const dumpTrace = () => (globalThis as unknown as { __keelTraceDump: () => void }).__keelTraceDump();
for (let i = 0; i < SENDS + 50; i++) {
  const b = 0x61 + (i % 26);
  const t0 = now();
  await new Promise<void>((resolve) => {
    client.onData = (c) => {
      if (c.includes(b)) resolve();
    };
    send(Buffer.of(b));
  });
  if (i >= 50) marks.push([t0, now()]);
}
const cpu1 = [procCpuMs(ctl.pid), procCpuMs(agent.pid)];
const sc1 = [procSyscalls(ctl.pid), procSyscalls(agent.pid)];
console.log(
  `syscalls per trip: controller r ${((sc1[0]!.reads - sc0[0]!.reads) / marks.length).toFixed(2)} w ${((sc1[0]!.writes - sc0[0]!.writes) / marks.length).toFixed(2)}, agent r ${((sc1[1]!.reads - sc0[1]!.reads) / marks.length).toFixed(2)} w ${((sc1[1]!.writes - sc0[1]!.writes) / marks.length).toFixed(2)}`,
);
console.log(
  `CPU per trip: controller ${(((cpu1[0]! - cpu0[0]!) / marks.length) * 1000).toFixed(0)} us, agent ${(((cpu1[1]! - cpu0[1]!) / marks.length) * 1000).toFixed(0)} us`,
);
dumpTrace();
process.kill(ctl.pid, 'SIGUSR2');
process.kill(agent.pid, 'SIGUSR2');
await sleep(1500);
client.ws.close();
await agent.stop();
await ctl.stop();
removeDir(dataDir);
analyse(String(process.pid), 'controller', 'agent', marks);
const rt = marks.map(([a, b]) => b - a).sort((a, b) => a - b);
console.log(
  'p50',
  rt[Math.floor(rt.length / 2)]!.toFixed(3),
  'p99',
  rt[Math.floor(rt.length * 0.99)]!.toFixed(3),
);

// The floor, traced the same way.
if (args.floor) {
  const spawnRole = (args: string[], name: string) =>
    spawn(process.execPath, ['--import', 'tsx', 'bench/channel-floor.ts', ...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, NODE_OPTIONS: P, KEEL_TRACE_NAME: name },
    });
  const portOf = (c: ReturnType<typeof spawnRole>) =>
    new Promise<number>((r) => c.once('message', (m) => r((m as { port: number }).port)));
  const key = ['--key', 'ab'.repeat(64)];
  const echo = spawnRole(['--role', 'echo', ...key], 'fecho');
  const relay = spawnRole(['--role', 'relay', '--port', String(await portOf(echo)), ...key], 'frelay');
  const ws = new WebSocket(`ws://127.0.0.1:${await portOf(relay)}/echo`, { perMessageDeflate: false });
  await new Promise((r) => ws.once('open', r));
  const fm: [number, number][] = [];
  const c0 = [procCpuMs(relay.pid!), procCpuMs(echo.pid!)];
  const s0 = [procSyscalls(relay.pid!), procSyscalls(echo.pid!)];
  for (let i = 0; i < SENDS + 50; i++) {
    const b = 0x61 + (i % 26);
    const t0 = now();
    await new Promise<void>((resolve) => {
      const on = (d: Buffer) => {
        if (d.includes(b)) {
          ws.off('message', on);
          resolve();
        }
      };
      ws.on('message', on);
      ws.send(Buffer.of(b));
    });
    if (i >= 50) fm.push([t0, now()]);
  }
  const c1 = [procCpuMs(relay.pid!), procCpuMs(echo.pid!)];
  const s1 = [procSyscalls(relay.pid!), procSyscalls(echo.pid!)];
  console.log(
    `floor syscalls per trip: relay r ${((s1[0]!.reads - s0[0]!.reads) / fm.length).toFixed(2)} w ${((s1[0]!.writes - s0[0]!.writes) / fm.length).toFixed(2)}, echo r ${((s1[1]!.reads - s0[1]!.reads) / fm.length).toFixed(2)} w ${((s1[1]!.writes - s0[1]!.writes) / fm.length).toFixed(2)}`,
  );
  console.log(
    `\nFLOOR CPU per trip: relay ${(((c1[0]! - c0[0]!) / fm.length) * 1000).toFixed(0)} us, echo ${(((c1[1]! - c0[1]!) / fm.length) * 1000).toFixed(0)} us`,
  );
  dumpTrace();
  relay.kill('SIGUSR2');
  echo.kill('SIGUSR2');
  await sleep(1000);
  relay.kill('SIGKILL');
  echo.kill('SIGKILL');
  analyse(String(process.pid), 'frelay', 'fecho', fm);
  const frt = fm.map(([a, b]) => b - a).sort((a, b) => a - b);
  console.log(
    'floor p50',
    frt[Math.floor(frt.length / 2)]!.toFixed(3),
    'p99',
    frt[Math.floor(frt.length * 0.99)]!.toFixed(3),
  );
}
removeDir(traceDir);
process.exit(0);
function analyse(clientName: string, mid: string, far: string, marks: [number, number][]) {
  const load = (n: string) =>
    JSON.parse(readFileSync(join(traceDir, `${n}.json`), 'utf8')) as [
      number,
      string,
      number,
      number,
      number,
    ][];
  const all = [
    ...load(clientName).map((e) => ['client', ...e] as const),
    ...load(mid).map((e) => ['ctl', ...e] as const),
    ...load(far).map((e) => ['agent', ...e] as const),
  ].sort((a, b) => a[1] - b[1]);
  // For each round trip, the sequence of events and their offsets.
  const seqs = new Map<string, number[][]>();
  for (const [t0, t1] of marks) {
    const evs = all.filter((e) => e[1] >= t0 && e[1] <= t1);
    const key = evs.map((e) => `${e[0]}:${e[2]}${e[5]}`).join(' ');
    const offs = evs.map((e) => e[1] - t0).concat([t1 - t0]);
    if (!seqs.has(key)) seqs.set(key, []);
    seqs.get(key)!.push(offs);
  }
  const top = [...seqs.entries()].sort((a, b) => b[1].length - a[1].length).slice(0, 3);
  for (const [key, rows] of top) {
    console.log(`\n${rows.length} trips: ${key}`);
    const n = rows[0]!.length;
    const med: number[] = [];
    for (let j = 0; j < n; j++) {
      const v = rows.map((r) => r[j]!).sort((a, b) => a - b);
      med.push(v[Math.floor(v.length / 2)]!);
    }
    const labels = key.split(' ').concat(['end']);
    let prev = 0;
    for (let j = 0; j < n; j++) {
      console.log(`  ${labels[j]!.padEnd(22)} at ${med[j]!.toFixed(3)}  (+${(med[j]! - prev).toFixed(3)})`);
      prev = med[j]!;
    }
  }
}
