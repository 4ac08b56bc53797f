// A program's output with every kind of line for the capture tests (agent/src/supervisor/log-tail,
// agent/src/link/line-block), and the lines LineSplitter, the reference, makes of it.
import { MAX_LOG_LINE_BYTES } from '@keel/shared';
import { LineSplitter } from '../../agent/src/supervisor/log-tail.ts';
import { seededRandom } from './seeded-random.ts';

/**
 * About `bytes` of output drawn from `seed`: LF, CRLF and lone CR line ends, empty lines, binary
 * lines (never an LF inside: the end is chosen apart), lines around the 64 KiB bound and twice
 * over it; then `tail`, a partial line with no LF (only a flush hands it out).
 * @example const data = randomLogOutput(7, 1 << 20, 'the last words');
 */
export function randomLogOutput(seed: number, bytes: number, tail: string): Buffer {
  const r = seededRandom(seed);
  const parts: Buffer[] = [];
  let n = 0;
  while (n < bytes) {
    const kind = r();
    let len: number;
    if (kind < 0.003)
      len = MAX_LOG_LINE_BYTES - 2 + Math.floor(r() * 4); // around the bound
    else if (kind < 0.004)
      len = MAX_LOG_LINE_BYTES * 2 + Math.floor(r() * 1000); // cut in parts
    else if (kind < 0.08) len = 0;
    else len = Math.floor(r() * 200);
    const line = Buffer.allocUnsafe(len);
    const binary = r() < 0.1;
    for (let i = 0; i < len; i++) {
      const b = binary ? Math.floor(r() * 256) : 32 + Math.floor(r() * 95);
      line[i] = b === 10 ? 11 : b;
    }
    const end = r();
    parts.push(line, Buffer.from(end < 0.2 ? '\r\n' : end < 0.25 ? '\r' : '\n'));
    n += len + 2;
  }
  parts.push(Buffer.from(tail));
  return Buffer.concat(parts);
}

/** LineSplitter's lines of `data` as [latin1 text, continued], the held rest flushed as a last part. */
export function splitterLines(data: Buffer): [string, boolean][] {
  const s = new LineSplitter();
  const out = s.push(data).map((l) => [l.line.toString('latin1'), l.continued] as [string, boolean]);
  const held = s.flush();
  if (held) out.push([held.line.toString('latin1'), held.continued]);
  return out;
}
