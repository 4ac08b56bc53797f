// Types of scripts/console-build.mjs for test/console-build.test.ts.
export function consoleSourceHash(root: string, nodeVersion?: string): string;
export function ensureConsoleBuild(
  root: string,
  options?: { build?: (root: string) => number; nodeVersion?: string },
): { built: boolean; status: number };
export function consoleBuilt(root: string): boolean;
