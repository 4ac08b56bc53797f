// The TypeScript loader of `npm test`'s processes (`node --import ./scripts/test-loader.mjs`), in
// place of tsx, which costs ~1.2 s of CPU at every process start here even with its cache warm
// (a resolve and a load round trip through its worker for each of ~1,000 modules, source maps
// rebuilt at every load): the suite starts ~80 test processes. This one only loads: every import
// in the repository names its file (`./x.ts`, `@keel/shared` through its package exports), so
// Node's own resolution finds it, and a .ts file is turned into JavaScript by esbuild with the
// repository's compiler options (types stripped, imports kept as written), cached on disk by
// content. Everything else goes to Node unchanged. `KEEL_TEST_LOADER=tsx` uses tsx instead.
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./test-loader-hooks.mjs', import.meta.url);
