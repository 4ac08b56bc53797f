// Vite configuration. In `vite dev` the API is proxied to a running controller
// (KEEL_CONTROLLER_URL, default http://127.0.0.1:8080) so the console stays same-origin.
import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

const controller = process.env.KEEL_CONTROLLER_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [sveltekit()],
  server: {
    proxy: {
      '/api': { target: controller, changeOrigin: false },
    },
  },
});
