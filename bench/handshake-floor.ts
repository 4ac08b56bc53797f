// Benchmark: the ceiling for `connect` on this machine. The same handshake (shared/src/handshake.ts:
// ed25519 signatures, X25519, HKDF, one sealed frame back) over bare `ws` — no database, no
// sessions, no logging, no agent link — with the same layout as `npm run bench -- connect`: one
// server process, 2 client processes, 64 handshakes in flight each. Whatever Keel adds on either
// side comes on top of this, so `connect` cannot beat it on the same cores.
//
// Run: npm run bench -- handshake-floor [--n 5000] [--workers 2] [--concurrency 64] [--json]
// (`npm run bench -- connect` runs it too, with its own N, and prints both.)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { availableParallelism as cores } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer } from 'ws';
import {
  AgentHandshake,
  agentPreAuthFrames,
  ControllerHandshake,
  controllerPreAuthFrames,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  generateSigningIdentity,
  keyFingerprint,
  SealedChannel,
  signingIdentityFromSeed,
} from '@keel/shared';
import {
  machine,
  machineBusyMs,
  pool,
  procCpuMs,
  startCpuProfile,
  track,
  withFileLimit,
} from './lib/harness.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '5000' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '64' },
    role: { type: 'string' },
    port: { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

/** The server: answers hello, verifies auth, sends one sealed frame, keeps the socket open. */
function runServer(seed: Buffer): void {
  const identity = signingIdentityFromSeed(seed);
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      const hs = new ControllerHandshake({ identity });
      ws.on('message', (data: Buffer) => {
        const decoded = decodeHandshakeFrame(controllerPreAuthFrames, data);
        if (!decoded.ok) return ws.terminate();
        const frame = decoded.value;
        if (frame.type === 'hello') return ws.send(encodeHandshakeFrame(hs.onHello(frame)));
        if (frame.type !== 'auth') return ws.terminate();
        const channel = new SealedChannel(ws, hs.onAuth(frame), { onFrame: () => {} });
        channel.send({
          type: 'welcome',
          hostId: '00000000-0000-4000-8000-000000000000',
          cursors: {},
          maxFrameBytes: 4 << 20,
          windowBytes: 8 << 20,
        });
      });
    }),
  );
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    process.send!({ port });
  });
}

/** A client process: `count` handshakes, `concurrency` in flight; reports when all are done. */
function runClient(port: number, pin: string): void {
  process.once('message', (msg: { count: number; concurrency: number; profile?: string }) => {
    const profiler = msg.profile ? startCpuProfile() : undefined;
    const identity = generateSigningIdentity();
    const sockets: WebSocket[] = [];
    void pool(Array.from({ length: msg.count }), msg.concurrency, () => {
      return new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
        sockets.push(ws);
        const hs = new AgentHandshake({ identity, pin, mode: 'connect' });
        let channel: SealedChannel | null = null;
        ws.on('open', () => ws.send(encodeHandshakeFrame(hs.hello)));
        ws.on('error', reject);
        ws.on('message', (data: Buffer) => {
          if (channel) return channel.receive(data);
          const decoded = decodeHandshakeFrame(agentPreAuthFrames, data);
          if (!decoded.ok || decoded.value.type !== 'hello.controller')
            return reject(new Error('bad answer'));
          const { auth, session } = hs.onControllerHello(decoded.value);
          ws.send(encodeHandshakeFrame(auth));
          channel = new SealedChannel(ws, session, { onFrame: () => resolve() });
        });
      });
    }).then(async () => {
      if (profiler && msg.profile) writeFileSync(msg.profile, JSON.stringify(await profiler.stop()));
      process.send!({ done: true });
    });
  });
  process.send!({ ready: true });
}

function spawnRole(args: string[]): ChildProcess {
  const file = fileURLToPath(import.meta.url);
  const [cmd, argv] = withFileLimit(process.execPath, ['--import', 'tsx', file, ...args]);
  return track(spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
}

const once = <T>(child: ChildProcess) =>
  new Promise<T>((resolve, reject) => {
    child.once('message', (m) => resolve(m as T));
    child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });

async function main(): Promise<void> {
  if (values.role === 'server') return runServer(Buffer.from(values.seed!, 'hex'));
  if (values.role === 'client') return runClient(Number(values.port), values.seed!);
  const n = Number(values.n);
  const workers = Number(values.workers);
  const concurrency = Number(values.concurrency);
  const seed = Buffer.from(generateSigningIdentity().privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const pin = keyFingerprint(signingIdentityFromSeed(seed).publicKey);
  const server = spawnRole(['--role', 'server', '--seed', seed.toString('hex')]);
  const { port } = await once<{ port: number }>(server);
  const clients = Array.from({ length: workers }, () =>
    spawnRole(['--role', 'client', '--port', String(port), '--seed', pin]),
  );
  await Promise.all(clients.map((c) => once(c))); // each is listening
  const cpu0 = {
    machine: machineBusyMs(),
    server: procCpuMs(server.pid!),
    clients: clients.reduce((a, c) => a + procCpuMs(c.pid!), 0),
  };
  const t0 = performance.now();
  await Promise.all(
    clients.map((c, i) => {
      const done = once(c);
      const profileDir = process.env.KEEL_BENCH_PROFILE;
      if (profileDir) mkdirSync(profileDir, { recursive: true });
      c.send({
        count: Math.floor(n / workers) + (i < n % workers ? 1 : 0),
        concurrency,
        // KEEL_BENCH_PROFILE=dir: a CPU profile of each client process.
        profile: profileDir ? join(profileDir, `floor-client-${n}-${i}.cpuprofile`) : undefined,
      });
      return done;
    }),
  );
  const ms = performance.now() - t0;
  const cpu = {
    machine: machineBusyMs() - cpu0.machine,
    server: procCpuMs(server.pid!) - cpu0.server,
    clients: clients.reduce((a, c) => a + procCpuMs(c.pid!), 0) - cpu0.clients,
  };
  for (const c of [server, ...clients]) c.kill('SIGKILL');
  const handshakesPerSec = (n * 1000) / ms;
  if (values.json) {
    console.log(JSON.stringify({ n, handshakesPerSec, cpuMs: cpu }));
    return;
  }
  console.log(`handshake floor — ${machine()}`);
  console.log(
    `bare ws + Keel's handshake crypto, ${workers} client processes x ${concurrency} in flight, N=${n}\n` +
      `  handshakes/s        ${handshakesPerSec.toFixed(0)}   (the most \`connect\` can show on these cores)\n` +
      `  CPU per handshake   ${(cpu.machine / n).toFixed(2)} ms machine-wide: server ${(cpu.server / n).toFixed(2)}, ` +
      `clients ${(cpu.clients / n).toFixed(2)}, kernel/other ${((cpu.machine - cpu.server - cpu.clients) / n).toFixed(2)}; ` +
      `machine ${((100 * cpu.machine) / ms / cores()).toFixed(0)}% busy`,
  );
}

await main();
