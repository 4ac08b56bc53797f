// Benchmark: the remote terminal against ssh on the same machine, in the same run (issue 10).
//  1. Keystroke echo: one byte typed, wait for its echo, 2,000 times (p50, p99): a WebSocket client ->
//     controller -> agent -> PTY running `cat` on a raw tty, against `ssh -tt` to our own sshd on a
//     loopback port (throwaway host key, key auth) running the same `cat` on a raw pty.
//  2. Throughput of `cat` of a 100 MB file through each terminal, until the end of the output.
// The agent is the release bundle (node-pty stays outside it and loads where it is installed, as
// here; else util-linux `script`): the run prints which PTY the shell got.
//  3. The ceiling of this machine for Keel's path, in the same run: the same three Node hops on bare
//     `ws` with the controller <-> agent hop sealed (bench/channel-floor.ts, echo in the last
//     process) plus a PTY alone (node-pty running the same `cat` in this process, no network):
//     Keel cannot beat their sum here, so what it adds above it is Keel's share.
// Fan-out on many hosts is bench/fanout.ts.
//
// Run: npm run bench -- terminal [--sends 2000] [--mb 100]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeTerminalInput } from '@keel/shared';
import { runChannelFloor } from './channel-floor.ts';
import { channelTicket, connectChannel, type ChannelClient } from '../test/helpers/channels.ts';
import { buildAgentBundle, startBundledAgent } from './lib/bundled-agent.ts';
import {
  freePort,
  machine,
  percentile,
  removeDir,
  sleep,
  startController,
  tempDir,
  track,
  waitFor,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: { sends: { type: 'string', default: '2000' }, mb: { type: 'string', default: '100' } },
});
const SENDS = Number(args.sends);
const BYTES = Number(args.mb) * 1_000_000;
const scratch: string[] = [];
const fmt = (ms: number) => ms.toFixed(3);

interface Sshd {
  args: string[];
  stop(): void;
}

/** Our own sshd on a loopback port (as bench/channel.ts): throwaway host key, key auth. */
async function startSshd(): Promise<Sshd> {
  const dir = tempDir('keel-bench-sshd-');
  scratch.push(dir);
  for (const file of ['host_key', 'client_key']) {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, file)]);
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr.toString()}`);
  }
  const port = await freePort();
  mkdirSync('/run/sshd', { recursive: true });
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
    `${process.env.USER ?? 'root'}@127.0.0.1`,
  ];
  await waitFor(
    () => {
      if (sshd.exitCode !== null) throw new Error(`sshd exited: ${err}`);
      return spawnSync('ssh', [...base, 'true']).status === 0;
    },
    15_000,
    'sshd accepting',
  );
  return { args: base, stop: () => sshd.kill('SIGTERM') };
}

/** Sends one byte at a time and waits for it to come back (distinct letters, 50 warm-up sends). */
async function roundTrips(write: (b: Buffer) => void, onData: (cb: (d: Buffer) => void) => void) {
  let waitingFor: { byte: number; resolve: () => void } | null = null;
  onData((d) => {
    if (waitingFor && d.includes(waitingFor.byte)) {
      const w = waitingFor;
      waitingFor = null;
      w.resolve();
    }
  });
  const times: number[] = [];
  for (let i = 0; i < SENDS + 50; i++) {
    const byte = 0x61 + (i % 26);
    const started = performance.now();
    await new Promise<void>((resolve) => {
      waitingFor = { byte, resolve };
      write(Buffer.of(byte));
    });
    if (i >= 50) times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

/** The PTY alone: node-pty running `cat` on a raw tty in this process (echo, then `cat` of the file). */
async function ptyAlone(file: string): Promise<{ times: number[]; catSeconds: number }> {
  const pty = await import('node-pty');
  const opts = {
    name: 'xterm-256color',
    cols: 120,
    rows: 40,
    cwd: '/',
    env: process.env as Record<string, string>,
  };
  const echo = pty.spawn('/bin/sh', ['-c', 'stty raw -echo; echo READY42; exec cat'], opts);
  let seen = '';
  let listener: ((d: Buffer) => void) | null = null;
  echo.onData((d) => {
    if (seen.length < 4096) seen += d;
    listener?.(Buffer.from(d, 'latin1'));
  });
  await waitFor(() => seen.includes('READY42'), 15_000, 'pty cat ready');
  await sleep(200);
  const times = await roundTrips(
    (b) => echo.write(b.toString('latin1')),
    (cb) => (listener = cb),
  );
  echo.kill();
  const started = performance.now();
  const cat = pty.spawn('/bin/sh', ['-c', `stty -echo; cat ${file}; echo END$((40+2))`], opts);
  let tail = '';
  cat.onData((d) => (tail = (tail + d).slice(-64)));
  await waitFor(() => tail.includes('END42'), 300_000, 'pty cat end');
  const catSeconds = (performance.now() - started) / 1000;
  cat.kill();
  return { times, catSeconds };
}

/** A terminal channel with its output collected into a rolling tail. */
async function openTerminal(ctl: Awaited<ReturnType<typeof startController>>, hostId: string) {
  const { url } = await channelTicket(ctl.api, hostId, 'terminal', { cols: 120, rows: 40 });
  const client: ChannelClient = await connectChannel(ctl.url, url);
  await client.opened;
  let tail = '';
  let listener: ((d: Buffer) => void) | null = null;
  client.onData = (d) => {
    tail = (tail + d.toString('latin1')).slice(-64);
    listener?.(d);
  };
  return {
    client,
    type: (s: string | Buffer) => client.ws.send(encodeTerminalInput(s)),
    until: (marker: string, ms = 300_000) => waitFor(() => tail.includes(marker), ms, marker),
    onData: (cb: (d: Buffer) => void) => (listener = cb),
    reset: () => (tail = ''),
  };
}

async function main() {
  console.log(
    `terminal benchmark on ${machine()}; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const dataDir = tempDir('keel-bench-ctl-');
  const files = tempDir('keel-bench-files-');
  scratch.push(dataDir, files);
  // 100 MB of printable lines (what `cat` of a log file sends).
  const file = join(files, 'big.txt');
  const line = `${'keel terminal benchmark line '.repeat(3).slice(0, 99)}\n`;
  writeFileSync(file, line.repeat(Math.ceil(BYTES / line.length)).slice(0, BYTES));
  buildAgentBundle(); // before the controller: a long build idles the API client's keep-alive socket
  const ctl = await startController({ dataDir });
  const agent = await startBundledAgent(ctl).catch((err: unknown) => {
    console.error(ctl.output().slice(-3000));
    throw err;
  });
  const sshd = await startSshd();
  try {
    // 1. Keystroke echo through Keel.
    const term = await openTerminal(ctl, agent.hostId);
    // Which PTY the shell got: with node-pty its parent is the agent (node), with the fallback `script`.
    let ptyKind = '';
    term.onData((d) => {
      const m = /PTY=\[(\w+)\]/.exec(d.toString('latin1'));
      if (m) ptyKind = m[1] === 'script' ? 'util-linux script' : `node-pty (parent: ${m[1]})`;
    });
    term.type('echo PTY=[$(cat /proc/$PPID/comm)]; stty raw -echo; echo READY$((40+2)); exec cat\r');
    await term.until('READY42', 30_000);
    await sleep(200);
    const keel = await roundTrips((b) => term.type(b), term.onData);
    term.client.ws.close();
    await term.client.closed;

    // ... and through ssh -tt.
    const ssh = track(
      spawn('ssh', ['-tt', ...sshd.args, 'stty raw -echo; echo READY42; exec cat'], { stdio: 'pipe' }),
    );
    let seen = '';
    let sshListener: ((d: Buffer) => void) | null = null;
    ssh.stdout!.on('data', (d: Buffer) => {
      if (seen.length < 4096) seen += d.toString('latin1');
      sshListener?.(d);
    });
    await waitFor(() => seen.includes('READY42'), 15_000, 'ssh cat ready');
    await sleep(200);
    const viaSsh = await roundTrips(
      (b) => ssh.stdin!.write(b),
      (cb) => (sshListener = cb),
    );
    ssh.kill('SIGTERM');

    // 2. cat of the file through each terminal.
    const t2 = await openTerminal(ctl, agent.hostId);
    t2.type('stty -echo; echo READY$((40+2))\r');
    await t2.until('READY42', 30_000);
    await sleep(300);
    t2.reset();
    let started = performance.now();
    t2.type(`cat ${file}; echo END$((40+2))\r`);
    await t2.until('END42');
    const keelSeconds = (performance.now() - started) / 1000;
    t2.client.ws.close();

    const sshCat = track(
      spawn('ssh', ['-tt', ...sshd.args, `echo READY42; read x; cat ${file}`], { stdio: 'pipe' }),
    );
    let ready = false;
    sshCat.stdout!.on('data', (d: Buffer) => {
      if (!ready && d.toString('latin1').includes('READY42')) ready = true;
    });
    await waitFor(() => ready, 15_000, 'ssh ready');
    const exited = new Promise((r) => sshCat.once('exit', r));
    started = performance.now();
    sshCat.stdin!.write('\n');
    await exited;
    const sshSeconds = (performance.now() - started) / 1000;

    // 3. The ceiling: the three hops alone (sealed) and the PTY alone.
    const floor = await runChannelFloor({ sends: SENDS, bytes: BYTES });
    const alone = await ptyAlone(file);

    const mbps = (s: number) => BYTES / 1e6 / s;
    console.log(`keystroke echo, ${SENDS} sends (ms)      p50      p99`);
    console.log(
      `  keel terminal (ws -> controller -> agent -> pty)  ${fmt(percentile(keel, 50))}  ${fmt(percentile(keel, 99))}`,
    );
    console.log(
      `  ssh -tt to a loopback sshd                         ${fmt(percentile(viaSsh, 50))}  ${fmt(percentile(viaSsh, 99))}`,
    );
    console.log(
      `  floor: 3 bare-ws hops, sealed (echo)                ${fmt(floor.sealed.p50)}  ${fmt(floor.sealed.p99)}`,
    );
    console.log(
      `  floor: 3 bare-ws hops, plain (echo)                 ${fmt(floor.plain.p50)}  ${fmt(floor.plain.p99)}`,
    );
    console.log(
      `  PTY alone (node-pty + cat, in one process)          ${fmt(percentile(alone.times, 50))}  ${fmt(percentile(alone.times, 99))}`,
    );
    const ceilingP50 = floor.sealed.p50 + percentile(alone.times, 50);
    const keelP50 = percentile(keel, 50);
    console.log(`  keel's PTY: ${ptyKind || 'unknown'}`);
    console.log(
      `  target p50 <= ssh's: ${keelP50 <= percentile(viaSsh, 50) ? 'met' : 'missed'}; ceiling here (sealed floor + PTY alone) ${fmt(ceilingP50)} ms ` +
        `(${(ceilingP50 / percentile(viaSsh, 50)).toFixed(1)}x ssh's p50); Keel's share above the ceiling ${fmt(keelP50 - ceilingP50)} ms`,
    );
    console.log(`cat of ${args.mb} MB through the terminal`);
    console.log(`  keel ${keelSeconds.toFixed(2)} s (${mbps(keelSeconds).toFixed(1)} MB/s)`);
    console.log(
      `  ssh  ${sshSeconds.toFixed(2)} s (${mbps(sshSeconds).toFixed(1)} MB/s); keel/ssh ${((mbps(keelSeconds) / mbps(sshSeconds)) * 100).toFixed(0)} %`,
    );
    console.log(
      `  floor, sealed ${floor.sealed.mbps.toFixed(1)} MB/s; PTY alone ${mbps(alone.catSeconds).toFixed(1)} MB/s; ` +
        `target >= 50 % of ssh: ${mbps(keelSeconds) >= 0.5 * mbps(sshSeconds) ? 'met' : 'missed'}; ` +
        `ceiling here min(floor, PTY) = ${((100 * Math.min(floor.sealed.mbps, mbps(alone.catSeconds))) / mbps(sshSeconds)).toFixed(0)} % of ssh; ` +
        `Keel ${((100 * mbps(keelSeconds)) / Math.min(floor.sealed.mbps, mbps(alone.catSeconds))).toFixed(0)} % of that ceiling`,
    );
    console.log(
      JSON.stringify({
        sends: SENDS,
        pty: ptyKind,
        keel: { p50: keelP50, p99: percentile(keel, 99), catMBps: mbps(keelSeconds) },
        ssh: { p50: percentile(viaSsh, 50), p99: percentile(viaSsh, 99), catMBps: mbps(sshSeconds) },
        floor,
        ptyAlone: {
          p50: percentile(alone.times, 50),
          p99: percentile(alone.times, 99),
          catMBps: mbps(alone.catSeconds),
        },
      }),
    );
  } finally {
    sshd.stop();
    await agent.stop();
    await ctl.stop();
    for (const d of scratch) removeDir(d);
  }
}

await main();
