#!/usr/bin/env node
// `npm start`: builds the console on first run, then runs the controller on its embedded
// defaults (PGlite in ./data) with a local agent for this host.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { consoleBuilt, ensureConsoleBuild } from './console-build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!consoleBuilt(root)) {
  console.log('Building the console (first start only)…');
  // Through scripts/console-build.mjs, which stamps the build with its inputs' hash: `npm test`
  // then reuses it instead of building it again.
  const { status } = ensureConsoleBuild(root);
  if (status !== 0) process.exit(status);
}
// The glibc malloc variables the controller's systemd unit sets (one source: the unit), unless
// the environment sets them already.
const mallocEnv = {};
const unit = readFileSync(`${root}systemd/keel-controller.service`, 'utf8');
for (const [, line] of unit.matchAll(/^Environment=(MALLOC_.*)$/gm)) {
  for (const kv of line.split(/\s+/).filter(Boolean))
    mallocEnv[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
}
const child = spawn(
  process.execPath,
  [`${root}controller/bin/keel-controller.mjs`, 'serve', '--local-agent'],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...mallocEnv, ...process.env },
  },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
