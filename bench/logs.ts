// npm run bench -- logs [seconds]: how fast Keel captures a fast writer's output, next to the same
// writer into /dev/null and under Debian's supervisord (capturing to its log file), in one run.
// The writer prints ~100-byte lines as fast as it can for `seconds` (default 10) and reports
// what it wrote. Keel's figure is lines read from the process's output file into a real on-disk
// agent spool (the supervisor as the agent runs it: keeper, output file, tailer every 200 ms),
// counted until the tailer has caught up with the writer's last line.
// Not measured here yet (see docs/benchmarks.md "logs"): durable MiB/s into PostgreSQL, the live
// subscriber rate, regex over 1 GiB of stored lines vs grep -c.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { processSpecSchema } from '@keel/shared';
import { Spool } from '../agent/src/link/spool.ts';
import { LogTailer } from '../agent/src/supervisor/log-tail.ts';
import { Supervisor } from '../agent/src/supervisor/supervisor.ts';

const seconds = Number(process.argv[2] ?? 10);
const dir = mkdtempSync(join(tmpdir(), 'keel-bench-logs-'));
const writer = join(dir, 'writer.cjs');
writeFileSync(
  writer,
  `const fs = require('fs');
   const line = 'x'.repeat(90);
   let n = 0; const lines = [];
   for (let i = 0; i < 640; i++) lines.push('');
   const end = Date.now() + ${seconds * 1000}; let bytes = 0; const t0 = Date.now();
   while (Date.now() < end) {
     let s = '';
     for (let i = 0; i < 640; i++) { n++; s += 'n ' + String(n).padStart(8, '0') + line + '\\n'; }
     bytes += fs.writeSync(1, s);
   }
   fs.writeFileSync(process.argv[2], JSON.stringify({ lines: n, bytes, ms: Date.now() - t0 }));`,
);
const MiB = 1024 * 1024;
const fmt = (r: { lines: number; bytes: number; ms: number }) =>
  `${Math.round(r.lines / (r.ms / 1000)).toLocaleString('en')} lines/s, ${(r.bytes / MiB / (r.ms / 1000)).toFixed(1)} MiB/s`;

// (1) raw: the same program into /dev/null.
const rawOut = join(dir, 'raw.json');
spawnSync('sh', ['-c', `exec node "${writer}" "${rawOut}" > /dev/null`]);
const raw = JSON.parse(readFileSync(rawOut, 'utf8')) as { lines: number; bytes: number; ms: number };
console.log(`raw into /dev/null:        ${fmt(raw)}`);

// (2) supervisord capturing it to its log file.
let sup: { lines: number; bytes: number; ms: number } | null = null;
if (existsSync('/usr/bin/supervisord')) {
  const conf = join(dir, 'supervisord.conf');
  const supOut = join(dir, 'sup.json');
  writeFileSync(
    conf,
    `[supervisord]\nnodaemon=true\nlogfile=${dir}/supervisord.log\npidfile=${dir}/supervisord.pid\n` +
      `[unix_http_server]\nfile=${dir}/s.sock\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n` +
      `[program:writer]\ncommand=node ${writer} ${supOut}\nstdout_logfile=${dir}/writer.log\nstdout_logfile_maxbytes=0\nautorestart=false\nstartsecs=0\n`,
  );
  const t0 = Date.now();
  const d = spawn('supervisord', ['-c', conf], { stdio: 'ignore' });
  while (!existsSync(supOut) && Date.now() - t0 < (seconds + 60) * 1000)
    await new Promise((r) => setTimeout(r, 100));
  const w = JSON.parse(readFileSync(supOut, 'utf8')) as { lines: number; bytes: number; ms: number };
  // Captured = what reached the log file by the time the writer finished, over the writer's time.
  const captured = statSync(join(dir, 'writer.log')).size;
  sup = { lines: Math.round((w.lines * captured) / w.bytes), bytes: captured, ms: w.ms };
  d.kill('SIGTERM');
  console.log(
    `supervisord to its file:   ${fmt(sup)} (ratio to raw ${(sup.bytes / sup.ms / (raw.bytes / raw.ms)).toFixed(2)})`,
  );
} else {
  console.log('supervisord: not installed (apt-get install supervisor)');
}

// (3) Keel: the supervisor and the tailer into a real spool.
const keelDir = join(dir, 'keel');
const spool = await Spool.open({ dir: join(keelDir, 'spool'), maxBytes: 8 * 1024 * MiB });
const tailer = new LogTailer({ dir: join(keelDir), spool });
const supervisor = new Supervisor({ dir: keelDir, tailer, log: pino({ level: 'silent' }) });
const keelOut = join(dir, 'keel.json');
const t0 = Date.now();
await supervisor.apply(
  processSpecSchema.parse({ name: 'writer', argv: ['node', writer, keelOut], restart: { policy: 'never' } }),
);
const timer = setInterval(() => tailer.tick(), 200);
while (!existsSync(keelOut) || supervisor.status('writer').state !== 'exited')
  await new Promise((r) => setTimeout(r, 50));
const w = JSON.parse(readFileSync(keelOut, 'utf8')) as { lines: number; bytes: number; ms: number };
while (spool.lastSeq < w.lines) await new Promise((r) => setTimeout(r, 50));
clearInterval(timer);
const ms = Date.now() - t0;
const keel = { lines: spool.lastSeq, bytes: w.bytes, ms };
console.log(
  `Keel into its spool:       ${fmt(keel)} (ratio to raw ${(keel.bytes / keel.ms / (raw.bytes / raw.ms)).toFixed(2)}${sup ? `, to supervisord ${(keel.bytes / keel.ms / (sup.bytes / sup.ms)).toFixed(2)}` : ''}; writer alone ${fmt(w)})`,
);
supervisor.close();
rmSync(dir, { recursive: true, force: true });
