// Proves dead-peer detection both ways with real processes: a frozen agent (SIGSTOP) is shown
// offline within seconds and comes back by itself; a frozen controller is noticed by the agent,
// which records link.lost and link.regained once the controller answers again.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  kill,
  removeDir,
  runAgent,
  tempDir,
  waitFor,
  type Proc,
  startControllerProcess,
  enrollThroughApi,
} from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) {
    p.child.kill('SIGCONT');
    await kill(p);
  }
  for (const d of dirs) removeDir(d);
});

test(
  'heartbeats detect a frozen agent and a frozen controller within seconds',
  { timeout: 90_000 },
  async () => {
    const stateDir = tempDir('keel-agent-');
    const ctl = await startControllerProcess(procs, { env: { KEEL_HEARTBEAT_MS: '500' } });
    dirs.push(ctl.dataDir, stateDir);
    const { api } = ctl;
    const controller = ctl.proc;
    await enrollThroughApi(api, stateDir);
    const agent = runAgent(stateDir, { KEEL_AGENT_HEARTBEAT_MS: '500' });
    procs.push(agent);
    const host = async () =>
      (await api.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts[0];
    await waitFor(async () => (await host())?.online, 15_000, 'agent online');
    const id = (await host())!.id;

    // Freeze the agent: the controller drops it within a few heartbeat periods.
    agent.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    await waitFor(async () => (await host())?.online === false, 5_000, 'frozen agent shown offline');
    assert.ok(Date.now() - frozenAt < 5_000);
    agent.child.kill('SIGCONT');
    await waitFor(async () => (await host())?.online, 15_000, 'agent back after thaw');

    // Freeze the controller: the agent notices, and reconnects once it answers again.
    const kindsNow = async () =>
      (await api.get<{ events: { kind: string }[] }>(`/hosts/${id}/events?tail=200`)).body.events.map(
        (e) => e.kind,
      );
    // The thaw above already cost one link.lost/link.regained pair; wait until it is stored.
    await waitFor(async () => (await kindsNow()).includes('link.regained'), 10_000, 'first regain stored');
    const lostBefore = (await kindsNow()).filter((k) => k === 'link.lost').length;
    // Frozen until the agent has given up on it (two silent 500 ms periods; it logs `link lost`
    // at warn), then thawed.
    const linkLost = () =>
      agent
        .output()
        .split('\n')
        .filter((l) => l.includes('link lost')).length;
    const agentLostBefore = linkLost();
    controller.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await waitFor(() => linkLost() > agentLostBefore, 5_000, 'the agent gives up on the frozen controller');
    assert.ok(Date.now() - stoppedAt < 5_000);
    controller.child.kill('SIGCONT');
    await waitFor(
      async () => {
        const kinds = await kindsNow();
        const lost = kinds.lastIndexOf('link.lost');
        const lostCount = kinds.filter((k) => k === 'link.lost').length;
        return lostCount > lostBefore && kinds.indexOf('link.regained', lost) > lost;
      },
      20_000,
      'link.lost then link.regained after the controller froze',
    );
    // The host row's online flag is written by the presence group commit, apart from the events
    // stream: it may land a moment after link.regained was stored.
    await waitFor(async () => (await host())?.online === true, 15_000, 'host shown online again');
  },
);
