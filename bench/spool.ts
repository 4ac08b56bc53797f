// Benchmark of the agent's stream spool: append and read throughput for 100-byte records at
// several append batch sizes, on the real disk under os.tmpdir(), with the default group commit.
// Run: node --import tsx bench/spool.ts [MiB per case, default 128]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StreamRecord } from '@keel/shared';
import { Spool } from '../agent/src/link/spool.ts';

const RECORD_BYTES = 100;
const totalMiB = Number(process.argv[2] ?? 128);
const totalRecords = Math.floor((totalMiB * 1024 * 1024) / RECORD_BYTES);

function rate(bytes: number, records: number, ms: number): string {
  const mib = bytes / 1024 / 1024 / (ms / 1000);
  const rps = records / (ms / 1000);
  return `${mib.toFixed(1).padStart(7)} MiB/s ${(rps / 1000).toFixed(0).padStart(6)}k records/s`;
}

async function runCase(batch: number, syncIntervalMs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-bench-spool-'));
  try {
    const spool = await Spool.open({ dir, maxBytes: 4 * 1024 * 1024 * 1024, syncIntervalMs });
    const payload = Buffer.alloc(RECORD_BYTES, 'x');
    const records: StreamRecord[] = Array.from({ length: batch }, () => ({ ts: Date.now(), payload }));
    const appends = Math.floor(totalRecords / batch);
    const n = appends * batch;

    let t0 = performance.now();
    for (let i = 0; i < appends; i++) {
      spool.append(records);
      // Yield now and then so the group commit runs, as it would inside the agent.
      if ((i & 1023) === 1023) await new Promise((resolve) => setImmediate(resolve));
    }
    await spool.flush();
    const appendMs = performance.now() - t0;

    t0 = performance.now();
    let read = 0;
    for (let b = spool.read(0, 1 << 20); b; b = spool.read(b.firstSeq + b.count - 1, 1 << 20))
      read += b.count;
    const readMs = performance.now() - t0;
    if (read !== n) throw new Error(`read ${read} of ${n} records`);

    t0 = performance.now();
    spool.ack(spool.lastSeq);
    await spool.close();
    const ackMs = performance.now() - t0;

    const sync = syncIntervalMs === 0 ? 'sync each' : `sync ${syncIntervalMs}ms`;
    console.log(
      `batch ${String(batch).padStart(4)} (${sync.padEnd(10)})  append ${rate(n * RECORD_BYTES, n, appendMs)}` +
        `   read ${rate(n * RECORD_BYTES, n, readMs)}   ack+close ${ackMs.toFixed(0)} ms`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`spool: ${totalMiB} MiB of ${RECORD_BYTES}-byte payloads per case (MiB/s counts payload bytes)`);
for (const batch of [1, 16, 256, 4096]) await runCase(batch, 200);
await runCase(256, 0);
