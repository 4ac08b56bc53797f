// Types of scripts/chromium-args.mjs for test/helpers/browser.ts.
export const chromiumPath: string;
export const chromiumArgs: string[];
