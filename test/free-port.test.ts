// Proves that freePort (test/helpers/ports.ts) keeps test processes apart on one machine: ports
// another live process holds are never handed out here, they lie below the kernel's ephemeral range
// (where no outgoing connection or listen on port 0 takes them), nothing listens on them, and a
// process's reservations go when it exits.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { tsLoader } from '../scripts/test-loader-url.mjs';
import { ephemeralStart, freePort, portsDir } from './helpers/ports.ts';

const PORTS = 200;

test(
  'ports another process holds are not handed out here; they go with it',
  { timeout: 60_000 },
  async () => {
    // Another test process: takes PORTS ports, says which, and holds them until its stdin ends.
    const script = `
    const { freePort } = await import(${JSON.stringify(new URL('./helpers/ports.ts', import.meta.url).href)});
    const ports = [];
    for (let i = 0; i < ${PORTS}; i++) ports.push(await freePort());
    console.log(JSON.stringify(ports));
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));
  `;
    const child = spawn(process.execPath, ['--import', tsLoader, '--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let theirs: number[] = [];
    try {
      theirs = await new Promise<number[]>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
        });
        child.once('exit', (code) => reject(new Error(`the other process exited ${code}: ${out}`)));
      });
      assert.equal(new Set(theirs).size, PORTS, 'no port twice within a process');
      for (const port of theirs) {
        assert.equal(
          readFileSync(join(portsDir, String(port)), 'utf8'),
          String(child.pid),
          `${port} reserved`,
        );
      }

      const mine: number[] = [];
      for (let i = 0; i < PORTS; i++) mine.push(await freePort());
      const shared = mine.filter((p) => theirs.includes(p));
      assert.deepEqual(shared, [], 'no port of the other live process handed out here');
      const start = ephemeralStart();
      for (const port of [...mine, ...theirs])
        assert.ok(port >= 10_000 && port < start, `${port} below ${start}`);
      // Nothing listens on one handed out: a server can take it.
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(mine[0], '127.0.0.1', () => resolve());
      });
      await new Promise((resolve) => server.close(resolve));
    } finally {
      child.stdin.end();
      await exited;
    }
    // Its reservations went with it (removed by its exit handler).
    assert.equal(child.exitCode, 0);
    assert.deepEqual(
      theirs.filter((port) => existsSync(join(portsDir, String(port)))),
      [],
      'the exited process holds no port',
    );
  },
);
