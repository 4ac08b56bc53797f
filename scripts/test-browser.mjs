#!/usr/bin/env node
// One headless Chromium for a whole `npm test` run (scripts/test.mjs starts this when a test file
// uses test/helpers/browser.ts). Prints the Playwright server's WebSocket endpoint as its first
// line; the browser tests connect to it (KEEL_TEST_BROWSER_WS, see launchChromium in
// test/helpers/browser.ts) and open their own contexts, which are cheap, instead of launching a
// browser each (~1 s of CPU apiece on this machine). Ends the browser and exits on SIGTERM/SIGINT
// or when its stdin closes (the runner went away).
import { chromium } from 'playwright-core';

const server = await chromium.launchServer({
  executablePath: process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium',
  // The same switches as launchChromium in test/helpers/browser.ts.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  // A busy machine (load 30+) can take longer than Playwright's default 30 s to start it.
  timeout: 120_000,
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
});
process.stdout.write(`${server.wsEndpoint()}\n`);

let closing = false;
async function close() {
  if (closing) return;
  closing = true;
  await server.close().catch(() => {});
  process.exit(0);
}
process.on('SIGTERM', close);
process.on('SIGINT', close);
process.stdin.on('end', close);
process.stdin.on('close', close);
process.stdin.resume();
