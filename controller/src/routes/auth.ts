// /api/v1/auth: sign in (password, a wallet's EIP-4361 message or TON ton_proof), the current session,
// sign out.
import { createRoute, z } from '@hono/zod-openapi';
import type { AuthService } from '../services/auth.ts';
import type { WalletsService } from '../services/wallets.ts';
import {
  challengeBodySchema,
  signedMessageSchema,
  tonProofSchema,
  walletChallengeSchema,
} from './wallets.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf, userSchema } from './env.ts';
import { getCookie } from 'hono/cookie';
import { KeelError } from '@keel/shared';
import {
  SESSION_COOKIE,
  clearSessionCookie,
  requireCsrfToken,
  requireSession,
  setSessionCookie,
  type CookieOptions,
} from './middleware.ts';
import { permit } from './permit.ts';

const loginBodySchema = z
  .object({
    username: z.string().min(1).max(64).openapi({ example: 'admin' }),
    password: z.string().min(1).max(1024).openapi({ format: 'password' }),
  })
  .openapi('LoginRequest');

const sessionBodySchema = z
  .object({
    user: userSchema,
    csrfToken: z.string().openapi({ description: 'Send as `x-csrf-token` on every mutating request.' }),
    stage: z.enum(['ok', 'second-factor', 'enroll']).openapi({
      description:
        '`second-factor`: send a code to POST /auth/two-factor next; `enroll`: the role must use two-factor sign-in, set it up (/two-factor/setup) before anything else.',
    }),
  })
  .openapi('Session');

const loginRoute = createRoute({
  method: 'post',
  path: '/login',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'Sign in',
  description:
    'Checks the password and sets the `keel_session` cookie (HttpOnly, SameSite=Strict). A username, existing or not, locks for 15 minutes after 5 failures (addresses the user signed in from before have their own budget); an address after 20; password checks running at once are bounded. Every refusal is 429 with Retry-After.',
  request: { body: { content: { 'application/json': { schema: loginBodySchema } }, required: true } },
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    400: errorResponse('Malformed body (`request.invalid`).'),
    401: errorResponse('Wrong username or password (`auth.invalid_credentials`).'),
    403: errorResponse('Cross-origin request (`auth.csrf`).'),
    429: {
      ...errorResponse(
        'Too many failures or attempts at once (`auth.locked`); try again after `Retry-After` seconds.',
      ),
      headers: z.object({
        'retry-after': z.string().openapi({ description: 'Seconds to wait.', example: '900' }),
      }),
    },
  },
});

const sessionRoute = createRoute({
  method: 'get',
  path: '/session',
  middleware: [permit.signingIn()] as const,
  tags: ['auth'],
  summary: 'The current session',
  security: cookieSecurity,
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    401: authErrors[401],
  },
});

const logoutRoute = createRoute({
  method: 'post',
  path: '/logout',
  middleware: [permit.signingIn()] as const,
  tags: ['auth'],
  summary: 'Sign out',
  security: cookieSecurity,
  responses: { 204: { description: 'Signed out; the cookie is cleared.' }, ...authErrors },
});

const secondFactorRoute = createRoute({
  method: 'post',
  path: '/two-factor',
  middleware: [permit.signingIn()] as const,
  tags: ['auth'],
  summary: 'Finish sign-in with a TOTP code or a recovery code',
  description:
    'After a password sign-in that answered `stage: second-factor`. Each code works once; failures count in the sign-in throttle (429 with Retry-After).',
  security: cookieSecurity,
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.union([
            z.object({ code: z.string().regex(/^\d{6}$/) }).strict(),
            z.object({ recoveryCode: z.string().min(8).max(32) }).strict(),
          ]),
        },
      },
    },
  },
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    400: errorResponse('Malformed body, or the session owes no second factor (`request.invalid`).'),
    401: errorResponse('Wrong or already used code (`auth.invalid_code`), or no session.'),
    403: authErrors[403],
    429: errorResponse('Too many failures (`auth.locked`); try again after `Retry-After` seconds.'),
  },
});

const passwordRoute = createRoute({
  method: 'post',
  path: '/password',
  middleware: [permit.signedIn()] as const,
  tags: ['auth'],
  summary: 'Change your password',
  description:
    'Checks the current password (through the sign-in throttle); every other session of yours ends.',
  security: cookieSecurity,
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              currentPassword: z.string().min(1).max(1024),
              newPassword: z.string().min(1).max(1024),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    204: { description: 'Changed.' },
    400: errorResponse('The new password breaks the policy (`user.weak_password`).'),
    401: errorResponse('The current password is wrong (`auth.invalid_credentials`).'),
    403: authErrors[403],
    429: errorResponse('Too many failures (`auth.locked`).'),
  },
});

const walletStatusRoute = createRoute({
  method: 'get',
  path: '/wallet',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'Whether wallet sign-in (EIP-4361) is on, and the chain ids it accepts',
  responses: {
    200: {
      description: 'OK.',
      content: {
        'application/json': {
          schema: z.object({ enabled: z.boolean(), chainIds: z.array(z.number().int()) }),
        },
      },
    },
  },
});

const walletChallengeRoute = createRoute({
  method: 'post',
  path: '/wallet/challenge',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'A nonce for a wallet sign-in message (5 minutes, single use)',
  request: challengeBodySchema,
  description:
    'Name your wallet address (and chain id) to get the whole message to sign in `message`; or write an EIP-4361 message with this nonce, `domain` and `uri`, one of `chainIds`, version 1 and an Issued At within the nonce lifetime; have the wallet sign it (personal_sign) and send both to POST /auth/wallet/login. Outstanding nonces are bounded per client address (429 `wallet.nonce_limit`).',
  responses: {
    200: { description: 'OK.', content: { 'application/json': { schema: walletChallengeSchema } } },
    403: errorResponse('Wallet sign-in is off (`wallet.disabled`), or a cross-origin request.'),
    429: errorResponse('Too many nonces outstanding (`wallet.nonce_limit`).'),
  },
});

const walletLoginRoute = createRoute({
  method: 'post',
  path: '/wallet/login',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'Sign in with a linked wallet',
  description:
    'Checks the message (domain, URI, chain id, times, nonce used once) and its signature, and signs in the user the wallet is linked to; like a password sign-in, a user with two-factor sign-in on then owes a code (`stage: second-factor`). Throttled like passwords: per client address and per wallet address (429 with Retry-After).',
  request: {
    body: { content: { 'application/json': { schema: signedMessageSchema.strict() } }, required: true },
  },
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    400: errorResponse('Not an EIP-4361 message (`wallet.invalid_message`).'),
    401: errorResponse(
      'Refused: `wallet.domain_mismatch`, `wallet.chain_not_allowed`, `wallet.expired`, `wallet.bad_signature`, `wallet.nonce_invalid`, `wallet.not_linked`.',
    ),
    403: errorResponse('Wallet sign-in is off (`wallet.disabled`), or a cross-origin request.'),
    429: errorResponse('Too many failures (`auth.locked`); try again after `Retry-After` seconds.'),
  },
});

const tonLoginRoute = createRoute({
  method: 'post',
  path: '/wallet/ton/login',
  middleware: [permit.public()] as const,
  tags: ['auth'],
  summary: 'Sign in with a linked TON wallet (ton_proof)',
  description:
    "Send the TON Connect ton_proof whose payload is a nonce from POST /auth/wallet/challenge, with the wallet's address, public key and StateInit. Checks the domain (this controller's host), the timestamp (within the nonce lifetime, not in the future), the StateInit against the address and key (wallet v3r2, v4r2, v5r1), the ed25519 signature and the nonce (used once); then as POST /auth/wallet/login.",
  request: {
    body: { content: { 'application/json': { schema: tonProofSchema } }, required: true },
  },
  responses: {
    200: { description: 'Signed in.', content: { 'application/json': { schema: sessionBodySchema } } },
    400: errorResponse(
      'Not a valid ton_proof (`wallet.invalid_message`) or not a known wallet contract (`wallet.unsupported_wallet`).',
    ),
    401: errorResponse(
      'Refused: `wallet.domain_mismatch`, `wallet.expired`, `wallet.address_mismatch`, `wallet.bad_signature`, `wallet.nonce_invalid`, `wallet.not_linked`.',
    ),
    403: errorResponse('Wallet sign-in is off (`wallet.disabled`), or a cross-origin request.'),
    429: errorResponse('Too many failures (`auth.locked`); try again after `Retry-After` seconds.'),
  },
});

export interface AuthRoutesDeps {
  auth: AuthService;
  cookie: CookieOptions;
  /** The password policy check (users service). */
  checkPasswordPolicy?: (password: string, username: string) => void;
  /** Wallet sign-in; without it the wallet routes answer `wallet.disabled`. */
  wallets?: WalletsService;
}

/** Sign-in routes. Login is open; the rest need a session (and logout the CSRF token). */
export function authRoutes({ auth, cookie, checkPasswordPolicy = () => undefined, wallets }: AuthRoutesDeps) {
  const app = createRouter();
  app.use('/session', requireSession(auth, cookie));
  app.use('/logout', requireSession(auth, cookie), requireCsrfToken());
  app.use('/two-factor', requireSession(auth, cookie), requireCsrfToken());
  app.use('/password', requireSession(auth, cookie), requireCsrfToken());
  return app
    .openapi(loginRoute, async (c) => {
      const { username, password } = c.req.valid('json');
      const result = await auth.login({
        username,
        password,
        ip: c.get('clientIp'),
        userAgent: c.req.header('user-agent') ?? null,
      });
      setSessionCookie(c, result.secret, result.expiresAt, cookie);
      c.header('cache-control', 'no-store');
      return c.json({ user: result.user, csrfToken: result.csrfToken, stage: result.stage ?? 'ok' }, 200);
    })
    .openapi(walletStatusRoute, async (c) => {
      return c.json(wallets ? await wallets.policy() : { enabled: false, chainIds: [] }, 200);
    })
    .openapi(walletChallengeRoute, async (c) => {
      if (!wallets) throw new KeelError('wallet.disabled');
      c.header('cache-control', 'no-store');
      const forWallet = c.req.header('content-type')?.includes('json') ? c.req.valid('json') : undefined;
      return c.json(await wallets.challenge('login', null, c.get('clientIp'), forWallet), 200);
    })
    .openapi(walletLoginRoute, async (c) => {
      const { message, signature } = c.req.valid('json');
      const result = await auth.walletLogin({
        message,
        signature,
        ip: c.get('clientIp'),
        userAgent: c.req.header('user-agent') ?? null,
      });
      setSessionCookie(c, result.secret, result.expiresAt, cookie);
      c.header('cache-control', 'no-store');
      return c.json({ user: result.user, csrfToken: result.csrfToken, stage: result.stage ?? 'ok' }, 200);
    })
    .openapi(tonLoginRoute, async (c) => {
      const result = await auth.walletLogin({
        tonProof: c.req.valid('json'),
        ip: c.get('clientIp'),
        userAgent: c.req.header('user-agent') ?? null,
      });
      setSessionCookie(c, result.secret, result.expiresAt, cookie);
      c.header('cache-control', 'no-store');
      return c.json({ user: result.user, csrfToken: result.csrfToken, stage: result.stage ?? 'ok' }, 200);
    })
    .openapi(sessionRoute, (c) => {
      const session = sessionOf(c);
      c.header('cache-control', 'no-store');
      return c.json({ user: session.user, csrfToken: session.csrfToken, stage: session.stage ?? 'ok' }, 200);
    })
    .openapi(secondFactorRoute, async (c) => {
      const session = sessionOf(c);
      await auth.completeSecondFactor(session, c.req.valid('json'), c.get('clientIp'));
      const secret = getCookie(c, SESSION_COOKIE);
      const after = await auth.authenticate(secret);
      // The cookie was set for the few minutes the second factor may take: now the full lifetime.
      if (after && secret) setSessionCookie(c, secret, after.expiresAt, cookie);
      c.header('cache-control', 'no-store');
      return c.json({ user: session.user, csrfToken: session.csrfToken, stage: after?.stage ?? 'ok' }, 200);
    })
    .openapi(passwordRoute, async (c) => {
      await auth.changePassword(sessionOf(c), c.req.valid('json'), c.get('clientIp'), checkPasswordPolicy);
      return c.body(null, 204);
    })
    .openapi(logoutRoute, async (c) => {
      const session = sessionOf(c);
      await auth.logout(session, c.get('clientIp'));
      clearSessionCookie(c, cookie);
      return c.body(null, 204);
    });
}
