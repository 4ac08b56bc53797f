// The start-up replica tests share: what a test file leaves behind (processes, directories and
// closers, cleared after its tests), and the services two controller replicas share, a fresh
// database on the test PostgreSQL and the test broker, as the env every replica starts with.
import { randomBytes } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';
import { needBroker, TEST_BROKER } from '../../controller/src/bus/test-broker.ts';
import {
  freshDatabase,
  kill,
  removeDir,
  startTestController,
  tempDir,
  type Proc,
  type TestController,
} from './fleet.ts';

/** What a test file's tests leave for `after`: killed, then closed (last first), then removed. */
export interface Leftovers {
  procs: Proc[];
  dirs: string[];
  closers: (() => Promise<unknown>)[];
}

/**
 * Leftovers cleared once the file's tests are done; call at the top of a test file.
 * @example const { procs, dirs, closers } = clearedAfter();
 */
export function clearedAfter(): Leftovers {
  const left: Leftovers = { procs: [], dirs: [], closers: [] };
  after(async () => {
    for (const p of left.procs) await kill(p);
    for (const c of left.closers.reverse()) await c().catch(() => {});
    for (const d of left.dirs) removeDir(d);
  });
  return left;
}

/** The env replicas on one database and one broker share. */
export interface ReplicaEnv {
  DATABASE_URL: string;
  KEEL_MQTT_URL: string;
  KEEL_MQTT_TOPIC_PREFIX: string;
}

/**
 * A fresh database (`name`, dropped after the file's tests) and the broker under a topic prefix of
 * this run's own, or null with the test skipped when either is missing (CI: throws).
 * @example const env = await replicaServices(t, left, 'keel_bus'); if (!env) return;
 */
export async function replicaServices(
  t: TestContext,
  left: Leftovers,
  name: string,
): Promise<ReplicaEnv | null> {
  if (!(await needBroker(t))) return null;
  const database = await freshDatabase(t, name);
  if (!database) return null;
  left.closers.push(() => database.drop());
  return {
    DATABASE_URL: database.url,
    KEEL_MQTT_URL: TEST_BROKER,
    KEEL_MQTT_TOPIC_PREFIX: `keel-test/${name}-${process.pid}-${Date.now()}`,
  };
}

/** A master key for one test's replicas (base64 of 32 random bytes, as KEEL_MASTER_KEY takes it). */
export function replicaMasterKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * Starts a replica in this process on `env`, closed and its data dir removed after the file's
 * tests. In this process the master key is read from the data dir (KEEL_MASTER_KEY is the process's
 * own env), so it is written there; `controllerKeyOf` also gives it that replica's controller key,
 * as replicas behind one load balancer share it (an agent pinned to it may be served by either).
 * @example const key = replicaMasterKey(); const a = await startReplica(left, env, key);
 */
export async function startReplica(
  left: Leftovers,
  env: ReplicaEnv,
  masterKey: string,
  opts: { controllerKeyOf?: TestController } = {},
): Promise<TestController> {
  const dataDir = tempDir('keel-ctl-');
  left.dirs.push(dataDir);
  writeFileSync(join(dataDir, 'master.key'), `${masterKey}\n`, { mode: 0o600 });
  if (opts.controllerKeyOf)
    copyFileSync(join(opts.controllerKeyOf.dataDir, 'controller.key'), join(dataDir, 'controller.key'));
  const controller = await startTestController({ dataDir, env: { ...env } });
  left.closers.push(() => controller.close());
  return controller;
}
