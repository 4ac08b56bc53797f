// The console is a static single-page app: no server rendering, no prerendering; the controller
// serves build/index.html for every console path.
export const ssr = false;
export const prerender = false;
