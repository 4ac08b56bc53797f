// Test helper for spool.test.ts: appends to a spool in a loop until it is killed. Each record's
// payload is its own seq, so the test can check that what survives is a gapless prefix.
// Usage: node --import tsx spool-crash-writer.ts <dir>
import { Spool } from './spool.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: spool-crash-writer.ts <dir>');
const spool = await Spool.open({ dir, segmentBytes: 256 * 1024, maxBytes: 64 * 1024 * 1024 });
let round = 0;
for (;;) {
  // Batches from 1 to ~2,000 records, so some appends span several frames.
  const n = 1 + ((round * 7919) % (round % 10 === 0 ? 2000 : 40));
  const records = [];
  for (let i = 1; i <= n; i++) {
    records.push({
      ts: Date.now(),
      payload: Buffer.from(String(spool.lastSeq + i).padEnd(40 + (i % 60), '.')),
    });
  }
  const { lastSeq } = spool.append(records);
  round++;
  if (round % 50 === 0) process.stdout.write(`${lastSeq}\n`);
  // Let the group-commit timer run now and then, as it would in the agent.
  if (round % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
}
