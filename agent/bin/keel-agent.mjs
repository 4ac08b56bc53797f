#!/usr/bin/env node
// keel-agent launcher: in a checkout of the repository it runs the TypeScript sources through tsx
// (so tests and `npm start` always run what is in src/); on an installed host, where only the
// bundle from `npm run build` ships, it runs dist/keel-agent.mjs.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/keel-agent.mjs', import.meta.url).href);
}
