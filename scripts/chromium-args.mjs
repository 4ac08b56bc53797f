// How the tests start Chromium, in one place for the run's shared browser (scripts/test-browser.mjs)
// and a test process's own (launchChromium in test/helpers/browser.ts).

/**
 * Chromium from the Debian package (`/usr/bin/chromium` in headless mode), the browser the console
 * is tested in; override with KEEL_CHROMIUM (e.g. Debian's `chromium-headless-shell` for a quicker
 * local run: docs/testing.md).
 */
export const chromiumPath = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Features Playwright turns off (its chromiumSwitches.ts, playwright-core 1.65): Chromium reads
 * only the last --disable-features switch, so ours must repeat them. scripts/test-browser.mjs says
 * at start when an upgrade of Playwright changed its list.
 */
const playwrightDisabled = [
  'AvoidUnnecessaryBeforeUnloadCheckSync',
  'DestroyProfileOnBrowserClose',
  'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable',
  'LensOverlay',
  'MediaRouter',
  'PaintHolding',
  'ThirdPartyStoragePartitioning',
  'AvoidCorsURLLoaderRestartOnRedirect',
  'TcpPortRandomizationWin',
  'OptimizationHints',
  'NetworkTimeServiceQuerying',
  'AimEnabled',
  'PreconnectToSearch',
  'msForceBrowserSignIn',
  'msEdgeUpdateLaunchServicesPreferredVersion',
];
/**
 * The full browser's omnibox popup (browser UI, never part of a page): Chromium 156 opens it as
 * two WebUI documents in a renderer of their own for every window, so every Playwright context;
 * ~0.5 CPU-s each (30 Nov, docs/testing.md). The page under test is unchanged.
 */
const ourDisabled = ['WebUIOmniboxPopup', 'WebUIOmniboxAimPopup'];

/** The switches: the handbook's four, and the features above off. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  `--disable-features=${[...playwrightDisabled, ...ourDisabled].join(',')}`,
];
