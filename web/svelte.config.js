// SvelteKit configuration: the console is a static SPA (adapter-static with an index.html
// fallback) that the controller serves on the same origin as the API.
import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
  preprocess: vitePreprocess(),
  kit: {
    adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', precompress: false }),
    // The fallback page is served for every deep link (/hosts/…), so asset URLs must be absolute.
    paths: { relative: false },
    typescript: {
      config(tsconfig) {
        tsconfig.compilerOptions.noUncheckedIndexedAccess = true;
        tsconfig.compilerOptions.allowImportingTsExtensions = true;
        return tsconfig;
      },
    },
  },
};

export default config;
