// Every console page needs a session: fetch it once when entering the app, or go to /login.
import { error, redirect } from '@sveltejs/kit';
import { api, ApiError } from '$lib/api.ts';
import { session } from '$lib/session.svelte.ts';
import type { LayoutLoad } from './$types';

export const load: LayoutLoad = async ({ url, untrack }) => {
  try {
    const info = await api.session();
    session.set(info);
    return { user: info.user };
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const here = untrack(() => url.pathname + url.search);
      redirect(307, here === '/' ? '/login' : `/login?next=${encodeURIComponent(here)}`);
    }
    const message = err instanceof ApiError ? err.message : 'Cannot load the session.';
    error(err instanceof ApiError && err.status >= 400 ? err.status : 503, message);
  }
};
