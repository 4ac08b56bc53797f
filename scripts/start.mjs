#!/usr/bin/env node
// `npm start`: builds the console on first run, then runs the controller on its embedded
// defaults (PGlite in ./data) with a local agent for this host.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { consoleBuilt, ensureConsoleBuild } from './console-build.mjs';
import { unitMallocEnv } from './unit-env.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!consoleBuilt(root)) {
  console.log('Building the console (first start only)…');
  // Through scripts/console-build.mjs, which stamps the build with its inputs' hash: `npm test`
  // then reuses it instead of building it again.
  const { status } = ensureConsoleBuild(root);
  if (status !== 0) process.exit(status);
}
// The glibc malloc variables the controller's systemd unit sets, unless the environment sets them.
const mallocEnv = unitMallocEnv('keel-controller.service');
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
