// Test fixture for the HTTP app: a real PGlite database in a temp dir, the real services and
// routes, a recording stand-in for the agent gateway (the real one needs live agent sockets), and
// helpers to sign in and call the API through app.request().
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { hash as argon2Hash, type Algorithm } from '@node-rs/argon2';
import pino from 'pino';
import { KeelError } from '@keel/shared';
import { createApp, type AppDeps } from './app.ts';
import { createLocalBus, type FleetBus, type FleetEvent } from './bus/index.ts';
import { openDatabase } from './db/index.ts';
import { seedDatabase } from '../../test/helpers/database-template.ts';
import type { AgentGateway, AgentRequestMap, AgentRequestMethod } from './gateway/types.ts';
import { createHostRepository } from './repositories/hosts.ts';
import { createJoinTokenRepository } from './repositories/join-tokens.ts';
import type { UserRole } from './repositories/users.ts';
import { createServices } from './services/index.ts';

export const TEST_FINGERPRINT = 'sha256:dGVzdC1jb250cm9sbGVyLWtleS1maW5nZXJwcmludA';
export const TEST_PASSWORD = 'correct horse battery staple';

/** Stand-in for the agent gateway: records calls and answers from a script. */
export class StandInGateway implements AgentGateway {
  calls: { method: string; hostId: string }[] = [];
  disconnects: string[] = [];
  online = new Set<string>();
  answer: { [M in AgentRequestMethod]?: (hostId: string) => AgentRequestMap[M]['result'] } = {
    ping: () => ({ agentTime: 1_700_000_000_000 }),
  };
  async request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    _params: AgentRequestMap[M]['params'],
  ): Promise<AgentRequestMap[M]['result']> {
    this.calls.push({ method, hostId });
    const answer = this.answer[method] as ((hostId: string) => AgentRequestMap[M]['result']) | undefined;
    if (!answer) throw new KeelError('request.deadline_exceeded');
    return answer(hostId);
  }
  disconnect(hostId: string): boolean {
    this.disconnects.push(hostId);
    return this.online.delete(hostId);
  }
  isOnline(hostId: string): boolean {
    return this.online.has(hostId);
  }
}

/** A signed-in user: headers to send along. */
export interface SignedIn {
  cookie: string;
  csrfToken: string;
  userId: string;
}

export async function openTestApp(
  opts: { publicUrl?: string; appDeps?: Partial<AppDeps>; now?: () => Date } = {},
) {
  const dir = mkdtempSync(path.join(tmpdir(), 'keel-app-test-'));
  await seedDatabase(dir); // a copy of a migrated empty database: no initdb per test file
  const database = await openDatabase({ dataDir: dir });
  const logLines: string[] = [];
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString('utf8'));
        cb();
      },
    }),
  );
  const localBus = createLocalBus();
  const published: FleetEvent[] = [];
  localBus.subscribe((e) => published.push(e));
  // The real in-process bus, with a count of live subscriptions (the fixture's own is not counted).
  const subscriptions = { live: 0 };
  const bus: FleetBus = {
    publish: (e) => localBus.publish(e),
    subscribe(listener) {
      subscriptions.live++;
      const off = localBus.subscribe(listener);
      let done = false;
      return () => {
        if (!done) subscriptions.live--;
        done = true;
        off();
      };
    },
  };
  const gateway = new StandInGateway();
  const config = { publicUrl: opts.publicUrl ?? 'http://keel.test', joinTokenTtlSeconds: 3600 };
  const services = createServices({
    db: database.db,
    bus,
    gateway,
    log,
    config,
    controllerFingerprint: TEST_FINGERPRINT,
    now: opts.now,
    // Users' passwords as argon2id at 64 KiB and 1 pass (~1 ms) instead of the production 19 MiB
    // and 2 passes (~40 ms of CPU for each hash and each sign-in's check): these tests prove the
    // routes, not the hash's cost (services/auth.test checks that at the production parameters).
    hashPassword: (password) =>
      argon2Hash(password, { algorithm: 2 as Algorithm, memoryCost: 64, timeCost: 1, parallelism: 1 }),
  });
  let isReady = true;
  const app = createApp({
    db: database.db,
    bus,
    gateway,
    config,
    log,
    controllerFingerprint: TEST_FINGERPRINT,
    ready: () => isReady,
    services,
    ...opts.appDeps,
  });
  const origin = new URL(config.publicUrl).origin;

  /** Calls the app; `ip` becomes the socket address the app sees. */
  function request(
    urlPath: string,
    init: RequestInit & { json?: unknown; as?: SignedIn; ip?: string } = {},
  ): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      init.body = JSON.stringify(init.json);
    }
    if (init.as) {
      headers.set('cookie', init.as.cookie);
      if (!headers.has('x-csrf-token')) headers.set('x-csrf-token', init.as.csrfToken);
    }
    const env = { incoming: { socket: { remoteAddress: init.ip ?? '192.0.2.1', remotePort: 40000 } } };
    return Promise.resolve(app.request(`${origin}${urlPath}`, { ...init, headers }, env));
  }

  async function createUser(username: string, role: UserRole, password = TEST_PASSWORD) {
    return services.users.create({ username, password, role, actor: 'system' });
  }

  /**
   * Signs in with a password from `ip` (as request): the session and its stage (`second-factor`
   * while the user still owes a code, `ok` when signed in).
   */
  async function login(
    username: string,
    password = TEST_PASSWORD,
    opts: { ip?: string } = {},
  ): Promise<SignedIn & { stage: string }> {
    const res = await request('/api/v1/auth/login', {
      method: 'POST',
      json: { username, password },
      ip: opts.ip,
    });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { csrfToken: string; stage: string; user: { id: string } };
    const setCookie = res.headers.get('set-cookie') ?? '';
    return {
      cookie: setCookie.split(';')[0]!,
      csrfToken: body.csrfToken,
      userId: body.user.id,
      stage: body.stage,
    };
  }

  /** Creates a user with `role` and signs in as it. */
  async function signInAs(role: UserRole): Promise<SignedIn> {
    const username = `${role}-${Math.random().toString(36).slice(2, 8)}`;
    await createUser(username, role);
    return login(username);
  }

  /** Enrolls a host with a random key (no agent behind it) and returns its id. */
  async function enrollHost(name: string): Promise<string> {
    const { secret } = await createJoinTokenRepository(database.db).create({ ttlSeconds: 600 });
    const host = await createHostRepository(database.db).enroll({
      publicKey: randomBytes(32).toString('base64url'),
      name,
      facts: null as never,
      tokenSecret: secret,
    });
    return host.id;
  }

  return {
    app,
    db: database.db,
    services,
    bus,
    subscriptions,
    published,
    gateway,
    log,
    logLines,
    origin,
    request,
    createUser,
    login,
    signInAs,
    enrollHost,
    setReady: (v: boolean) => {
      isReady = v;
    },
    async close() {
      await database.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type TestApp = Awaited<ReturnType<typeof openTestApp>>;
