// The start most console files on a real host share: a controller, one enrolled agent online, an
// API client signed in as the first admin, the run's Chromium, and signed-in pages (openSignedIn)
// for the tests. process-page, process-templates-console, proxies-console and
// proxy-users-console each wrote it out before.
//
//   let fleet: ConsoleFleet;
//   before(async () => {
//     fleet = await startConsoleFleet('my-host', { 'program.cjs': PROGRAM });
//   });
//   after(() => fleet?.close());
//   test('…', async () => {
//     const { context, page } = await fleet.open({ viewport: 'phone', path: `/hosts/${fleet.hostId}` });
//   });
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { ApiClient } from './api.ts';
import { launchChromium, openSignedIn, type PageOptions } from './browser.ts';
import { kill, removeDir, startFleet, tempDir, type Proc, type TestController } from './fleet.ts';

export interface ConsoleFleet {
  ctl: TestController;
  hostId: string;
  agentDir: string;
  /** Signed in as the first admin. */
  api: ApiClient;
  browser: Browser;
  /** A temporary directory holding the files given to startConsoleFleet (removed at close). */
  workDir: string;
  /** Directories removed at close (a test may add its own). */
  dirs: string[];
  /** A new context and page signed in as the first admin, at `path` (openSignedIn). */
  open(opts?: PageOptions & { path?: string }): ReturnType<typeof openSignedIn>;
  /** Closes the browser's contexts, stops the agent and the controller, removes the directories. */
  close(): Promise<void>;
}

/**
 * Starts the fixture (startFleet's controller and agent, in-process controller) with the host
 * named `name`, beside the browser's connection; `files` are written to `workDir`.
 */
export async function startConsoleFleet(
  name: string,
  files: Record<string, string> = {},
): Promise<ConsoleFleet> {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  const [started, launched] = await Promise.allSettled([
    startFleet(procs, dirs, { name, onlineMs: 60_000 }),
    launchChromium(),
  ]);
  if (started.status === 'rejected' || launched.status === 'rejected') {
    if (launched.status === 'fulfilled') await launched.value.close();
    for (const p of procs) await kill(p);
    if (started.status === 'fulfilled') await started.value.ctl.close();
    for (const d of dirs) removeDir(d);
    throw started.status === 'rejected' ? started.reason : (launched as PromiseRejectedResult).reason;
  }
  const { ctl, hostId, agentDir } = started.value;
  const browser = launched.value;
  const workDir = tempDir('keel-console-fleet-');
  dirs.push(workDir);
  mkdirSync(workDir, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(workDir, file), content);
  const api = new ApiClient(ctl.url);
  const admin = ctl.firstAdmin!;
  await api.login(admin.username, admin.password);
  return {
    ctl,
    hostId,
    agentDir,
    api,
    browser,
    workDir,
    dirs,
    open: (opts = {}) => openSignedIn(browser, ctl.url, admin, opts),
    async close() {
      await browser.close();
      // SIGTERM: the agent stops the proxies it applied; removeDir ends what it still supervises.
      for (const p of procs) await kill(p, 'SIGTERM');
      await ctl.close();
      for (const d of dirs) removeDir(d);
    },
  };
}
