// Shared by the proxy adapter tests (test/proxies-agent*.test.ts): an agent-side config engine over
// a real supervisor in a temp state dir, local targets, free ports, and a small SOCKS5 client.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { freePort } from './helpers/ports.ts';
import { LogTailer } from '../agent/src/supervisor/log-tail.ts';
import { Supervisor } from '../agent/src/supervisor/supervisor.ts';
import { ConfigEngine } from '../agent/src/configs/engine.ts';
import { processHostOf, programsFromEnv } from '../agent/src/configs/adapter.ts';
import { MemorySpool } from './helpers/memory-spool.ts';

/** A spool in memory: these tests do not read process output from the stream. */
export interface Harness {
  dir: string;
  engine: ConfigEngine;
  supervisor: Supervisor;
  events: { kind: string; data: Record<string, unknown> }[];
  close(): Promise<void>;
}

/** A config engine over a real supervisor in a fresh state dir. */
export async function harness(env: NodeJS.ProcessEnv = process.env): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-proxies-'));
  const log = pino({ level: process.env.KEEL_TEST_LOG ?? 'silent' });
  const spool = new MemorySpool();
  const processesDir = join(dir, 'processes');
  const supervisor = new Supervisor({
    dir: processesDir,
    tailer: new LogTailer({ dir: processesDir, spool }),
    log,
  });
  await supervisor.load();
  const events: Harness['events'] = [];
  const engine = new ConfigEngine({
    root: join(dir, 'configs'),
    processes: processHostOf(supervisor),
    programs: programsFromEnv(env),
    log,
    emit: (kind, data) => events.push({ kind, data }),
  });
  await engine.load();
  return {
    dir,
    engine,
    supervisor,
    events,
    async close() {
      await engine.close();
      for (const p of supervisor.list()) await supervisor.remove(p.name).catch(() => {});
      supervisor.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A free TCP port on 127.0.0.1, reserved for this process (test/helpers/ports.ts). */
export { freePort };

/** A port another program holds on 127.0.0.1 until the test ends (a proxy's port taken). */
export async function takenPort(t: TestContext): Promise<number> {
  const squatter = createServer((s) => s.destroy());
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  t.after(() => squatter.close());
  return (squatter.address() as AddressInfo).port;
}

/**
 * Starts a v2ray client (config in `dir`) with one SOCKS inbound on 127.0.0.1 per tag of `socks`,
 * routed to the outbound of the same tag; killed when the test ends.
 * @example startV2rayClient(t, dir, { alice: await freePort() }, [{ tag: 'alice', protocol: 'vless', settings }]);
 */
export function startV2rayClient(
  t: TestContext,
  dir: string,
  socks: Record<string, number>,
  outbounds: { tag: string; protocol: string; settings: unknown }[],
): void {
  const conf = join(dir, 'client.json');
  writeFileSync(
    conf,
    JSON.stringify({
      log: { loglevel: 'warning' },
      inbounds: Object.entries(socks).map(([tag, port]) => ({
        tag,
        listen: '127.0.0.1',
        port,
        protocol: 'socks',
        settings: { auth: 'noauth', udp: false },
      })),
      outbounds,
      routing: {
        rules: Object.keys(socks).map((tag) => ({ type: 'field', inboundTag: [tag], outboundTag: tag })),
      },
    }),
  );
  const child = spawn('v2ray', ['-config', conf], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
}

/** A local HTTP target answering `text` to every request. */
export async function httpTarget(text: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = createHttpServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(text);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A local TCP echo target (for long-lived connections through a proxy). */
export async function echoTarget(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Opens a TCP connection to host:port through a SOCKS5 proxy (no auth). */
export function socks5Connect(
  proxyPort: number,
  host: string,
  port: number,
  timeoutMs = 5_000,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: proxyPort });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('socks5 connect timed out'));
    }, timeoutMs);
    let stage = 0;
    let buf = Buffer.alloc(0);
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('connect', () => s.write(Buffer.from([5, 1, 0])));
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return reject(new Error('socks5: no acceptable auth'));
        buf = buf.subarray(2);
        stage = 1;
        const ip = host.split('.').map(Number);
        const req = Buffer.from([5, 1, 0, 1, ...ip, port >> 8, port & 255]);
        s.write(req);
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) {
          clearTimeout(timer);
          s.destroy();
          return reject(new Error(`socks5: connect refused (${buf[1]})`));
        }
        s.off('data', onData);
        clearTimeout(timer);
        const rest = buf.subarray(10);
        if (rest.length) s.unshift(rest);
        resolve(s);
      }
    };
    s.on('data', onData);
  });
}

/** Sends `text` on a socket and resolves with the first `text.length` bytes that come back. */
export function roundTrip(s: Socket, text: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => {
      s.off('data', onData);
      reject(new Error(`no echo of ${JSON.stringify(text)} (got ${JSON.stringify(got)})`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      got += d.toString('utf8');
      if (got.length >= text.length) {
        clearTimeout(timer);
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.write(text);
  });
}

/** An HTTP GET through a SOCKS5 proxy to 127.0.0.1:port; resolves with the response text. */
export async function httpThroughSocks(proxyPort: number, port: number): Promise<string> {
  const s = await socks5Connect(proxyPort, '127.0.0.1', port);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no HTTP answer through the proxy'));
    }, 5_000);
    s.on('data', (d: Buffer) => (out += d.toString('utf8')));
    s.on('end', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', reject);
    s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  });
}
