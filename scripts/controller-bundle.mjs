// The controller's esbuild settings shared by its bundles: the release (scripts/build-release.mjs)
// and the one `npm test` runs (scripts/test.mjs), so the tests run the controller as it ships.
import { optionalNative } from './agent-bundle.mjs';

/**
 * Packages the controller bundle leaves in node_modules: PGlite (its WebAssembly and data files
 * are found beside its module), the argon2 and lz4 N-API add-ons (platform packages), and Swagger
 * UI's static files. The release copies them into its node_modules; the tests use the checkout's.
 */
export const controllerUnbundled = ['@electric-sql/pglite', '@node-rs/argon2', 'lz4-napi', 'swagger-ui-dist'];

/** esbuild's `external` for a controller bundle: the packages above and the optional add-ons. */
export const controllerExternal = [
  ...optionalNative,
  ...controllerUnbundled,
  ...controllerUnbundled.map((d) => `${d}/*`),
];
