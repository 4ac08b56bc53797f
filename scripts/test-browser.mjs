#!/usr/bin/env node
// One headless Chromium for a whole `npm test` run (scripts/test.mjs starts this when a test file
// uses test/helpers/browser.ts). Prints the Playwright server's WebSocket endpoint as its first
// line; the browser tests connect to it (KEEL_TEST_BROWSER_WS, see launchChromium in
// test/helpers/browser.ts) and open their own contexts, which are cheap, instead of launching a
// browser each (~1 s of CPU apiece on this machine). Ends the browser and exits on SIGTERM/SIGINT
// or when its stdin closes (the runner went away).
//
// Its CPU (KEEL_TEST_BROWSER_CPU_FILE: "user system" seconds, written at the end) is counted here,
// not by waiting for the browser: Chromium's renderers are forked by its zygote, which the browser
// process does not reap when it exits (it ends as an orphan of init), so GNU time around this
// process saw the browser, GPU and this server but not the renderers: 105 of ~300 CPU-s. Before
// closing, this reads the whole process tree (/proc: each process's own time and that of the
// children it reaped, which holds every renderer that ended) and adds what the browser process
// and its children spent closing.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { chromiumArgs, chromiumPath } from './chromium-args.mjs';

const server = await chromium.launchServer({
  // The same browser and switches as launchChromium in test/helpers/browser.ts.
  executablePath: chromiumPath,
  args: chromiumArgs,
  // A busy machine (load 30+) can take longer than Playwright's default 30 s to start it.
  timeout: 120_000,
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
});
process.stdout.write(`${server.wsEndpoint()}\n`);

/** Says (on stderr) which features Playwright's own switch turns off that ours, the last, does not. */
function checkFeatures() {
  try {
    const argv = readFileSync(`/proc/${server.process().pid}/cmdline`, 'utf8').split('\0');
    const lists = argv.filter((a) => a.startsWith('--disable-features=')).map((a) => a.slice(19).split(','));
    const ours = new Set(lists.at(-1));
    const missing = lists
      .slice(0, -1)
      .flat()
      .filter((f) => !ours.has(f));
    if (missing.length)
      process.stderr.write(
        `note: Playwright disables ${missing.join(', ')}, which scripts/chromium-args.mjs's --disable-features lacks (Chromium reads only the last): add them\n`,
      );
  } catch {
    // Not Linux's /proc: nothing to check.
  }
}
checkFeatures();

const ticks = 100; // USER_HZ: /proc's times are in 1/100 s on Linux
/** utime, stime, cutime, cstime (s), ppid and start time of a process; undefined once reaped. */
function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields 4 (ppid), 14-17 (times) and 22 (start) of proc(5); the slice starts at field 3.
    const t = f.slice(11, 15).map((x) => Number(x) / ticks);
    return { ppid: Number(f[1]), own: t[0] + t[1], reaped: t[2] + t[3], start: f[19] };
  } catch {
    return undefined;
  }
}
/** The pids a process's threads forked (Chromium forks from several threads). */
function children(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
          .split(' ')
          .filter(Boolean)
          .map(Number);
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}
function kind(pid) {
  try {
    const type = /--type=([a-z-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1];
    return type ?? 'browser';
  } catch {
    return 'browser';
  }
}

const rootPid = server.process().pid;
/** Every process of the browser's tree seen so far: pid -> its last figures. */
const seen = new Map();
/** CPU of processes that ended and were reaped outside the tree (orphans), as last seen. */
let departed = 0;
/**
 * Reads the tree (the browser's descendants, and any seen before that now live elsewhere) and
 * returns its CPU so far: every live process's own time and its reaped children's.
 */
function sample() {
  const live = new Set();
  const queue = [rootPid, ...seen.keys()];
  while (queue.length) {
    const pid = queue.pop();
    if (live.has(pid)) continue;
    const s = stat(pid);
    const known = seen.get(pid);
    if (!s || (known && known.start !== s.start)) continue;
    live.add(pid);
    seen.set(pid, { ...s, kind: known?.kind ?? kind(pid) });
    queue.push(...children(pid));
  }
  for (const [pid, last] of seen) {
    if (live.has(pid)) continue;
    // Reaped: by a live member of the tree (its time is now in that one's `reaped`) or not.
    if (pid !== rootPid && !live.has(last.ppid)) departed += last.own + last.reaped;
    seen.delete(pid);
  }
  let total = departed;
  for (const pid of live) total += seen.get(pid).own + seen.get(pid).reaped;
  return total;
}
// Orphans are rare before the end; a sample now and then keeps one that ends early counted.
const sampler = setInterval(sample, 5_000);
sampler.unref();

/** Children's CPU this process reaped (the browser process, once it exits). */
function reapedHere() {
  return stat(process.pid)?.reaped ?? 0;
}

let closing = false;
async function close() {
  if (closing) return;
  closing = true;
  clearInterval(sampler);
  const before = reapedHere();
  const tree = sample();
  const parts = {};
  for (const s of seen.values()) parts[s.kind] = (parts[s.kind] ?? 0) + s.own;
  const zygotes = [...seen.values()].filter((s) => s.kind === 'zygote');
  await server.close().catch(() => {});
  // What the browser process and the children it reaps (all but the zygotes: the GPU process; and
  // a wrapper script's shell above it) spent closing: their figures now that the last of them was
  // reaped here, less those read before closing.
  const reapedInRoot = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, s] of seen) {
      if (reapedInRoot.has(pid) || !reapedInRoot.has(s.ppid) || s.kind === 'zygote') continue;
      reapedInRoot.add(pid);
      grew = true;
    }
  }
  const reapedByRoot = [...reapedInRoot].reduce(
    (a, pid) => a + (seen.get(pid)?.own ?? 0) + (seen.get(pid)?.reaped ?? 0),
    0,
  );
  const closingCost = Math.max(0, reapedHere() - before - reapedByRoot);
  const self = process.cpuUsage();
  const user = self.user / 1e6;
  const system = self.system / 1e6 + tree + closingCost;
  const renderersEnded = zygotes.reduce((a, s) => a + s.reaped, 0);
  const file = process.env.KEEL_TEST_BROWSER_CPU_FILE;
  // One line: the server's own user and system seconds, Chromium's (not split) in the second, and
  // third the part no process of the runner's tree reaps (the zygotes and their renderers: the
  // runner adds it to its own figure for the run's total).
  const orphaned = zygotes.reduce((a, s) => a + s.own, 0) + renderersEnded;
  if (file) writeFileSync(file, `${user.toFixed(2)} ${system.toFixed(2)} ${orphaned.toFixed(2)}\n`);
  const detail = Object.entries(parts)
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(', ');
  process.stderr.write(
    `shared Chromium CPU-s: ${(tree + closingCost).toFixed(1)} (alive at the end: ${detail}; ` +
      `ended children of the zygotes (renderers) ${renderersEnded.toFixed(1)}; closing ${closingCost.toFixed(1)}), ` +
      `its Playwright server ${(user + self.system / 1e6).toFixed(1)}\n`,
  );
  process.exit(0);
}
process.on('SIGTERM', close);
process.on('SIGINT', close);
process.stdin.on('end', close);
process.stdin.on('close', close);
process.stdin.resume();
