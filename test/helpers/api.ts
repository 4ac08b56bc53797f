// A minimal REST client for tests: signs in like the console does (session cookie + CSRF header).
import type { UserRole } from '../../controller/src/db/schema/users.ts';
import type { Controller } from '../../controller/src/server.ts';

export class ApiClient {
  #cookie = '';
  #csrf = '';
  constructor(readonly baseUrl: string) {}

  /** A client signed in at `baseUrl` as `who` (another replica's first admin, say). */
  static async signIn(baseUrl: string, who: { username: string; password: string }): Promise<ApiClient> {
    const api = new ApiClient(baseUrl);
    await api.login(who.username, who.password);
    return api;
  }

  /**
   * Makes a user through this client's session (POST /users, with the password given or the one the
   * controller generates) and signs in as it: the new user's client and id.
   */
  async newUser(user: {
    username: string;
    role: UserRole;
    password?: string;
    scoped?: boolean;
  }): Promise<{ api: ApiClient; id: string }> {
    const made = await this.post<{ user: { id: string }; password: string | null }>('/users', user);
    if (made.status !== 201)
      throw new Error(`user ${user.username}: ${made.status} ${JSON.stringify(made.body)}`);
    const password = user.password ?? made.body.password ?? '';
    return {
      api: await ApiClient.signIn(this.baseUrl, { username: user.username, password }),
      id: made.body.user.id,
    };
  }

  async login(username: string, password: string): Promise<void> {
    const res = await fetch(`${this.baseUrl}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: this.baseUrl },
      body: JSON.stringify({ username, password }),
    });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
    const setCookie = res.headers.get('set-cookie') ?? '';
    this.#cookie = setCookie.split(';')[0] ?? '';
    this.#csrf = ((await res.json()) as { csrfToken: string }).csrfToken;
  }

  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { cookie: this.#cookie, origin: this.baseUrl };
    if (method !== 'GET') headers['x-csrf-token'] = this.#csrf;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  }

  /** A GET whose answer is not JSON (downloads, event streams): the raw Response. */
  fetchRaw(
    path: string,
    init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    return fetch(`${this.baseUrl}/api/v1${path}`, {
      headers: { cookie: this.#cookie, origin: this.baseUrl, ...init.headers },
      signal: init.signal,
    });
  }

  get<T = unknown>(path: string) {
    return this.request<T>('GET', path);
  }

  post<T = unknown>(path: string, body: unknown = {}) {
    return this.request<T>('POST', path, body);
  }
}

/** Reads the first admin's credentials from the controller's start-up banner. */
export function firstAdminFrom(output: string): { username: string; password: string } | null {
  const user = /First admin: (\S+)/.exec(output);
  const pass = /Password:\s+(\S+)/.exec(output);
  return user && pass ? { username: user[1]!, password: pass[1]! } : null;
}

/**
 * A client signed in on a controller of this process: as a user it creates first (as the system,
 * so with any role), or without one as the controller's first admin.
 * @example const api = await signedInApi(ctl, { username: 'ops', password: 'ops password 1', role: 'admin' });
 */
export async function signedInApi(
  ctl: Pick<Controller, 'url' | 'services' | 'firstAdmin'>,
  user?: { username: string; password: string; role: UserRole },
): Promise<ApiClient> {
  if (user) await ctl.services.users.create({ ...user, actor: 'system' });
  const who = user ?? ctl.firstAdmin;
  if (!who) throw new Error('no first admin to sign in as: the controller did not start on a new database');
  return ApiClient.signIn(ctl.url, who);
}
