// /api/v1/wallets: your linked wallets (Ethereum EIP-4361 sign-in, TON ton_proof): a nonce to
// sign, link (password and a signed message or proof), unlink; an admin's view of a user's wallets and the policy (on/off, chain
// ids). Sign-in itself is under /auth/wallet (auth.ts).
import { createRoute, z } from '@hono/zod-openapi';
import type { AuthService } from '../services/auth.ts';
import type { WalletsService } from '../services/wallets.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { required: true, content: { 'application/json': { schema } } },
});

export const walletViewSchema = z
  .object({
    kind: z.enum(['ethereum', 'ton']),
    address: z.string().openapi({
      description:
        'Ethereum: lower case, `0x` + 40 hex digits. TON: raw form, `<workchain>:<64 hex digits>` in lower case.',
    }),
    chainId: z
      .number()
      .int()
      .openapi({ description: 'Ethereum: the chain id signed. TON: -239 (mainnet) or -3 (testnet).' }),
    createdAt: z.iso.datetime(),
    lastUsedAt: z.iso.datetime().nullable(),
  })
  .openapi('Wallet');

export const walletChallengeSchema = z
  .object({
    nonce: z.string(),
    domain: z.string().openapi({ description: 'What the message must name as its domain.' }),
    uri: z.string().openapi({ description: 'What the message must name as its URI.' }),
    version: z.literal('1'),
    chainIds: z.array(z.number().int()).openapi({ description: 'Chain ids accepted.' }),
    statement: z.string().openapi({ description: 'A statement to put in the message (optional).' }),
    issuedAt: z.iso.datetime(),
    expiresAt: z.iso.datetime().openapi({ description: 'The nonce is refused after this.' }),
    message: z
      .string()
      .optional()
      .openapi({ description: 'The whole message, ready to sign, when the request named an address.' }),
  })
  .openapi('WalletChallenge');

/** Optional: the wallet's address (and chain), to get the message written for it. */
export const challengeBodySchema = {
  body: {
    required: false,
    content: {
      'application/json': {
        schema: z
          .object({
            address: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
            chainId: z.number().int().positive().optional(),
          })
          .strict()
          .openapi('WalletChallengeRequest'),
      },
    },
  },
};

export const signedMessageSchema = z.object({
  message: z.string().min(1).max(8192).openapi({ description: 'The EIP-4361 message text, as signed.' }),
  signature: z
    .string()
    .regex(/^0x[0-9a-fA-F]{130}$/)
    .openapi({ description: 'The personal_sign signature (65 bytes, hex).' }),
});

/** A TON Connect ton_proof with the account fields it needs (docs/security.md, Wallet sign-in). */
export const tonProofSchema = z
  .object({
    address: z
      .string()
      .min(1)
      .max(100)
      .openapi({ description: 'Raw (`0:<64 hex>`) or user-friendly (base64/base64url, checksum checked).' }),
    network: z
      .enum(['-239', '-3'])
      .optional()
      .openapi({ description: "TON Connect's `account.chain` (default -239, mainnet). Not signed." }),
    publicKey: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/)
      .openapi({ description: "The wallet's ed25519 public key, hex (`account.publicKey`)." }),
    proof: z
      .object({
        timestamp: z.number().int().nonnegative().openapi({ description: 'Seconds since the epoch.' }),
        domain: z
          .object({
            lengthBytes: z.number().int().nonnegative().optional(),
            value: z.string().min(1).max(253),
          })
          .strict(),
        payload: z.string().min(1).max(128).openapi({ description: 'The nonce handed out.' }),
        signature: z.string().min(1).max(200).openapi({ description: 'base64, 64 bytes.' }),
        stateInit: z
          .string()
          .min(1)
          .max(16_384)
          .openapi({ description: "The wallet's StateInit, base64 BOC (`account.walletStateInit`)." }),
      })
      .strict(),
  })
  .strict()
  .openapi('TonProof');

const policySchema = z
  .object({ enabled: z.boolean(), chainIds: z.array(z.number().int().positive()).min(1).max(16) })
  .openapi('WalletPolicy');
const addressParam = z
  .string()
  .regex(/^(0x[0-9a-fA-F]{40}|-?[0-9]{1,3}:[0-9a-fA-F]{64})$/)
  .openapi({ param: { name: 'address', in: 'path' } });
const userIdParam = z.uuid().openapi({ param: { name: 'userId', in: 'path' } });

const walletErrors = {
  400: errorResponse('Not an EIP-4361 message (`wallet.invalid_message`) or a malformed body.'),
  401: errorResponse(
    'Wrong password (`auth.invalid_credentials`), or the message was refused: `wallet.domain_mismatch`, `wallet.chain_not_allowed`, `wallet.expired`, `wallet.bad_signature`, `wallet.nonce_invalid`.',
  ),
  403: errorResponse('Wallet sign-in is off (`wallet.disabled`), or not allowed.'),
};

const listRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: permit.signedIn(),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Your linked wallets',
  responses: { 200: json(z.object({ wallets: z.array(walletViewSchema) })), ...authErrors },
});

const challengeRoute = createRoute({
  method: 'post',
  path: '/challenge',
  middleware: permit.signedIn(),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'A nonce for linking a wallet (yours only, 5 minutes, single use)',
  request: challengeBodySchema,
  responses: {
    200: json(walletChallengeSchema),
    ...authErrors,
    403: errorResponse('Wallet sign-in is off (`wallet.disabled`).'),
    429: errorResponse('Too many nonces outstanding (`wallet.nonce_limit`).'),
  },
});

const linkRoute = createRoute({
  method: 'post',
  path: '/',
  middleware: permit.signedIn(),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Link a wallet: your password and a message it signed with a linking nonce',
  request: body(signedMessageSchema.extend({ password: z.string().min(1).max(1024) }).strict()),
  responses: {
    201: json(walletViewSchema, 'Linked.'),
    ...walletErrors,
    409: errorResponse('The wallet is linked already (`wallet.linked`).'),
    429: errorResponse('Too many wrong passwords (`auth.locked`).'),
  },
});

const linkTonRoute = createRoute({
  method: 'post',
  path: '/ton',
  middleware: permit.signedIn(),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Link a TON wallet: your password and a ton_proof whose payload is a linking nonce',
  request: body(tonProofSchema.extend({ password: z.string().min(1).max(1024) }).strict()),
  responses: {
    201: json(walletViewSchema, 'Linked.'),
    400: errorResponse(
      'Not a valid ton_proof (`wallet.invalid_message`), not a known wallet contract (`wallet.unsupported_wallet`), or a malformed body.',
    ),
    401: errorResponse(
      'Wrong password (`auth.invalid_credentials`), or the proof was refused: `wallet.domain_mismatch`, `wallet.expired`, `wallet.address_mismatch`, `wallet.bad_signature`, `wallet.nonce_invalid`.',
    ),
    403: walletErrors[403],
    409: errorResponse('The wallet is linked already (`wallet.linked`).'),
    429: errorResponse('Too many wrong passwords (`auth.locked`).'),
  },
});

const unlinkRoute = createRoute({
  method: 'delete',
  path: '/{address}',
  middleware: permit.signedIn(),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Unlink one of your wallets',
  request: { params: z.object({ address: addressParam }) },
  responses: {
    204: { description: 'Unlinked.' },
    ...authErrors,
    404: errorResponse('Not one of yours (`wallet.not_found`).'),
  },
});

const userListRoute = createRoute({
  method: 'get',
  path: '/users/{userId}',
  middleware: permit('users.manage'),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: "A user's linked wallets (admin)",
  request: { params: z.object({ userId: userIdParam }) },
  responses: { 200: json(z.object({ wallets: z.array(walletViewSchema) })), ...authErrors },
});

const userUnlinkRoute = createRoute({
  method: 'delete',
  path: '/users/{userId}/{address}',
  middleware: permit('users.manage'),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: "Unlink a user's wallet (admin)",
  request: { params: z.object({ userId: userIdParam, address: addressParam }) },
  responses: {
    204: { description: 'Unlinked.' },
    ...authErrors,
    404: errorResponse('No such wallet for this user (`wallet.not_found`).'),
  },
});

const getPolicyRoute = createRoute({
  method: 'get',
  path: '/policy',
  middleware: permit('users.manage'),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Wallet sign-in policy (admin)',
  responses: { 200: json(policySchema), ...authErrors },
});

const setPolicyRoute = createRoute({
  method: 'put',
  path: '/policy',
  middleware: permit('users.manage'),
  tags: ['wallets'],
  security: cookieSecurity,
  summary: 'Turn wallet sign-in on or off and set the accepted chain ids (admin)',
  request: body(policySchema.strict()),
  responses: { 200: json(policySchema), ...authErrors },
});

/** Wallet routes (behind the session and CSRF middleware). */
export function walletRoutes({ wallets, auth }: { wallets: WalletsService; auth: AuthService }) {
  return createRouter()
    .openapi(listRoute, async (c) => c.json({ wallets: await wallets.list(sessionOf(c).user.id) }, 200))
    .openapi(challengeRoute, async (c) => {
      const { user } = sessionOf(c);
      c.header('cache-control', 'no-store');
      const forWallet = c.req.header('content-type')?.includes('json') ? c.req.valid('json') : undefined;
      return c.json(await wallets.challenge('link', user, c.get('clientIp'), forWallet), 200);
    })
    .openapi(linkRoute, async (c) => {
      const session = sessionOf(c);
      const input = c.req.valid('json');
      await auth.confirmPassword(session, input.password);
      return c.json(
        await wallets.link(session.user.id, input.message, input.signature, c.get('clientIp')),
        201,
      );
    })
    .openapi(linkTonRoute, async (c) => {
      const session = sessionOf(c);
      const { password, ...proof } = c.req.valid('json');
      await auth.confirmPassword(session, password);
      return c.json(await wallets.linkTon(session.user.id, proof, c.get('clientIp')), 201);
    })
    .openapi(getPolicyRoute, async (c) => c.json(await wallets.policy(), 200))
    .openapi(setPolicyRoute, async (c) => {
      const by = { id: sessionOf(c).user.id, ip: c.get('clientIp') };
      return c.json(await wallets.setPolicy(by, c.req.valid('json')), 200);
    })
    .openapi(userListRoute, async (c) =>
      c.json({ wallets: await wallets.list(c.req.valid('param').userId) }, 200),
    )
    .openapi(userUnlinkRoute, async (c) => {
      const { userId, address } = c.req.valid('param');
      await wallets.unlink({ id: sessionOf(c).user.id, ip: c.get('clientIp') }, userId, address);
      return c.body(null, 204);
    })
    .openapi(unlinkRoute, async (c) => {
      const { user } = sessionOf(c);
      await wallets.unlink({ id: user.id, ip: c.get('clientIp') }, user.id, c.req.valid('param').address);
      return c.body(null, 204);
    });
}
