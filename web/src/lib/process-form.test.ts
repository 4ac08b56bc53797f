// Proves the process form keeps what it does not show: editing a spec with files, a run-as user,
// restart backoff, a health check and limits changes only the edited fields; health checks and
// limits round-trip through the form; a form that cannot be a spec says why; its stop signals are
// exactly the protocol's (the console does not import shared/ at run time, so the list is kept twice).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stopSignals } from '@keel/shared';
import {
  defaultProcessName,
  formFromSpec,
  FormError,
  healthLabel,
  limitsLabel,
  specFromForm,
  stateLabel,
  fleetStateLabel,
  STOP_SIGNALS,
  type SpecLike,
} from './process-form.ts';

test('the form offers exactly the stop signals the protocol accepts, in its order', () => {
  assert.deepEqual([...STOP_SIGNALS], [...stopSignals]);
});

const full: SpecLike = {
  name: 'mc',
  argv: ['java', '-jar', 'server.jar'],
  cwd: '/srv/mc',
  env: { EULA: 'true' },
  user: 'minecraft',
  restart: { policy: 'always', backoffMs: 2_000, maxBackoffMs: 60_000, maxRestarts: 9, windowSeconds: 300 },
  stop: { signal: 'SIGTERM', stdinLine: 'stop', graceMs: 30_000 },
  autostart: true,
  files: [{ path: 'eula.txt', content: 'eula=true\n', mode: 0o644 }],
  health: { type: 'output', match: 'Done (', regex: false, stream: 'both', startTimeoutSeconds: 300 },
  limits: { memoryBytes: 2 * 1024 * 1024 * 1024, cpuPercent: 150 },
  somethingNewer: { kept: true },
};

test('an edit keeps the fields the form does not show', () => {
  const form = formFromSpec(full);
  assert.equal(form.isNew, false);
  form.argv = 'java\n-Xmx2G\n-jar\nserver.jar';
  form.policy = 'on-failure';
  const spec = specFromForm(form, full);
  assert.deepEqual(spec.argv, ['java', '-Xmx2G', '-jar', 'server.jar']);
  assert.deepEqual(spec.restart, { ...full.restart, policy: 'on-failure' });
  assert.equal(spec.user, 'minecraft');
  assert.deepEqual(spec.files, full.files);
  assert.deepEqual(spec.health, full.health);
  assert.deepEqual(spec.limits, full.limits);
  assert.deepEqual(spec.somethingNewer, { kept: true });
  assert.deepEqual(spec.stop, full.stop);
  // Unchanged form: the same spec.
  assert.deepEqual(specFromForm(formFromSpec(full), full), full);
});

test('health checks and limits round-trip; clearing them removes them', () => {
  for (const health of [
    {
      type: 'tcp',
      host: '10.0.0.2',
      port: 25565,
      intervalMs: 500,
      timeoutMs: 300,
      failures: 4,
      startTimeoutSeconds: 60,
    },
    { type: 'http', url: 'http://127.0.0.1:8080/health', intervalMs: 1000 },
    { type: 'output', match: '^Done \\(', regex: true, stream: 'stdout' },
  ] as const) {
    const base = { name: 'x', argv: ['x'], health };
    const spec = specFromForm(formFromSpec(base), base);
    assert.deepEqual(spec.health, normal(health));
  }
  const form = formFromSpec(full);
  form.healthType = 'none';
  form.memoryMiB = null;
  form.cpuPercent = Number.NaN;
  const cleared = specFromForm(form, full);
  assert.equal('health' in cleared, false);
  assert.equal('limits' in cleared, false);
  form.memoryMiB = 256;
  assert.deepEqual(specFromForm(form, full).limits, { memoryBytes: 256 * 1024 * 1024 });
});

/** A health check as the form gives it back (the output check's defaults filled in). */
function normal(h: Record<string, unknown>) {
  return h.type === 'output' ? { regex: false, stream: 'both', ...h } : h;
}

test('a new process: defaults; missing parts of a check are told', () => {
  const form = formFromSpec(null);
  assert.equal(form.isNew, true);
  form.name = ' web ';
  form.argv = 'nginx\n-g\ndaemon off;';
  form.env = 'A=1\nB=x=y';
  form.cwd = '/srv';
  const spec = specFromForm(form, null);
  assert.deepEqual(spec, {
    name: 'web',
    argv: ['nginx', '-g', 'daemon off;'],
    env: { A: '1', B: 'x=y' },
    restart: { policy: 'on-failure' },
    stop: { signal: 'SIGTERM', graceMs: 10_000 },
    autostart: true,
    cwd: '/srv',
  });
  form.healthType = 'tcp';
  assert.throws(() => specFromForm(form, null), FormError);
  form.healthType = 'http';
  assert.throws(() => specFromForm(form, null), /needs a URL/);
  form.healthType = 'none';
  form.env = 'no equals sign';
  assert.throws(() => specFromForm(form, null), /not KEY=value/);
});

test('labels: state, health with its last error, limits applied or not with the reason', () => {
  assert.equal(stateLabel(null), 'unknown');
  assert.equal(stateLabel({ state: 'exited', exitCode: 3, exitSignal: null }), 'exited (3)');
  assert.equal(stateLabel({ state: 'exited', exitCode: null, exitSignal: 'SIGKILL' }), 'exited (SIGKILL)');
  // The fleet page says the exit code too (it said a bare "exited"), or that the host is offline.
  assert.equal(fleetStateLabel({ state: 'exited', exitCode: 3, exitSignal: null }, true), 'exited (3)');
  assert.equal(fleetStateLabel(null, false), 'host offline');
  assert.equal(fleetStateLabel(null, true), 'unknown');
  const status = {
    state: 'running',
    exitCode: null,
    exitSignal: null,
    health: { status: 'unhealthy' as const, failures: 3, lastError: 'connect ECONNREFUSED' },
    limits: { applied: false, message: 'cgroup v2 controllers are not delegated', oomKills: null },
  };
  assert.deepEqual(healthLabel(full, status), {
    status: 'unhealthy',
    text: 'unhealthy (output line “Done (”)',
    error: 'connect ECONNREFUSED',
  });
  assert.equal(healthLabel({ name: 'x', argv: ['x'] }, status), null);
  assert.deepEqual(limitsLabel(full, status), {
    set: '2 GiB, 150 % CPU',
    applied: false,
    message: 'cgroup v2 controllers are not delegated',
    oomKills: 0,
  });
  assert.equal(limitsLabel(full, null)?.applied, null);
  // The agent's own "limits not applied: " prefix is not said twice beside the console's "not applied".
  const agentSaid = { ...status, limits: { ...status.limits, message: 'limits not applied: no cgroup v2' } };
  assert.equal(limitsLabel(full, agentSaid)?.message, 'no cgroup v2');
});

test('a process made from a template starts with its id as a name, unique on the host', () => {
  assert.equal(defaultProcessName('minecraft-java', []), 'minecraft-java');
  assert.equal(defaultProcessName('minecraft-java', ['minecraft-java']), 'minecraft-java-2');
  assert.equal(
    defaultProcessName('minecraft-java', ['minecraft-java', 'minecraft-java-2']),
    'minecraft-java-3',
  );
  // An imported egg's id in any spelling still makes a valid name.
  assert.equal(defaultProcessName('Egg: Paper 1.20!', []), 'egg-paper-1.20');
  assert.equal(defaultProcessName('--', []), 'process');
  const long = 'x'.repeat(80);
  assert.equal(defaultProcessName(long, []).length, 63);
  const second = defaultProcessName(long, [defaultProcessName(long, [])]);
  assert.equal(second, `${'x'.repeat(61)}-2`);
  for (const name of ['minecraft-java-3', 'egg-paper-1.20', second])
    assert.match(name, /^[a-z0-9][a-z0-9._-]{0,62}$/);
});
