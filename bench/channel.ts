// Benchmark: the live-channel primitive against ssh on the same machine, in the same run.
//  1. Round trip of one byte, 2,000 sends one after another: a WebSocket client -> controller ->
//     agent `echo` channel -> back, against `ssh -tt` to an sshd on loopback running `cat` on a raw
//     pty (key auth; our own sshd on a loopback port with a throwaway host key, not the system one).
//  2. One-way throughput of 100 MB through one channel (client -> agent `sink`) against
//     `ssh ... 'cat > /dev/null'` fed the same 100 MB.
//  3. 1 GiB agent -> client (`source`) to a slow reader (reads half the time), with the peak RSS
//     of agent and controller.
//  4. The agent's idle RSS and CPU, running the dist bundle (`scripts/bundle.mjs agent`).
//  5. The floor (bench/channel-floor.ts): 1 and 2 over the same three Node hops on bare `ws`,
//     plain and with ChaCha20-Poly1305 on the middle hop, and Keel's share of it.
//
// Run: npm run bench -- channel [--sends 2000] [--mb 100] [--gib 1] [--idle-seconds 20]
//      [--driver pglite|postgres] [--only idle]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { channelTicket, connectChannel, type ChannelClient } from '../test/helpers/channels.ts';
import { runChannelFloor } from './channel-floor.ts';
import { repoRoot } from '../test/helpers/fleet.ts';
import {
  createJoinToken,
  createScratchDatabase,
  freePort,
  machine,
  mib,
  percentile,
  procCpuMs,
  procMemory,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
  waitFor,
} from './lib/harness.ts';
import { agentUnitEnv } from './lib/bundled-agent.ts';

const { values: args } = parseArgs({
  options: {
    sends: { type: 'string', default: '2000' },
    mb: { type: 'string', default: '100' },
    gib: { type: 'string', default: '1' },
    'idle-seconds': { type: 'string', default: '20' },
    // `idle`: only the idle agent (for memory work); default: everything.
    only: { type: 'string' },
    // `postgres`: the controller on a scratch database of the local PostgreSQL instead of PGlite.
    driver: { type: 'string', default: 'pglite' },
  },
});
const SENDS = Number(args.sends);
const BYTES = Number(args.mb) * 1_000_000;
const SOURCE_BYTES = Math.round(Number(args.gib) * 1024 ** 3);
const IDLE_SECONDS = Number(args['idle-seconds']);

const scratch: string[] = [];
const fmt = (ms: number) => ms.toFixed(3);

// ---- the agent: the dist bundle --------------------------------------------------------------

/** Builds the agent bundle; KEEL_BENCH_AGENT_BUNDLE=file runs that one instead (for A/B runs). */
function buildAgent(): string {
  if (process.env.KEEL_BENCH_AGENT_BUNDLE) return process.env.KEEL_BENCH_AGENT_BUNDLE;
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/bundle.mjs'), 'agent'], { stdio: 'pipe' });
  if (r.status !== 0) throw new Error(`agent bundle failed: ${r.stderr.toString()}`);
  return join(repoRoot, 'agent/dist/keel-agent.mjs');
}

/**
 * The agent's Node options: those its systemd unit sets (NODE_OPTIONS in systemd/keel-agent.service),
 * so the agent runs as on a host; KEEL_BENCH_AGENT_NODE_ARGS replaces them (e.g. `` for V8's
 * defaults, or `--cpu-prof --cpu-prof-dir=DIR`).
 */
const unitNodeOptions =
  /^Environment=NODE_OPTIONS=(.*)$/m.exec(
    readFileSync(join(repoRoot, 'systemd/keel-agent.service'), 'utf8'),
  )?.[1] ?? '';
const agentNodeArgs = (process.env.KEEL_BENCH_AGENT_NODE_ARGS ?? unitNodeOptions)
  .split(/\s+/)
  .filter(Boolean);

function runBundle(bundle: string, argv: string[]): ChildProcess {
  return track(
    spawn(process.execPath, [...agentNodeArgs, bundle, ...argv], {
      env: { ...process.env, ...agentUnitEnv(), KEEL_AGENT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

// ---- ssh peer --------------------------------------------------------------------------------

interface Sshd {
  port: number;
  args: string[];
  stop(): void;
}

/** Our own sshd on a loopback port: throwaway host key, a client key authorized in a temp dir. */
async function startSshd(): Promise<Sshd> {
  const dir = tempDir('keel-bench-sshd-');
  scratch.push(dir);
  const keygen = (file: string) => {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, file)]);
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr.toString()}`);
  };
  keygen('host_key');
  keygen('client_key');
  const port = await freePort();
  mkdirSync('/run/sshd', { recursive: true }); // privilege separation dir sshd insists on
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'client_key.pub')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      'UsePAM no',
      'PrintMotd no',
      'LogLevel ERROR',
    ].join('\n') + '\n',
  );
  const sshd = track(
    spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: 'pipe' }),
  );
  let err = '';
  sshd.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const user = process.env.USER ?? 'root';
  const base = [
    '-i',
    join(dir, 'client_key'),
    '-p',
    String(port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'BatchMode=yes',
    `${user}@127.0.0.1`,
  ];
  await waitFor(
    () => {
      if (sshd.exitCode !== null) throw new Error(`sshd exited: ${err}`);
      return spawnSync('ssh', [...base, 'true']).status === 0;
    },
    15_000,
    'sshd accepting',
  );
  return { port, args: base, stop: () => sshd.kill('SIGTERM') };
}

/**
 * 1-byte round trips through `ssh -tt` to a raw-mode pty running cat. Each send is a different
 * letter and waits for that letter to come back, so a stray echo cannot end a wait early.
 */
async function sshRoundTrips(sshd: Sshd, sends: number): Promise<number[]> {
  const ssh = track(
    spawn('ssh', ['-tt', ...sshd.args, 'stty raw -echo; echo READY; exec cat'], { stdio: 'pipe' }),
  );
  let seen = '';
  let waitingFor: { byte: number; resolve: () => void } | null = null;
  ssh.stdout!.on('data', (d: Buffer) => {
    if (seen.length < 4096) seen += d.toString('latin1');
    if (waitingFor && d.includes(waitingFor.byte)) {
      const w = waitingFor;
      waitingFor = null;
      w.resolve();
    }
  });
  await waitFor(() => seen.includes('READY'), 15_000, 'ssh cat ready');
  await sleep(200);
  const times: number[] = [];
  for (let i = 0; i < sends + 50; i++) {
    const byte = 0x61 + (i % 26);
    const started = performance.now();
    await new Promise<void>((resolve) => {
      waitingFor = { byte, resolve };
      ssh.stdin!.write(Buffer.of(byte));
    });
    if (i >= 50) times.push(performance.now() - started); // the first 50 warm up
  }
  ssh.kill('SIGTERM');
  return times;
}

/** Seconds to push `bytes` through `ssh 'cat > /dev/null'`. */
async function sshThroughput(sshd: Sshd, bytes: number): Promise<number> {
  const ssh = track(spawn('ssh', [...sshd.args, 'cat > /dev/null'], { stdio: ['pipe', 'ignore', 'pipe'] }));
  const block = Buffer.alloc(64 * 1024);
  const started = performance.now();
  const exited = new Promise<number | null>((resolve) => ssh.once('exit', (code) => resolve(code)));
  for (let sent = 0; sent < bytes; sent += block.length) {
    const n = Math.min(block.length, bytes - sent);
    if (!ssh.stdin!.write(n === block.length ? block : block.subarray(0, n))) {
      await new Promise((r) => ssh.stdin!.once('drain', r));
    }
  }
  ssh.stdin!.end();
  const code = await exited;
  if (code !== 0) throw new Error(`ssh cat exited ${code}`);
  return (performance.now() - started) / 1000;
}

// ---- Keel channel ----------------------------------------------------------------------------

async function channelRoundTrips(client: ChannelClient, sends: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < sends + 50; i++) {
    const one = Buffer.of(0x61 + (i % 26));
    const started = performance.now();
    await echo(client, one);
    if (i >= 50) times.push(performance.now() - started); // the first 50 warm up
  }
  return times;
}

function echo(client: ChannelClient, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    client.onData = (chunk) => {
      if (chunk.includes(bytes[0]!)) resolve();
    };
    client.ws.send(bytes);
  });
}

/** Seconds to push `bytes` into a `sink` channel, until the agent reports it has them all. */
async function channelThroughput(client: ChannelClient, bytes: number): Promise<number> {
  const block = Buffer.alloc(64 * 1024);
  const started = performance.now();
  for (let sent = 0; sent < bytes; sent += block.length) {
    const n = Math.min(block.length, bytes - sent);
    client.ws.send(n === block.length ? block : block.subarray(0, n));
    // The client's own buffer: the controller stops reading when the agent has not granted credit.
    while (client.ws.bufferedAmount > 1024 * 1024) await sleep(1);
  }
  const { end } = await client.closed;
  if (end?.type !== 'close' || end.exitCode !== 0)
    throw new Error(`sink ended badly: ${JSON.stringify(end)}`);
  return (performance.now() - started) / 1000;
}

// ---- run -------------------------------------------------------------------------------------

async function main() {
  console.log(
    `channel benchmark on ${machine()}, controller on ${args.driver}; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const bundle = buildAgent();
  const dataDir = tempDir('keel-bench-ctl-');
  const agentDir = tempDir('keel-bench-agent-');
  scratch.push(dataDir, agentDir);
  const db = args.driver === 'postgres' ? await createScratchDatabase('keel_bench_channel') : null;
  const ctl = await startController({ dataDir, databaseUrl: db?.url });
  let agent: ChildProcess | null = null;
  let sshd: Sshd | null = null;
  try {
    const { token, pin } = await createJoinToken(ctl.api, 1);
    // The join token goes in the environment (never on the command line).
    const enroll = track(
      spawn(
        process.execPath,
        [bundle, 'enroll', '--controller', ctl.url, '--pin', pin, '--state-dir', agentDir],
        {
          env: { ...process.env, KEEL_AGENT_LOG_LEVEL: 'warn', KEEL_JOIN_TOKEN: token },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      ),
    );
    let enrollErr = '';
    enroll.stderr!.on('data', (d: Buffer) => (enrollErr += d.toString()));
    const code = await new Promise<number | null>((resolve) => enroll.once('exit', resolve));
    if (code !== 0) throw new Error(`enroll exited ${code}: ${enrollErr}`);
    agent = runBundle(bundle, ['run', '--state-dir', agentDir]);
    const agentPid = agent.pid!;
    const hostId = await waitFor(
      async () =>
        (await ctl.api.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts.find(
          (h) => h.online,
        )?.id,
      30_000,
      'agent online',
    );

    // Idle agent: after start-up settled, RSS and CPU over a quiet period.
    await sleep(3_000);
    const cpu0 = procCpuMs(agentPid);
    await sleep(IDLE_SECONDS * 1000);
    const idleCpuPct = ((procCpuMs(agentPid) - cpu0) / (IDLE_SECONDS * 1000)) * 100;
    const idle = procMemory(agentPid);
    if (args.only === 'idle') {
      console.log(
        `idle agent (dist bundle, node ${agentNodeArgs.join(' ') || 'defaults'}, ${IDLE_SECONDS} s): RSS ${mib(idle.rss).toFixed(1)} MiB (anon ${mib(idle.anon).toFixed(1)}), CPU ${idleCpuPct.toFixed(2)} % of one core`,
      );
      console.log(JSON.stringify({ idle: { rss: idle.rss, anon: idle.anon, cpuPct: idleCpuPct } }));
      return;
    }

    // Round trips.
    const { url } = await channelTicket(ctl.api, hostId, 'echo');
    const client = await connectChannel(ctl.url, url);
    await client.opened;
    const keel = (await channelRoundTrips(client, SENDS)).sort((a, b) => a - b);
    client.ws.close();
    sshd = await startSshd();
    const ssh = (await sshRoundTrips(sshd, SENDS)).sort((a, b) => a - b);

    // Throughput, client -> agent.
    const sink = await connectChannel(
      ctl.url,
      (await channelTicket(ctl.api, hostId, 'echo', { mode: 'sink', bytes: BYTES })).url,
    );
    await sink.opened;
    const keelSeconds = await channelThroughput(sink, BYTES);
    const sshSeconds = await sshThroughput(sshd, BYTES);

    // The floor: the same hops on bare ws, plain and sealed.
    const floor = await runChannelFloor({ sends: SENDS, bytes: BYTES });

    // 1 GiB agent -> client at full speed, with peak memory.
    const source = await connectChannel(
      ctl.url,
      (await channelTicket(ctl.api, hostId, 'echo', { mode: 'source', bytes: SOURCE_BYTES })).url,
    );
    let received = 0;
    source.onData = (chunk) => (received += chunk.length);
    const peak = { agent: procMemory(agentPid).rss, controller: procMemory(ctl.pid).rss };
    const base = { ...peak };
    const sampler = setInterval(() => {
      peak.agent = Math.max(peak.agent, procMemory(agentPid).rss);
      peak.controller = Math.max(peak.controller, procMemory(ctl.pid).rss);
    }, 100);
    const sourceStarted = performance.now();
    // The reader is slow: it stops reading from its socket for 50 ms out of every 100 ms, so the
    // agent produces faster than the client consumes and backpressure has to hold it.
    let done = false;
    void source.closed.then(() => (done = true));
    while (!done) {
      source.ws.pause();
      await sleep(50);
      source.ws.resume();
      await sleep(50);
    }
    await source.closed;
    const sourceSeconds = (performance.now() - sourceStarted) / 1000;
    clearInterval(sampler);
    if (received !== SOURCE_BYTES) throw new Error(`source delivered ${received} of ${SOURCE_BYTES}`);

    const mbps = (bytes: number, s: number) => bytes / 1_000_000 / s;
    const keelMbps = mbps(BYTES, keelSeconds);
    const rows = [
      ['', 'Keel channel', 'ssh (same run)', 'floor, plain', 'floor, sealed'],
      [
        '1-byte round trip p50 (ms)',
        fmt(percentile(keel, 50)),
        fmt(percentile(ssh, 50)),
        fmt(floor.plain.p50),
        fmt(floor.sealed.p50),
      ],
      [
        '1-byte round trip p99 (ms)',
        fmt(percentile(keel, 99)),
        fmt(percentile(ssh, 99)),
        fmt(floor.plain.p99),
        fmt(floor.sealed.p99),
      ],
      [
        `${BYTES / 1_000_000} MB one way (MB/s)`,
        keelMbps.toFixed(1),
        mbps(BYTES, sshSeconds).toFixed(1),
        floor.plain.mbps.toFixed(1),
        floor.sealed.mbps.toFixed(1),
      ],
    ];
    console.log(
      `\n${rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(28) : c.padStart(16))).join('')).join('\n')}`,
    );
    // Keel's share: what it adds above the sealed floor (the same hops and cipher, nothing else).
    const added = percentile(keel, 50) - floor.sealed.p50;
    console.log(
      `\nKeel's share of the round trip p50: ${fmt(added)} ms above the sealed floor ` +
        `(${((100 * added) / percentile(keel, 50)).toFixed(0)} % of Keel's p50); ` +
        `throughput ${((100 * keelMbps) / floor.sealed.mbps).toFixed(0)} % of the sealed floor, ` +
        `${((100 * keelMbps) / floor.plain.mbps).toFixed(0)} % of the plain floor`,
    );
    console.log(
      `\n${(SOURCE_BYTES / 1024 ** 3).toFixed(1)} GiB agent -> slow client: ${mbps(SOURCE_BYTES, sourceSeconds).toFixed(1)} MB/s; RSS agent ${mib(base.agent).toFixed(0)} -> peak ${mib(peak.agent).toFixed(0)} MiB, controller ${mib(base.controller).toFixed(0)} -> peak ${mib(peak.controller).toFixed(0)} MiB`,
    );
    console.log(
      `idle agent (dist bundle, node ${agentNodeArgs.join(' ') || 'defaults'}, ${IDLE_SECONDS} s): RSS ${mib(idle.rss).toFixed(1)} MiB (anon ${mib(idle.anon).toFixed(1)}), CPU ${idleCpuPct.toFixed(2)} % of one core`,
    );
    console.log(
      `load average after: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    console.log(
      JSON.stringify({
        keel: { p50: percentile(keel, 50), p99: percentile(keel, 99), mbps: mbps(BYTES, keelSeconds) },
        ssh: { p50: percentile(ssh, 50), p99: percentile(ssh, 99), mbps: mbps(BYTES, sshSeconds) },
        floor,
        source: { mbps: mbps(SOURCE_BYTES, sourceSeconds), peakRss: peak, baseRss: base },
        idle: { rss: idle.rss, anon: idle.anon, cpuPct: idleCpuPct },
      }),
    );
  } finally {
    sshd?.stop();
    agent?.kill('SIGTERM');
    await ctl.stop();
    await db?.drop();
    for (const d of scratch) removeDir(d);
  }
}

await main();
process.exit(0);
