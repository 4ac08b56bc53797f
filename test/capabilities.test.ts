// Proves capability negotiation: a protocol-2 agent announces what it serves and the controller
// shows it on the Host view; a request the agent did not announce fails with agent.unsupported,
// naming the version needed, without a round trip (also when it waited for the host to connect);
// an agent that announces nothing (today's 0.1.0, protocol 1) keeps working on the baseline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { baselineCapabilities, KeelError, type SessionFrame, type SigningIdentity } from '@keel/shared';
import { AgentLink, openSession } from '../agent/src/link/connection.ts';
import { AGENT_VERSION } from '../agent/src/version.ts';
import { sampleFacts } from './helpers/facts.ts';
import { enrollIdentity, removeDir, startTestController, waitFor } from './helpers/fleet.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;
const closers: (() => void)[] = [];

before(async () => {
  ctl = await startTestController();
});
after(async () => {
  for (const close of closers) close();
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

const enrolled = () => enrollIdentity(ctl, 'caps');

/** A scripted agent: the real handshake, an optional announcement, answers to ping. */
async function scriptedAgent(
  identity: SigningIdentity,
  opts: { versions?: number[]; announce?: SessionFrame },
) {
  const received: string[] = [];
  let send: (f: SessionFrame) => void = () => {};
  const opened = await openSession({
    controllerUrl: ctl.url,
    identity,
    pin: ctl.fingerprint,
    mode: 'connect',
    versions: opts.versions,
    capabilities: null,
    onFrame: (frame) => {
      if (frame.type !== 'req') return;
      received.push(frame.method);
      send({ type: 'res', id: frame.id, ok: true, result: { agentTime: Date.now() } });
    },
  });
  send = (f) => opened.channel.send(f);
  if (opts.announce) opened.channel.send(opts.announce);
  const closed = new Promise<number>((resolve) => opened.ws.once('close', (code) => resolve(code)));
  closers.push(() => opened.ws.terminate());
  return { ...opened, received, closed };
}

describe('an agent that announces', () => {
  test('its capabilities are on the Host view; an unannounced request fails without a round trip', async () => {
    const { identity, hostId } = await enrolled();
    const agent = await scriptedAgent(identity, {
      announce: {
        type: 'capabilities',
        agentVersion: '0.2.0',
        requests: ['ping'],
        streams: [],
        channels: [],
      },
    });
    await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'online');
    const view = await ctl.services.hosts.get(hostId);
    assert.deepEqual(view.capabilities, {
      agentVersion: '0.2.0',
      requests: ['ping'],
      streams: [],
      channels: [],
      announced: true,
    });
    await assert.rejects(ctl.gateway.request(hostId, 'facts.refresh', {}), (err: unknown) => {
      assert.ok(err instanceof KeelError);
      assert.equal(err.code, 'agent.unsupported');
      assert.match(err.message, /keel-agent 0\.2\.0.*facts\.refresh.*keel-agent 0\.1\.0 or newer/);
      return true;
    });
    assert.deepEqual(agent.received, [], 'nothing was sent to the agent');
    const pong = await ctl.gateway.request(hostId, 'ping', {});
    assert.equal(typeof pong.agentTime, 'number');
    assert.deepEqual(agent.received, ['ping']);
  });

  test('a request that waited for the host fails with agent.unsupported when it connects without it', async () => {
    const { identity, hostId } = await enrolled();
    const waiting = ctl.gateway.request(hostId, 'facts.refresh', {}, { timeoutMs: 10_000 });
    const agent = await scriptedAgent(identity, {
      announce: { type: 'capabilities', agentVersion: '0.2.0', requests: [], streams: [], channels: [] },
    });
    await assert.rejects(waiting, { code: 'agent.unsupported' });
    assert.deepEqual(agent.received, []);
  });

  test('a protocol-2 agent whose first frame is not its announcement is refused', async () => {
    const { identity } = await enrolled();
    const agent = await scriptedAgent(identity, { announce: { type: 'facts', facts: sampleFacts } });
    assert.equal(await agent.closed, 4412);
  });

  test('the real agent link announces its handlers, streams and channel kinds', async () => {
    const { identity, hostId } = await enrolled();
    const link = new AgentLink({
      controllerUrl: ctl.url,
      identity,
      pin: ctl.fingerprint,
      log: pino({ level: 'silent' }),
      streams: new Map(),
      handlers: { ping: () => ({ agentTime: Date.now() }), 'not.in.catalogue': () => null },
    });
    link.channelKinds.add('echo');
    const running = link.run();
    closers.push(() => void link.stop());
    await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'online');
    assert.deepEqual(ctl.gateway.capabilitiesOf(hostId), {
      agentVersion: AGENT_VERSION,
      requests: ['ping'],
      streams: [],
      channels: ['echo'],
      announced: true,
    });
    await link.stop();
    assert.equal(await running, null);
    await waitFor(() => !ctl.gateway.isOnline(hostId), 5_000, 'offline');
    assert.equal(ctl.gateway.capabilitiesOf(hostId), null);
    assert.equal((await ctl.services.hosts.get(hostId)).capabilities, null);
  });
});

describe('an agent that announces nothing (protocol 1, agents up to 0.1.0)', () => {
  test('keeps working on the baseline: ping and facts.refresh are sent, no channels', async () => {
    const { identity, hostId } = await enrolled();
    const agent = await scriptedAgent(identity, { versions: [1] });
    assert.equal(agent.channel.session.version, 1);
    await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'online');
    const caps = ctl.gateway.capabilitiesOf(hostId);
    assert.deepEqual(caps, baselineCapabilities());
    assert.equal(caps?.announced, false);
    assert.ok(caps?.requests.includes('facts.refresh') && caps.requests.includes('ping'));
    assert.deepEqual(caps?.streams, ['events']);
    assert.deepEqual(caps?.channels, []);
    await ctl.gateway.request(hostId, 'ping', {});
    assert.deepEqual(agent.received, ['ping']);
  });
});
