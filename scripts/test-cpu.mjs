// Preloaded into each test process by scripts/test.mjs: at exit, writes the process's own CPU time
// (without its children: agents, controller processes, Chromium) to KEEL_TEST_CPU_FILE, so the
// runner can tell a file's in-process work (tsx, an in-process controller, PGlite) from what it
// started.
import { writeFileSync } from 'node:fs';

const file = process.env.KEEL_TEST_CPU_FILE;
if (file) {
  // Children the test process starts must not overwrite it with their own figures.
  delete process.env.KEEL_TEST_CPU_FILE;
  process.on('exit', () => {
    try {
      writeFileSync(file, JSON.stringify(process.resourceUsage()));
    } catch {
      // The figure is a diagnostic: never fail a run for it.
    }
  });
}
