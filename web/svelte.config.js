// SvelteKit configuration: the console is a static SPA (adapter-static with an index.html
// fallback) that the controller serves on the same origin as the API.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

// The inline scripts of app.html (the no-flash theme script) are allowed by hash, computed here so
// editing app.html cannot silently break the Content-Security-Policy.
const appHtml = readFileSync(new URL('./src/app.html', import.meta.url), 'utf8');
const appScriptHashes = [...appHtml.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(
  (m) =>
    /** @type {const} */ (
      `sha256-${createHash('sha256')
        .update(m[1] ?? '')
        .digest('base64')}`
    ),
);

/** @type {import('@sveltejs/kit').Config} */
const config = {
  preprocess: vitePreprocess(),
  kit: {
    adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', precompress: false }),
    // The fallback page is served for every deep link (/hosts/…), so asset URLs must be absolute.
    paths: { relative: false },
    // Emitted as a <meta> CSP in index.html; Kit adds the hash of its own bootstrap script.
    // Everything is same-origin: the console must work offline, with no CDN.
    csp: {
      mode: 'hash',
      directives: {
        'default-src': ['self'],
        'script-src': ['self', ...appScriptHashes],
        'style-src': ['self', 'unsafe-inline'],
        'img-src': ['self', 'data:'],
        'font-src': ['self'],
        'connect-src': ['self'],
        'object-src': ['none'],
        'base-uri': ['self'],
        'form-action': ['self'],
      },
    },
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
