// Ports for the tests' controllers and servers: drawn below the kernel's ephemeral range and
// reserved machine-wide, so that no other test process (of this run or another run beside it) and
// no outgoing connection is given one while its test holds it (test/helpers/fleet.ts re-exports
// freePort; test/free-port.test.ts proves it).
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/**
 * Where test processes on this machine reserve the ports freePort hands out: a file per port
 * holding the reserving process's id, removed when that process exits. Machine-wide on purpose, not
 * in the run's TMPDIR: two `npm test` runs side by side share the ports. KEEL_TEST_PORTS_DIR.
 */
export const portsDir =
  process.env.KEEL_TEST_PORTS_DIR ??
  (existsSync('/dev/shm') ? '/dev/shm/keel-test-ports' : '/tmp/keel-test-ports');
/** The ports this process reserved, released at its exit. */
const reservedPorts = new Set<number>();
let releaseAtExit = false;

/** Where the kernel takes ephemeral ports (connect()'s local ports, bind(0)): freePort stays below. */
export function ephemeralStart(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > 12_000 ? lo : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * Reserves `port` for this process; false when a reservation is there (a dead process's too:
 * scripts/test.mjs removes those when a run starts, with no other process's file to race).
 */
function reservePort(port: number): boolean {
  try {
    writeFileSync(join(portsDir, String(port)), String(process.pid), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  reservedPorts.add(port);
  if (!releaseAtExit) {
    releaseAtExit = true;
    process.on('exit', () => {
      for (const p of reservedPorts) rmSync(join(portsDir, String(p)), { force: true });
    });
  }
  return true;
}

/** True when nothing listens on 127.0.0.1:`port` (a listen there succeeds). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on and no other test process on this machine will be
 * given while this one runs. Tests hand it to a controller or server that listens on it later (and
 * again after a restart), so the port must stay theirs in between: a port the kernel picked
 * (listen on 0, then close) is in its ephemeral range, where any outgoing connection on the
 * machine or another run's freePort could take it in that gap (a test could then reach another
 * run's controller, whose /readyz answers as well). So ports come from below the ephemeral range,
 * reserved in `portsDir`; where that directory cannot be written, from the kernel as before.
 */
export async function freePort(): Promise<number> {
  try {
    mkdirSync(portsDir, { recursive: true });
    const span = ephemeralStart() - 10_000;
    for (let i = 0; i < 500; i++) {
      const port = 10_000 + randomInt(span);
      if (reservedPorts.has(port) || !reservePort(port)) continue;
      if (await bindable(port)) return port;
      // Something outside the tests listens there: leave the port to it (keep the reservation, so
      // this process does not draw it again).
    }
  } catch {
    // Not writable here (another user's directory): the kernel's pick below.
  }
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}
