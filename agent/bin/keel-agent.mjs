#!/usr/bin/env node
// keel-agent launcher: in a checkout of the repository it runs the TypeScript sources through tsx
// (so tests and `npm start` always run what is in src/); on an installed host, where only the
// bundle from `npm run build` ships, it runs dist/keel-agent.mjs.
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// V8 garbage-collector settings of the agent's process (issue 9: RSS <= 60 MB as the maximum, not
// only the mean; docs/benchmarks.md, metrics footprint, run of 30 Nov 2026 12:24). Node refuses
// them in NODE_OPTIONS (the systemd unit's), so the process sets them on itself, here: before the
// bundle loads, because V8 arms the memory reducer's first timer while it loads and compiles it.
// - The memory reducer's first run 4 s after the old generation first grows, instead of 8 s.
//   Loading the bundle, the handshake and the first facts and metrics leave ~2 MB of garbage in
//   the old generation and a young generation grown to 2 MB; the memory reducer returns both
//   (anonymous memory 17.3 -> 13.5 MiB) when its timer finds the allocation rate low. At 4 s the
//   agent is online and at rest; if it is still busy then (a loaded host), V8 would look again 8 s
//   later, as it does by default: the garbage stayed for the first 12-16 s in half the measured
//   starts (above the line while it stays). Hence the third flag.
// - Bytecode of a function that has not run since the last full collection is dropped at the
//   next one (V8's default: after 5 of them), so the code that runs once at start-up (module
//   bodies, the handshake) is let go by the memory reducer's collections (~0.5 MiB). A function
//   that runs again is compiled again from its source, once; full collections are rare in an
//   agent at rest (none in five minutes after the memory reducer's).
// - For the first 30 s, V8 optimizes for memory over speed (`--optimize-for-size`): its memory
//   reducer then collects when its timer fires whether or not the process is busy (launcher.test:
//   a process allocating ~100 MB/s gets its first full collection before 7.5 s with it, none in
//   10 s without). So the start-up garbage is returned at 4 s on a loaded host too (metrics
//   footprint of 30 Nov 16:05, started at load 13: before the benchmark's window opened). After
//   30 s the flag is off again, so the settled agent (the log pipeline's CPU among it) runs as V8
//   runs it by default; only the memory reducer's first collections see it.
// - A function is optimized by TurboFan after 10x the interpreter's budget of V8's default
//   (`--interrupt-budget`, 66 KB of bytecode run -> 660 KB). At 1 s metrics the agent's functions
//   and Node's own (timers, streams, Buffer writes) reached the default one after another for many
//   minutes, and each compilation left optimized code, deoptimization data and feedback in the old
//   generation, which an agent at rest never collects again: the heap stepped up 0.3-0.5 MB with
//   each burst of them (docs/benchmarks.md, metrics footprint, run of 30 Nov 21:42). With 10x only
//   what runs a lot is optimized (the log pipeline's loops within moments of a burst); the rest
//   stays in Sparkplug's baseline code. Measured at 1 s beside the same agent without it: RSS
//   0.5-0.8 MiB lower, the creep halved, CPU no higher.
const heapFlags = [
  '--gc-memory-reducer-start-delay-ms=4000',
  '--bytecode-old-age=1',
  '--optimize-for-size',
  '--interrupt-budget=675840',
];
for (const flag of heapFlags) setFlagsFromString(flag);
const startOnlyMs = 30_000;
setTimeout(() => setFlagsFromString('--no-optimize-for-size'), startOnlyMs).unref();

const source = new URL('../src/cli.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/keel-agent.mjs', import.meta.url).href);
}
