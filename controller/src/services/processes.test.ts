// Proves the processes service's rules without a database: an agent that predates the supervisor
// still lists the stored definitions, each stdin line is audited with its text, an applied spec's
// env values stay out of the audit, and a viewer is refused before anything reaches the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeelError, processSpecSchema } from '@keel/shared';
import type { AgentGateway } from '../gateway/types.ts';
import type { HostRepository } from '../repositories/hosts.ts';
import type { ProcessRepository } from '../repositories/processes.ts';
import type { AuditService } from './audit.ts';
import { createProcessesService, type ProcessActor } from './processes.ts';

const hostId = '0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33';
const spec = processSpecSchema.parse({
  name: 'web',
  argv: ['srv', '--port', '80'],
  env: { TOKEN: 's3cret' },
});
const row = { id: 'r1', hostId, name: 'web', spec, createdAt: new Date(0), updatedAt: new Date(0) };

function setup(request: (method: string, params: unknown) => unknown) {
  const audits: { action: string; detail: Record<string, unknown> }[] = [];
  const calls: string[] = [];
  const service = createProcessesService({
    hosts: { get: () => Promise.resolve({ id: hostId, revokedAt: null }) } as unknown as HostRepository,
    processes: {
      list: () => Promise.resolve([row]),
      upsert: () => Promise.resolve(row),
    } as unknown as ProcessRepository,
    gateway: {
      isOnline: () => true,
      request: (_id: string, method: string, params: unknown) => {
        calls.push(method);
        return Promise.resolve().then(() => request(method, params));
      },
    } as unknown as AgentGateway,
    audit: {
      record: (_actor: string, action: string, _target: string, detail: Record<string, unknown>) => {
        audits.push({ action, detail });
        return Promise.resolve();
      },
    } as unknown as AuditService,
  });
  return { service, audits, calls };
}

const operator = { id: 'u1', role: 'operator', ip: null } as unknown as ProcessActor;
const viewer = { id: 'u2', role: 'viewer', ip: null } as unknown as ProcessActor;

test('an agent without the supervisor: the stored definitions are listed without live state', async () => {
  const { service } = setup(() => {
    throw new KeelError('agent.unsupported', 'upgrade');
  });
  const list = await service.list(operator, hostId);
  assert.deepEqual(
    list.map((p) => [p.name, p.status]),
    [['web', null]],
  );
});

test('stdin lines are audited with their text; env values are not', async () => {
  const status = {
    name: 'web',
    state: 'running',
    desired: 'running',
    pid: 10,
    startedAt: 1,
    exitCode: null,
    exitSignal: null,
    restarts: 0,
    nextRestartAt: null,
    cpuPercent: null,
    rssBytes: null,
    adopted: false,
    spec,
  };
  const { service, audits } = setup((method) =>
    method === 'process.stdin' ? { bytes: 4 } : { process: status },
  );
  await service.stdin(operator, hostId, 'web', 'say hi');
  await service.apply(operator, hostId, spec);
  assert.deepEqual(audits[0], { action: 'process.stdin', detail: { process: 'web', line: 'say hi' } });
  assert.equal(audits[1]!.action, 'process.apply');
  assert.deepEqual(audits[1]!.detail.envKeys, ['TOKEN']);
  assert.ok(!JSON.stringify(audits[1]).includes('s3cret'), 'env values stay out of the audit');
});

test('a viewer is refused before anything reaches the agent', async () => {
  const { service, calls, audits } = setup(() => ({ bytes: 1 }));
  await assert.rejects(service.stdin(viewer, hostId, 'web', 'x'), { code: 'auth.forbidden' });
  await assert.rejects(service.stop(viewer, hostId, 'web'), { code: 'auth.forbidden' });
  assert.deepEqual(calls, []);
  assert.deepEqual(audits, []);
});
