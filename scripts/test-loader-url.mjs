// Where the tests' TypeScript loader is, for a test that starts a Node process of its own on
// TypeScript source (`node --import <tsLoader> …`): scripts/test-loader.mjs (esbuild's transform,
// cached by content), ~0.4 s of CPU less a start than tsx, whose cache is cold in a run. Importing
// this file does not register the loader; importing test-loader.mjs would.

/** The file URL to give `node --import` for a child that loads .ts files. */
export const tsLoader = new URL('./test-loader.mjs', import.meta.url).href;
