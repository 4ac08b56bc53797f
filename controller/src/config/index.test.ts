// Proves loadConfig: documented defaults, file < env precedence, and errors that name the bad key
// (without echoing a database password).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from './index.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'keel-config-'));
function configFile(content: unknown): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function throwsNaming(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention ${p}`);
    return true;
  });
}

test('defaults', () => {
  assert.deepEqual(loadConfig({}), {
    port: 8080,
    host: '0.0.0.0',
    dataDir: path.resolve('data'),
    databaseUrl: undefined,
    publicUrl: 'http://localhost:8080',
    logLevel: 'info',
    maxFrameBytes: 4 * 1024 * 1024,
    joinTokenTtlSeconds: 3600,
    channelTicketTtlSeconds: 30,
    trustProxy: false,
    heartbeatMs: 5000,
    maxPendingHandshakes: 4096,
    maxPendingHandshakesPerAddress: 512,
    mqttUrl: undefined,
    mqttTopicPrefix: 'keel',
    revocationCheckSeconds: 30,
    configFile: undefined,
  });
});

test('the MQTT bus: KEEL_MQTT_URL (or MQTT_URL, as DESIGN.md names it), a prefix, a password never echoed', () => {
  assert.equal(loadConfig({ KEEL_MQTT_URL: 'mqtt://127.0.0.1:1883' }).mqttUrl, 'mqtt://127.0.0.1:1883');
  assert.equal(loadConfig({ MQTT_URL: 'mqtts://broker:8883' }).mqttUrl, 'mqtts://broker:8883');
  assert.equal(
    loadConfig({ KEEL_MQTT_URL: 'mqtt://a:1883', MQTT_URL: 'mqtt://b:1883' }).mqttUrl,
    'mqtt://a:1883',
    'the KEEL_ name wins',
  );
  assert.equal(loadConfig({ KEEL_MQTT_TOPIC_PREFIX: 'keel/prod' }).mqttTopicPrefix, 'keel/prod');
  throwsNaming(() => loadConfig({ MQTT_URL: 'http://user:hunter2@broker' }), 'MQTT_URL', 'value hidden');
  assert.throws(
    () => loadConfig({ KEEL_MQTT_URL: 'redis://user:hunter2@broker' }),
    (err: Error) => !err.message.includes('hunter2'),
  );
  for (const bad of ['keel/#', 'keel/+/x', '/keel', 'keel/', 'keel//prod']) {
    throwsNaming(() => loadConfig({ KEEL_MQTT_TOPIC_PREFIX: bad }), 'KEEL_MQTT_TOPIC_PREFIX');
  }
});

test('environment variables', () => {
  const config = loadConfig({
    KEEL_PORT: '9000',
    KEEL_HOST: '127.0.0.1',
    KEEL_DATA_DIR: '/var/lib/keel',
    DATABASE_URL: 'postgres://keel:pw@db.internal:5432/keel',
    KEEL_PUBLIC_URL: 'https://keel.example.com/',
    KEEL_LOG_LEVEL: 'debug',
    KEEL_MAX_FRAME_BYTES: '1048576',
    KEEL_JOIN_TOKEN_TTL: '600',
  });
  assert.equal(config.port, 9000);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.dataDir, '/var/lib/keel');
  assert.equal(config.databaseUrl, 'postgres://keel:pw@db.internal:5432/keel');
  assert.equal(config.publicUrl, 'https://keel.example.com');
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.maxFrameBytes, 1048576);
  assert.equal(config.joinTokenTtlSeconds, 600);
});

test('the public URL defaults to the configured port; empty env values count as unset', () => {
  assert.equal(loadConfig({ KEEL_PORT: '8443' }).publicUrl, 'http://localhost:8443');
  assert.equal(loadConfig({ KEEL_PORT: '', DATABASE_URL: '' }).port, 8080);
  assert.equal(loadConfig({ DATABASE_URL: '' }).databaseUrl, undefined);
});

test('a JSON file (KEEL_CONFIG or argument) is read, and env wins over it', () => {
  const file = configFile({ port: 7000, logLevel: 'warn', dataDir: '/srv/keel', joinTokenTtlSeconds: 120 });
  const fromEnvPath = loadConfig({ KEEL_CONFIG: file });
  assert.equal(fromEnvPath.port, 7000);
  assert.equal(fromEnvPath.logLevel, 'warn');
  assert.equal(fromEnvPath.dataDir, '/srv/keel');
  assert.equal(fromEnvPath.configFile, file);
  const overridden = loadConfig({ KEEL_PORT: '7001' }, file);
  assert.equal(overridden.port, 7001);
  assert.equal(overridden.joinTokenTtlSeconds, 120);
});

test('the shipped example config is valid', () => {
  const example = new URL('../../keel-controller.example.json', import.meta.url);
  const config = loadConfig({}, example.pathname);
  assert.equal(config.port, 8080);
});

test('bad values name the key and where it came from', () => {
  throwsNaming(() => loadConfig({ KEEL_PORT: 'eighty' }), 'KEEL_PORT', 'environment');
  throwsNaming(() => loadConfig({ KEEL_PORT: '65536' }), 'KEEL_PORT');
  throwsNaming(() => loadConfig({ KEEL_LOG_LEVEL: 'verbose' }), 'KEEL_LOG_LEVEL', 'verbose');
  throwsNaming(() => loadConfig({ KEEL_MAX_FRAME_BYTES: '1024' }), 'KEEL_MAX_FRAME_BYTES');
  throwsNaming(() => loadConfig({ KEEL_JOIN_TOKEN_TTL: '0' }), 'KEEL_JOIN_TOKEN_TTL');
  throwsNaming(() => loadConfig({ KEEL_PUBLIC_URL: 'keel.example.com' }), 'KEEL_PUBLIC_URL');
  throwsNaming(() => loadConfig({ DATABASE_URL: 'mysql://root@db/keel' }), 'DATABASE_URL');
  const file = configFile({ port: '8080' });
  throwsNaming(() => loadConfig({}, file), '"port"', file, 'number');
  throwsNaming(() => loadConfig({}, configFile({ prot: 8080 })), 'prot');
  throwsNaming(() => loadConfig({}, configFile('{ nope')), 'not valid JSON');
  throwsNaming(() => loadConfig({}, configFile([1])), 'JSON object');
  throwsNaming(
    () => loadConfig({ KEEL_CONFIG: path.join(dir, 'missing.json') }),
    'missing.json',
    'KEEL_CONFIG',
  );
});

test('a value that is not a number says so, never "received NaN"', () => {
  for (const [env, message] of [
    [{ KEEL_PORT: 'eighty' }, 'Invalid KEEL_PORT (environment variable): must be a number (got "eighty")'],
    [
      { KEEL_HEARTBEAT_MS: '1.5' },
      'Invalid KEEL_HEARTBEAT_MS (environment variable): must be a whole number (got "1.5")',
    ],
  ] as const) {
    assert.throws(
      () => loadConfig(env),
      (err: unknown) => err instanceof ConfigError && err.message === message,
    );
  }
});

test('a bad DATABASE_URL is named but its value (which may hold a password) is not shown', () => {
  throwsNaming(
    () => loadConfig({ DATABASE_URL: 'mysql://root:hunter2@db/keel' }),
    'DATABASE_URL',
    'value hidden',
  );
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'mysql://root:hunter2@db/keel' }),
    (err: Error) => !err.message.includes('hunter2'),
  );
});

test('KEEL_TRUST_PROXY takes true/false words; a file needs a JSON boolean', () => {
  assert.equal(loadConfig({ KEEL_TRUST_PROXY: 'true' }).trustProxy, true);
  assert.equal(loadConfig({ KEEL_TRUST_PROXY: '0' }).trustProxy, false);
  assert.throws(() => loadConfig({ KEEL_TRUST_PROXY: 'maybe' }), /KEEL_TRUST_PROXY/);
});

test('handshake bounds: defaults, env overrides, and nonsense refused', () => {
  const d = loadConfig({});
  assert.equal(d.maxPendingHandshakes, 4096);
  assert.equal(d.maxPendingHandshakesPerAddress, 512);
  const c = loadConfig({ KEEL_MAX_PENDING_HANDSHAKES: '100', KEEL_MAX_PENDING_HANDSHAKES_PER_ADDRESS: '7' });
  assert.equal(c.maxPendingHandshakes, 100);
  assert.equal(c.maxPendingHandshakesPerAddress, 7);
  assert.throws(() => loadConfig({ KEEL_MAX_PENDING_HANDSHAKES: '0' }), /KEEL_MAX_PENDING_HANDSHAKES/);
  assert.throws(() => loadConfig({ KEEL_MAX_PENDING_HANDSHAKES_PER_ADDRESS: 'lots' }), /PER_ADDRESS/);
});

test('KEEL_REVOCATION_CHECK_SECONDS: a whole number of seconds from 1 to 3600', () => {
  assert.equal(loadConfig({ KEEL_REVOCATION_CHECK_SECONDS: '5' }).revocationCheckSeconds, 5);
  for (const bad of ['0', '3601', '1.5', 'soon']) {
    throwsNaming(() => loadConfig({ KEEL_REVOCATION_CHECK_SECONDS: bad }), 'KEEL_REVOCATION_CHECK_SECONDS');
  }
});
