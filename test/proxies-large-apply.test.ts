// Proves that the agent link carries large request params and results (protocol 3 parts): a real
// controller pushes config.apply with 10,000 users (~1.6 MB of params) to a real agent running the
// telemt adapter over the telemt STAND-IN (test/telemt-stand-in.mjs; telemt is not packaged for
// Debian), and the rendered config.toml (~1 MB, far over one frame header) comes back intact — every
// user in it, the sha256 matching the content — and the agent runs it; a push over the documented
// 16 MiB limit fails at once with the typed `request.too_large`, and the link stays usable.
//
// keel-test: own process — its controller runs in the test process; batched with other files (CI
// of 30 Nov 08:12), their work stalled that event loop and the agent dropped the link mid-request.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { KeelError, MAX_PAYLOAD_BYTES, type ProxyUserSpec } from '@keel/shared';
import {
  freePort,
  waitFor,
  kill,
  removeDir,
  repoRoot,
  startFleet,
  type Fleet,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
let fleet: Fleet<TestController>;

before(async () => {
  fleet = await startFleet(procs, dirs, {
    name: 'large-apply',
    // The controller runs in this process, and the first test's own work here (10,000 users made,
    // 1.6 MB stringified, the 1 MB TOML that came back parsed) stalls its event loop: at load
    // 17-31 past the 2 s of heartbeat silence runAgent's agents allow (2 x its 1 s heartbeat), and
    // the agent dropped the link (the next test's ping then failed). 15 s heartbeats: the agent
    // waits 30 s, which a real controller, not sharing its loop with a test, never needs.
    agentEnv: {
      KEEL_TELEMT_BIN: join(repoRoot, 'test/telemt-stand-in.mjs'),
      KEEL_AGENT_HEARTBEAT_MS: '15000',
    },
  });
});
after(async () => {
  for (const p of procs) await kill(p);
  await fleet?.ctl.close();
  for (const d of dirs) removeDir(d);
});

const users = (n: number): ProxyUserSpec[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `user-${i}`,
    secret: randomBytes(16).toString('hex'),
    uuid: randomUUID(),
    maxTcpConns: 10,
  }));

test(
  'config.apply with 10,000 users round-trips with the rendered file intact',
  { timeout: 180_000 },
  async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const list = users(10_000);
    assert.ok(JSON.stringify(list).length > 1_000_000, 'params far over one frame header');
    const result = await fleet.ctl.gateway.request(
      fleet.hostId,
      'config.apply',
      {
        instance: 'mt-large',
        adapter: 'telemt',
        generation: 1,
        settings: { port, listenAddress: '127.0.0.1', tlsDomain: 'example.com', metricsPort },
        users: list,
        reason: '10,000 users',
      },
      { timeoutMs: 150_000 },
    );
    assert.equal(result.generation, 1);
    const file = result.files[0]!;
    assert.ok(file.content.length > 500_000, `content came back (${file.content.length} chars)`);
    assert.equal(createHash('sha256').update(file.content).digest('hex'), file.sha256);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed TOML document
    const doc = parse(file.content) as Record<string, any>;
    assert.equal(Object.keys(doc.access.users).length, 10_000);
    assert.equal(doc.access.users['user-9999'], list[9_999]!.secret);
    // What the agent wrote is what came back.
    assert.equal(readFileSync(file.path, 'utf8'), file.content);
  },
);

test(
  'a push over 16 MiB fails with request.too_large and the link keeps working',
  { timeout: 120_000 },
  async () => {
    // 100,000 users (the schema's most) with long passwords: ~21 MiB of JSON. Shared strings keep
    // the test from spending seconds making them (the controller runs in this process).
    const one = {
      id: 'u',
      secret: 'a'.repeat(32),
      uuid: randomUUID(),
      password: 'p'.repeat(128),
      maxTcpConns: 10,
    };
    const list = Array.from({ length: 100_000 }, (_, i) => ({ ...one, id: `user-${i}` }));
    // (Sized from one user: stringifying 21 MiB here would stall the controller this process hosts.)
    assert.ok(JSON.stringify(one).length * list.length > MAX_PAYLOAD_BYTES);
    await waitFor(() => fleet.ctl.gateway.isOnline(fleet.hostId), 60_000, 'agent online');
    await assert.rejects(
      fleet.ctl.gateway.request(fleet.hostId, 'config.apply', {
        instance: 'mt-huge',
        adapter: 'telemt',
        generation: 1,
        settings: { port: 1, tlsDomain: 'example.com' },
        users: list,
      }),
      (err: unknown) => {
        assert.ok(err instanceof KeelError);
        assert.equal(err.code, 'request.too_large');
        assert.match(err.message, /at most 16\.0 MiB/);
        return true;
      },
    );
    const pong = await fleet.ctl.gateway.request(fleet.hostId, 'ping', {}).catch((err: unknown) => {
      console.log(fleet.agent.output().slice(-3000));
      throw err;
    });
    assert.equal(typeof pong.agentTime, 'number');
  },
);
