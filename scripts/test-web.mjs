#!/usr/bin/env node
// The console build for a test run (scripts/test.mjs): builds web/build unless it was already built
// from the same inputs (scripts/console-build.mjs: a stamp in node_modules/.cache/keel-test with a
// SHA-256 of web/ but its outputs, shared/src, package-lock.json and the Node version, and the
// modification time of the index.html that build wrote). `npm start` writes the same stamp when it
// builds, so a test run after it reuses that build.
//
// The runner calls it under `flock` on one lock file, so runs on one machine build one at a time:
// two builds at once write the same .svelte-kit/ and web/build/ and broke each other (30 Nov), and
// a run that starts beside another whose console is current finds the stamp and leaves the build
// that the other run's controllers are serving alone. A clean clone has no stamp and builds.
import { fileURLToPath } from 'node:url';
import { ensureConsoleBuild } from './console-build.mjs';

const { built, status } = ensureConsoleBuild(fileURLToPath(new URL('..', import.meta.url)));
if (!built) console.log('note: the console build is current (built from these inputs); not rebuilt');
if (status !== 0) process.exit(status);
