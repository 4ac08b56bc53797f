#!/usr/bin/env node
// keel-controller launcher: runs the built bundle when present (installed hosts), otherwise the
// TypeScript sources through tsx (a checkout of the repository).
import { existsSync } from 'node:fs';

const dist = new URL('../dist/keel-controller.mjs', import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli.ts', import.meta.url).href);
}
