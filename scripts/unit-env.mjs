// The glibc malloc variables (`MALLOC_*`) a systemd unit of systemd/ sets for its process, read
// from the unit itself so that it stays their one source: `npm start` gives them to the controller
// (scripts/start.mjs) and the benchmarks to the processes they measure (bench/lib/harness.ts).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const systemd = fileURLToPath(new URL('../systemd/', import.meta.url));

/**
 * `unitFile`'s `Environment=MALLOC_…` assignments; `override` (`K=V K=V`, or empty for none),
 * when given, replaces them.
 */
export function unitMallocEnv(unitFile, override) {
  const unit = readFileSync(`${systemd}${unitFile}`, 'utf8');
  const env = {};
  const lines = override !== undefined ? [['', override]] : unit.matchAll(/^Environment=(MALLOC_.*)$/gm);
  for (const [, line] of lines) {
    for (const kv of line.split(/\s+/).filter(Boolean))
      env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  }
  return env;
}
