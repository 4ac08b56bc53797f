// Proves every API route and every channel kind declares who may use it (a permission, public or
// signed-in), and that the role -> permission map keeps today's role checks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { createApp } from '../controller/src/app.ts';
import { createLocalBus } from '../controller/src/bus/index.ts';
import { channelKinds } from '../controller/src/channels/kinds.ts';
import type { Db } from '../controller/src/db/index.ts';
import { StandInGateway } from '../controller/src/app-fixture.ts';
import { declaredAccess } from '../controller/src/routes/permit.ts';
import { hasPermission, permissions, rolePermissions } from '../controller/src/services/access.ts';

/** The app as served, built over a database that is never queried (only routes are listed). */
function appRoutes() {
  const app = createApp({
    db: {} as Db,
    bus: createLocalBus(),
    gateway: new StandInGateway(),
    config: { publicUrl: 'http://127.0.0.1:1', joinTokenTtlSeconds: 600 },
    log: pino({ level: 'silent' }),
    controllerFingerprint: 'sha256:test',
    ready: () => true,
  });
  return app.routes;
}

test('every route of the app declares its permission', () => {
  const routes = appRoutes();
  // `use()` middleware is registered for every method (ALL); endpoints name their method.
  const endpoints = new Map<string, unknown[]>();
  for (const r of routes) {
    if (r.method === 'ALL') continue;
    const key = `${r.method} ${r.path}`;
    endpoints.set(key, [...(endpoints.get(key) ?? []), r.handler]);
  }
  assert.ok(endpoints.size >= 15, `only ${endpoints.size} endpoints found: the walk is not seeing the app`);
  const undeclared = [...endpoints]
    .filter(([, handlers]) => !handlers.some((h) => declaredAccess(h) !== undefined))
    .map(([key]) => key);
  assert.deepEqual(undeclared, [], `routes without permit(...): ${undeclared.join(', ')}`);
  // Spot checks that the walk reads the declarations it should.
  const access = (key: string) => endpoints.get(key)?.map(declaredAccess).find(Boolean);
  assert.equal(access('POST /api/v1/auth/login'), 'public');
  assert.equal(access('GET /api/v1/hosts'), 'host.view');
  assert.equal(access('POST /api/v1/hosts/:id/revoke'), 'host.manage');
  assert.equal(access('GET /api/v1/audit'), 'audit.read');
});

test('every channel kind declares a permission that exists', () => {
  assert.ok(Object.keys(channelKinds).length > 0);
  for (const [name, kind] of Object.entries(channelKinds)) {
    assert.equal(kind.kind, name);
    assert.ok((permissions as readonly string[]).includes(kind.permission), `${name}: ${kind.permission}`);
  }
  // echo is a diagnostic for admins.
  assert.equal(channelKinds.echo?.permission, 'channel.echo');
  assert.equal(hasPermission({ id: 'u', role: 'operator' }, 'channel.echo'), false);
  assert.equal(hasPermission({ id: 'u', role: 'admin' }, 'channel.echo'), true);
});

test("the role map keeps today's checks: viewers read, operators act on hosts, admins manage", () => {
  const can = (role: 'viewer' | 'operator' | 'admin' | 'owner', p: (typeof permissions)[number]) =>
    rolePermissions[role].has(p);
  assert.equal(can('viewer', 'host.view'), true);
  assert.equal(can('viewer', 'host.operate'), false);
  assert.equal(can('operator', 'host.operate'), true);
  assert.equal(can('operator', 'host.manage'), false);
  assert.equal(can('operator', 'tokens.manage'), false);
  assert.equal(can('admin', 'host.manage'), true);
  assert.equal(can('admin', 'audit.read'), true);
  for (const p of permissions) assert.equal(can('owner', p), true, p);
  // Each role holds everything the role below it holds.
  for (const [lower, higher] of [
    ['viewer', 'operator'],
    ['operator', 'admin'],
    ['admin', 'owner'],
  ] as const) {
    for (const p of rolePermissions[lower]) assert.ok(rolePermissions[higher].has(p), `${higher} lacks ${p}`);
  }
});
