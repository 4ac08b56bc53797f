// Benchmark: the floor for `channel` on this machine. The same three Node hops as a Keel channel —
// a `ws` client (this process) -> a relay process -> an echo process -> back — over bare `ws`,
// with none of Keel's framing, scheduling, credit or validation: the relay forwards each message
// as it is, pausing its reader while the next hop's socket holds more than 1 MiB. Measured twice:
// plain, and with the relay <-> echo hop sealed with ChaCha20-Poly1305 (shared/src/sealed.ts, one
// seal and one open per message per direction, as Keel's controller <-> agent link). Whatever
// Keel adds comes on top of this, so `channel` cannot beat it on the same cores.
//
// Run: npm run bench -- channel-floor [--sends 2000] [--mb 100]
// (`npm run bench -- channel` runs it too, in the same run, and prints Keel's share of it.)
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer } from 'ws';
import { FrameOpener, FrameSealer } from '../shared/src/sealed.ts';
import { machine, percentile, sleep, track } from './lib/harness.ts';

/** What one floor variant measured. */
export interface FloorFigures {
  p50: number;
  p99: number;
  mbps: number;
}

const HIGH_WATER = 1024 * 1024;
const wsOptions = { perMessageDeflate: false, maxPayload: 16 << 20 } as const;

/** Sends on `to`, pausing `from` while `to` is behind (the relay's only flow control). */
function forward(from: WebSocket, to: WebSocket, data: Buffer): void {
  to.send(data);
  if (to.bufferedAmount > HIGH_WATER && !from.isPaused) {
    from.pause();
    const wait = () => (to.bufferedAmount > HIGH_WATER ? setTimeout(wait, 1) : from.resume());
    setTimeout(wait, 1);
  }
}

function listen(wss: WebSocketServer, onUp: (port: number) => void): void {
  const server = createServer();
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)),
  );
  server.listen(0, '127.0.0.1', () => onUp((server.address() as { port: number }).port));
}

/** Sealer/opener pair for one direction of the sealed hop (the relay holds the mirror image). */
function sealing(key: string | undefined, role: 'relay' | 'echo') {
  if (!key) return null;
  const k = Buffer.from(key, 'hex');
  const up = k.subarray(0, 32); // relay -> echo
  const down = k.subarray(32, 64); // echo -> relay
  return role === 'relay'
    ? { sealer: new FrameSealer(up), opener: new FrameOpener(down) }
    : { sealer: new FrameSealer(down), opener: new FrameOpener(up) };
}

/** The echo process: `/echo` sends every message back; `/sink?bytes=N` answers "done" after N bytes. */
function runEcho(key: string | undefined): void {
  const wss = new WebSocketServer({ noServer: true, ...wsOptions });
  wss.on('connection', (ws, req) => {
    const seal = sealing(key, 'echo');
    const url = new URL(req.url ?? '/', 'http://x');
    const sinkBytes = Number(url.searchParams.get('bytes') ?? 0);
    let received = 0;
    ws.on('message', (data: Buffer) => {
      const plain = seal ? seal.opener.open(data) : data;
      if (!plain) return ws.terminate();
      if (url.pathname === '/sink') {
        received += plain.length;
        if (received >= sinkBytes) {
          const done = Buffer.from('done');
          ws.send(seal ? seal.sealer.seal(done) : done);
        }
        return;
      }
      ws.send(seal ? seal.sealer.seal(plain) : plain);
    });
  });
  listen(wss, (port) => process.send!({ port }));
}

/** The relay process: each client connection gets its own connection to the echo process. */
function runRelay(echoPort: number, key: string | undefined): void {
  const wss = new WebSocketServer({ noServer: true, ...wsOptions });
  wss.on('connection', (client, req) => {
    const seal = sealing(key, 'relay');
    const agent = new WebSocket(`ws://127.0.0.1:${echoPort}${req.url ?? '/'}`, wsOptions);
    const early: Buffer[] = [];
    client.on('message', (data: Buffer) => {
      const out = seal ? seal.sealer.seal(data) : data;
      if (agent.readyState === WebSocket.OPEN) forward(client, agent, out);
      else early.push(out);
    });
    agent.on('open', () => {
      for (const b of early.splice(0)) agent.send(b);
    });
    agent.on('message', (data: Buffer) => {
      const plain = seal ? seal.opener.open(data) : data;
      if (!plain) return client.terminate();
      forward(agent, client, plain);
    });
    agent.on('close', () => client.close());
    client.on('close', () => agent.close());
  });
  listen(wss, (port) => process.send!({ port }));
}

function spawnRole(args: string[]): ChildProcess {
  const file = fileURLToPath(import.meta.url);
  return track(
    spawn(process.execPath, ['--import', 'tsx', file, ...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
}

const portOf = (child: ChildProcess) =>
  new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`floor process exited with ${code}`)));
  });

const connect = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, wsOptions);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });

/** 1-byte round trips, each a different letter that must come back before the next goes. */
async function roundTrips(ws: WebSocket, sends: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < sends + 50; i++) {
    const byte = 0x61 + (i % 26);
    const started = performance.now();
    await new Promise<void>((resolve) => {
      const onMessage = (data: Buffer) => {
        if (data.includes(byte)) {
          ws.off('message', onMessage);
          resolve();
        }
      };
      ws.on('message', onMessage);
      ws.send(Buffer.of(byte));
    });
    if (i >= 50) times.push(performance.now() - started); // the first 50 warm up
  }
  return times.sort((a, b) => a - b);
}

/** Seconds to push `bytes` in 64 KiB messages until the echo process says it has them all. */
async function throughput(ws: WebSocket, bytes: number): Promise<number> {
  const done = new Promise<void>((resolve) => ws.once('message', () => resolve()));
  const block = Buffer.alloc(64 * 1024);
  const started = performance.now();
  for (let sent = 0; sent < bytes; sent += block.length) {
    const n = Math.min(block.length, bytes - sent);
    ws.send(n === block.length ? block : block.subarray(0, n));
    while (ws.bufferedAmount > HIGH_WATER) await sleep(1);
  }
  await done;
  return (performance.now() - started) / 1000;
}

/** Measures the floor: plain and sealed, each with its own pair of processes. */
export async function runChannelFloor(opts: {
  sends: number;
  bytes: number;
}): Promise<{ plain: FloorFigures; sealed: FloorFigures }> {
  const variant = async (sealed: boolean): Promise<FloorFigures> => {
    const key = sealed ? ['--key', randomBytes(64).toString('hex')] : [];
    const echo = spawnRole(['--role', 'echo', ...key]);
    const relay = spawnRole(['--role', 'relay', '--port', String(await portOf(echo)), ...key]);
    try {
      const base = `ws://127.0.0.1:${await portOf(relay)}`;
      const rt = await connect(`${base}/echo`);
      const times = await roundTrips(rt, opts.sends);
      rt.close();
      const sink = await connect(`${base}/sink?bytes=${opts.bytes}`);
      const seconds = await throughput(sink, opts.bytes);
      sink.close();
      return {
        p50: percentile(times, 50),
        p99: percentile(times, 99),
        mbps: opts.bytes / 1_000_000 / seconds,
      };
    } finally {
      relay.kill('SIGKILL');
      echo.kill('SIGKILL');
    }
  };
  const plain = await variant(false);
  const sealed = await variant(true);
  return { plain, sealed };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' },
      port: { type: 'string' },
      key: { type: 'string' },
      sends: { type: 'string', default: '2000' },
      mb: { type: 'string', default: '100' },
    },
  });
  if (values.role === 'echo') return runEcho(values.key);
  if (values.role === 'relay') return runRelay(Number(values.port), values.key);
  const floor = await runChannelFloor({ sends: Number(values.sends), bytes: Number(values.mb) * 1_000_000 });
  console.log(`channel floor — ${machine()}`);
  for (const [name, f] of Object.entries(floor)) {
    console.log(
      `  bare ws, 3 hops, ${name.padEnd(6)}  p50 ${f.p50.toFixed(3)} ms  p99 ${f.p99.toFixed(3)} ms  ${values.mb} MB one way ${f.mbps.toFixed(1)} MB/s`,
    );
  }
  console.log(JSON.stringify(floor));
  process.exit(0);
}

// Run as a script (or as one of its roles), not when channel.ts imports runChannelFloor.
if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
