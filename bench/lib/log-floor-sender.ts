// The sending half of the logs floor's sealed variant (bench/lib/log-floor.ts): a bare process in
// the agent's place. It follows the writer's output file, cuts what it reads at the last line end
// into frames of up to 256 KiB (the agent's batch size), seals each with Keel's frame sealer
// (ChaCha20-Poly1305 under a counter nonce, as the agent link does) and sends it over a bare `ws`
// connection with a zero mask (as the agent does), keeping at most 16 MiB unacknowledged (the
// receiver acknowledges what it committed). No spool, no records, no request or stream protocol.
// At the end it prints its own CPU (µs) as JSON on stdout.
//
// argv: <ws url> <output file> <bytes to send>; env KEEL_FLOOR_KEY: the 32-byte key, hex.
import { openSync, readSync, existsSync } from 'node:fs';
import WebSocket from 'ws';
import { FrameSealer } from '@keel/shared';

const [url, file, total] = process.argv.slice(2) as [string, string, string];
const expect = Number(total);
const sealer = new FrameSealer(Buffer.from(process.env.KEEL_FLOOR_KEY ?? '', 'hex'));
const FRAME = 256 * 1024;
const WINDOW = 16 * 1024 * 1024;
const zeroMask = (mask: Buffer) => mask.fill(0);
const ws = new WebSocket(url, { perMessageDeflate: false, generateMask: zeroMask });
let acked = 0;
let wake: (() => void) | null = null;
ws.on('message', (data) => {
  acked = Number(String(data));
  wake?.();
});
await new Promise<void>((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
});
while (!existsSync(file)) await new Promise((r) => setTimeout(r, 5));
const fd = openSync(file, 'r');
const buf = Buffer.allocUnsafe(FRAME);
let at = 0;
while (at < expect) {
  while (at - acked > WINDOW) await new Promise<void>((r) => (wake = r));
  const n = readSync(fd, buf, 0, Math.min(FRAME, expect - at), at);
  const cut = buf.subarray(0, n).lastIndexOf(10) + 1;
  if (cut === 0) {
    await new Promise((r) => setTimeout(r, 20));
    continue;
  }
  at += cut;
  const sealed = sealer.seal(buf.subarray(0, cut));
  await new Promise<void>((resolve, reject) => ws.send(sealed, (err) => (err ? reject(err) : resolve())));
}
while (acked < expect) await new Promise<void>((r) => (wake = r));
const cpu = process.cpuUsage();
process.stdout.write(JSON.stringify(cpu));
ws.close();
