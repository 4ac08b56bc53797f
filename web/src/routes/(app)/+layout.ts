// Every console page needs a session: fetch it once when entering the app, or go to /login (also
// when the session still owes its second factor), or to enrolling 2FA when the role requires it.
import { error, redirect } from '@sveltejs/kit';
import { api, ApiError } from '$lib/api.ts';
import { session } from '$lib/session.svelte.ts';
import type { LayoutLoad } from './$types';

export const load: LayoutLoad = async ({ url, untrack }) => {
  let info: Awaited<ReturnType<typeof api.session>>;
  try {
    info = await api.session();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const here = untrack(() => url.pathname + url.search);
      redirect(307, here === '/' ? '/login' : `/login?next=${encodeURIComponent(here)}`);
    }
    const message = err instanceof ApiError ? err.message : 'Cannot load the session.';
    error(err instanceof ApiError && err.status >= 400 ? err.status : 503, message);
  }
  session.set(info);
  // A sign-in that still owes its second factor finishes on /login; a user whose role must use
  // two-factor sign-in enrolls first (the API refuses everything else until then).
  if (info.stage === 'second-factor') redirect(307, '/login');
  if (info.stage === 'enroll' && untrack(() => url.pathname) !== '/settings/account') {
    redirect(307, '/settings/account');
  }
  return { user: info.user };
};
