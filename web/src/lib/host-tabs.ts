// The tabs of the host detail page. A capability adds its tab with one entry here plus its route
// under src/routes/(app)/hosts/[id]/<path>/+page.svelte.

/** One tab: `path` is appended to /hosts/:id ('' is the Overview). */
export interface HostTab {
  id: string;
  label: string;
  path: '' | `/${string}`;
}

/** Tabs in display order. */
export const hostTabs: readonly HostTab[] = [
  { id: 'overview', label: 'Overview', path: '' },
  { id: 'processes', label: 'Processes', path: '/processes' },
  { id: 'metrics', label: 'Metrics', path: '/metrics' },
  { id: 'proxies', label: 'Proxies', path: '/proxies' },
  { id: 'terminal', label: 'Terminal', path: '/terminal' },
];

/** The tab that `pathname` belongs to: the longest matching path wins. */
export function activeHostTab(pathname: string, hostId: string): HostTab | undefined {
  const base = `/hosts/${encodeURIComponent(hostId)}`;
  const rest = pathname.startsWith(base) ? pathname.slice(base.length).replace(/\/$/, '') : null;
  if (rest === null) return undefined;
  return [...hostTabs]
    .sort((a, b) => b.path.length - a.path.length)
    .find((t) => (t.path === '' ? rest === '' : rest === t.path || rest.startsWith(`${t.path}/`)));
}
