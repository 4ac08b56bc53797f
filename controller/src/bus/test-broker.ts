// The MQTT broker the bus tests use (controller/src/bus/*.test.ts, test/controller-replicas-bus):
// KEEL_TEST_MQTT_URL, else the Mosquitto .ci/run starts on 127.0.0.1:1883; and the waits and
// clean-up those tests share. Test support only: nothing in the controller imports it.
import { connect as tcpConnect } from 'node:net';
import { after, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';

export const TEST_BROKER = process.env.KEEL_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

/** True when something accepts TCP connections at the URL's host and port within a second. */
export function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = tcpConnect({ host: u.hostname, port: Number(u.port || 1883) });
    s.setTimeout(1000, () => (s.destroy(), resolve(false)));
    s.once('connect', () => (s.end(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * True when the test broker answers; else the test is skipped and false returned. Under CI a
 * missing broker fails instead: .ci/run starts one.
 * @example if (!(await needBroker(t))) return;
 */
export async function needBroker(t: TestContext): Promise<boolean> {
  if (await reachable(TEST_BROKER)) return true;
  if (process.env.CI) throw new Error(`Mosquitto is needed at ${TEST_BROKER} (.ci/run starts it)`);
  t.skip(`no MQTT broker at ${TEST_BROKER} (apt-get install mosquitto)`);
  return false;
}

/**
 * Resolves once the broker holds every subscription `client` has sent so far. A bus subscribes
 * when it connects without waiting for the broker's answer, so an event another connection
 * publishes right after can reach the broker first and go to nobody; the broker handles one
 * connection's packets in order, so the acknowledgement of one more subscription, made now, says
 * the earlier ones are in (a fixed pause only guessed at it).
 * @example const b = await createMqttBus(...); await subscriptionsHeld(b.client, prefix);
 */
export async function subscriptionsHeld(client: MqttClient, prefix: string): Promise<void> {
  const probe = `${prefix}/test-probe/${Math.random().toString(36).slice(2)}`;
  await client.subscribeAsync(probe, { qos: 1 });
  await client.unsubscribeAsync(probe);
}

/**
 * Resolves once `check` holds (polled every 5 ms); throws naming `what` after `ms`.
 * @example await until('the agent told', () => control.some((f) => f.type === 'chan.close'));
 */
export async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * What a test file's tests open (buses, hubs, clients), closed last first once they are done; call
 * at the top of a test file.
 * @example const open = closedAfter(); open.push(bus);
 */
export function closedAfter(): { close(): unknown }[] {
  const open: { close(): unknown }[] = [];
  after(async () => {
    for (const c of open.reverse()) await c.close();
  });
  return open;
}
