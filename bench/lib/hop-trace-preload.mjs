// Hop tracer for bench/channel-hops.ts (loaded with `node --import`): records the monotonic time
// (CLOCK_MONOTONIC, the same clock in every process of the machine) of every socket read ('data'
// event) and write (before the syscall) in this process, and writes them to
// $KEEL_TRACE_DIR/<KEEL_TRACE_NAME or pid>.json on SIGUSR2 or exit. Not used by the product.
import net from 'node:net';
import { writeFileSync } from 'node:fs';
const ev = [];
const name = process.env.KEEL_TRACE_NAME ?? String(process.pid);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const origEmit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (type, ...args) {
  if (type === 'data' && ev.length < 2e6) {
    try {
      ev.push([
        now(),
        'r',
        this._handle ? this.localPort : 0,
        this._handle ? this.remotePort : 0,
        args[0]?.length ?? 0,
      ]);
    } catch {
      // a socket without a handle: not traced
    }
  }
  return origEmit.call(this, type, ...args);
};
for (const m of ['_writeGeneric']) {
  const orig = net.Socket.prototype[m];
  net.Socket.prototype[m] = function (...a) {
    if (ev.length < 2e6)
      try {
        const data = a[1];
        const len = Array.isArray(data)
          ? data.reduce((s, c) => s + (c.chunk?.length ?? c.length ?? 0), 0)
          : (data?.length ?? 0);
        ev.push([now(), 'w', this._handle ? this.localPort : 0, this._handle ? this.remotePort : 0, len]);
      } catch {
        // a socket without a handle: not traced
      }
    return orig.apply(this, a);
  };
}
const dump = () => {
  try {
    writeFileSync(`${process.env.KEEL_TRACE_DIR ?? '/tmp'}/${name}.json`, JSON.stringify(ev));
  } catch {
    // nowhere to write: nothing to do
  }
};
process.on('SIGUSR2', dump);
process.on('exit', dump);
globalThis.__keelTraceDump = dump;
