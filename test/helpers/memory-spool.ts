// The in-memory stand-in for the agent's spool (agent/src/link/spool.ts) that the supervisor,
// log-tail, health, configs and proxy adapter tests hand to what they test: it numbers what is
// appended from 1, as the real spool does, and keeps every record. The real spool's durability,
// bound and overflow gaps are tested in spool.test.ts and end to end (processes-gap.test.ts).
import { decodeLogLine, type StreamRecord } from '@keel/shared';

export class MemorySpool {
  records: StreamRecord[] = [];
  get lastSeq() {
    return this.records.length;
  }
  append(records: readonly StreamRecord[]) {
    const firstSeq = this.records.length + 1;
    this.records.push(...records);
    return { firstSeq, lastSeq: this.records.length };
  }
  /** The text of every line `name` printed on `stream`, in the order captured. */
  lines(name: string, stream = 'stdout') {
    return this.records
      .map((r) => decodeLogLine(r.payload)!)
      .filter((l) => l.process === name && l.stream === stream)
      .map((l) => Buffer.from(l.line).toString('utf8'));
  }
}
