// Test helper for spool.test.ts: appends to a spool in a loop until it is killed. Each record's
// payload is its own seq, so the test can check that what survives is a gapless prefix. With
// `ack`, it also reads what is synced and acks all but the newest 100 records, as the link does
// for the controller's acks, and reports `lastSeq ackedSeq`.
// Usage: node --import tsx spool-crash-writer.ts <dir> [ack]
import { Spool } from './spool.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: spool-crash-writer.ts <dir> [ack]');
const acking = process.argv[3] === 'ack';
const spool = await Spool.open({ dir, segmentBytes: 256 * 1024, maxBytes: 64 * 1024 * 1024 });
let sent = spool.ackedSeq;
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
  if (acking) {
    for (let b = spool.read(sent, 1 << 20, true); b; b = spool.read(sent, 1 << 20, true))
      sent = b.firstSeq + b.count - 1;
    spool.ack(sent - 100);
  }
  round++;
  if (round % 50 === 0) process.stdout.write(acking ? `${lastSeq} ${spool.ackedSeq}\n` : `${lastSeq}\n`);
  // Let the group-commit timer run now and then, as it would in the agent (and, acking, its
  // fdatasync finish, so that records become readable and get acked while the writer appends).
  if (acking ? round % 20 === 0 : round % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
}
