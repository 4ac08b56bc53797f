// The start-up replica tests share: what a test file leaves behind (processes, directories and
// closers, cleared after its tests), and the services two controller replicas share, a fresh
// database on the test PostgreSQL and the test broker, as the env every replica starts with.
import { after, type TestContext } from 'node:test';
import { needBroker, TEST_BROKER } from '../../controller/src/bus/test-broker.ts';
import { freshDatabase, kill, removeDir, type Proc } from './fleet.ts';

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
