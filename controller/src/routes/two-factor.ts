// /api/v1/two-factor: your TOTP enrollment (setup with a QR code, confirm with a code: recovery
// codes are in that answer only; turn off), and which roles must use it (`users.manage`).
import { createRoute, z } from '@hono/zod-openapi';
import { KeelError } from '@keel/shared';
import type { TwoFactorService } from '../services/two-factor.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, roleSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { required: true, content: { 'application/json': { schema } } },
});
const statusSchema = z
  .object({ enabled: z.boolean(), required: z.boolean(), recoveryCodesLeft: z.number().int() })
  .openapi('TwoFactorStatus');
const code = z.string().regex(/^\d{6}$/);

const statusRoute = createRoute({
  method: 'get',
  path: '/',
  middleware: permit.signingIn(),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Your two-factor status',
  responses: { 200: json(statusSchema), ...authErrors },
});

const setupRoute = createRoute({
  method: 'post',
  path: '/setup',
  middleware: permit.signingIn(),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Start enrolling: a new secret and its QR code',
  description: 'Needs your password. Not in force until confirmed with a code.',
  request: body(z.object({ password: z.string().min(1).max(1024) }).strict()),
  responses: {
    200: json(
      z.object({
        secret: z.string().openapi({ description: 'Base32, for typing into an app by hand.' }),
        uri: z.string().openapi({ description: 'The otpauth:// URI the QR code holds.' }),
        qr: z.string().openapi({ description: 'The QR code as an SVG data URL.' }),
      }),
    ),
    400: errorResponse('Already on (`request.invalid`).'),
    401: errorResponse('Wrong password (`auth.invalid_credentials`).'),
    403: authErrors[403],
  },
});

const confirmRoute = createRoute({
  method: 'post',
  path: '/confirm',
  middleware: permit.signingIn(),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Confirm enrollment with a code; returns the recovery codes once',
  request: body(z.object({ code }).strict()),
  responses: {
    200: json(z.object({ recoveryCodes: z.array(z.string()) })),
    401: errorResponse('Wrong code (`auth.invalid_code`).'),
    403: authErrors[403],
    409: errorResponse('No enrollment started (`two_factor.not_enrolled`).'),
  },
});

const disableRoute = createRoute({
  method: 'post',
  path: '/disable',
  middleware: permit.signedIn(),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Turn two-factor sign-in off (password and a current code)',
  request: body(z.object({ password: z.string().min(1).max(1024), code }).strict()),
  responses: {
    204: { description: 'Off.' },
    401: errorResponse('Wrong password or code.'),
    403: errorResponse('Your role must use two-factor sign-in (`auth.forbidden`).'),
    409: errorResponse('It was not on (`two_factor.not_enrolled`).'),
  },
});

const recoveryCodesRoute = createRoute({
  method: 'post',
  path: '/recovery-codes',
  middleware: permit.signedIn(),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Issue a fresh set of recovery codes (the old ones stop working); shown once',
  description: 'Needs your current password or a current code from your app (exactly one).',
  request: body(
    z
      .union([z.object({ password: z.string().min(1).max(1024) }).strict(), z.object({ code }).strict()])
      .openapi('RecoveryCodesProof'),
  ),
  responses: {
    200: json(z.object({ recoveryCodes: z.array(z.string()) })),
    400: errorResponse('Neither or both of password and code (`request.invalid`).'),
    401: errorResponse('Wrong password or code.'),
    403: authErrors[403],
    409: errorResponse('Two-factor sign-in is not on (`two_factor.not_enrolled`).'),
  },
});

const getPolicyRoute = createRoute({
  method: 'get',
  path: '/policy',
  middleware: permit('users.manage'),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Roles that must use two-factor sign-in (admin)',
  responses: { 200: json(z.object({ roles: z.array(roleSchema) })), ...authErrors },
});

const setPolicyRoute = createRoute({
  method: 'put',
  path: '/policy',
  middleware: permit('users.manage'),
  tags: ['two-factor'],
  security: cookieSecurity,
  summary: 'Set the roles that must use two-factor sign-in (admin)',
  description: 'Users of these roles without 2FA can, after their password, only enroll.',
  request: body(z.object({ roles: z.array(roleSchema).max(4) }).strict()),
  responses: { 200: json(z.object({ roles: z.array(roleSchema) })), ...authErrors },
});

/** Two-factor routes (behind the session and CSRF middleware). */
export function twoFactorRoutes({ twoFactor }: { twoFactor: TwoFactorService }) {
  return createRouter()
    .openapi(statusRoute, async (c) => c.json(await twoFactor.status(sessionOf(c).user.id), 200))
    .openapi(setupRoute, async (c) => {
      c.header('cache-control', 'no-store');
      const { password } = c.req.valid('json');
      return c.json(await twoFactor.setup(sessionOf(c).user.id, password, c.get('clientIp')), 200);
    })
    .openapi(confirmRoute, async (c) => {
      c.header('cache-control', 'no-store');
      return c.json(
        await twoFactor.confirm(sessionOf(c).user.id, c.req.valid('json').code, c.get('clientIp')),
        200,
      );
    })
    .openapi(disableRoute, async (c) => {
      const user = sessionOf(c).user;
      if ((await twoFactor.requiredRoles()).includes(user.role)) {
        throw new KeelError('auth.forbidden', 'Your role must use two-factor sign-in.');
      }
      await twoFactor.disable(user.id, c.req.valid('json'), c.get('clientIp'));
      return c.body(null, 204);
    })
    .openapi(recoveryCodesRoute, async (c) => {
      c.header('cache-control', 'no-store');
      const proof = c.req.valid('json');
      return c.json(
        await twoFactor.regenerateRecoveryCodes(sessionOf(c).user.id, proof, c.get('clientIp')),
        200,
      );
    })
    .openapi(getPolicyRoute, async (c) => c.json({ roles: await twoFactor.requiredRoles() }, 200))
    .openapi(setPolicyRoute, async (c) => {
      const by = { id: sessionOf(c).user.id, ip: c.get('clientIp') };
      return c.json({ roles: await twoFactor.setRequiredRoles(by, c.req.valid('json').roles) }, 200);
    });
}
