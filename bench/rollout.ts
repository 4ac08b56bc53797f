// Benchmark: a staged agent upgrade over N simulated agents (default 100) through the real
// controller (its own process, embedded database) and its real rollout driver. Each simulated
// agent is the real AgentLink (agent/src/link/connection.ts) on the real protocol, announcing
// agent.upgrade and agent.upgrade.status. On agent.upgrade it does what an agent does over the
// network — downloads the bundle from the controller's /install/agent/<file> and checks its size
// and SHA-256 — answers, drops its link, "restarts" (a pause standing for a real agent's start,
// --restart-ms) and comes back announcing the new version. What it does not do is unpack and
// start a real release: that cost is per host and is what test/upgrades.test.ts exercises.
//
// Figures: time from POST /agent-rollouts to `done`; the most hosts offline at once (sampled from
// the controller's host list every 250 ms) against the batch size — the target is never more than
// one batch offline; per-batch time. Peers: none of Beszel, Nezha or Komodo upgrades a fleet's
// agents in stages (by hand per host, or all at once); Ansible with serial batches (our
// ansible/site.yml) is the nearest, not timed at this size here.
//
// Run: npm run bench -- rollout [--n 100] [--batch 25] [--canary 1] [--restart-ms 1500]
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { generateSigningIdentity, type SigningIdentity } from '@keel/shared';
import { AgentLink } from '../agent/src/link/connection.ts';
import {
  benchFacts,
  createJoinToken,
  enrollIdentity,
  machine,
  pool,
  removeDir,
  sleep,
  startController,
  tempDir,
  waitFor,
} from './lib/harness.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '100' },
    batch: { type: 'string' },
    canary: { type: 'string', default: '1' },
    'restart-ms': { type: 'string', default: '1500' },
  },
});
const N = Number(values.n);
const BATCH = Number(values.batch ?? Math.max(1, Math.ceil(N / 4)));
const CANARY = Number(values.canary);
const RESTART_MS = Number(values['restart-ms']);
const FROM = '0.2.0';
const TO = '0.2.1';

const log = pino({ level: 'silent' });
const work = tempDir('keel-bench-rollout-');
const bundles = join(work, 'bundles');
mkdirSync(bundles);
// A bundle of the size of today's (~1.5 MiB): what each host downloads and hashes.
const bundle = randomBytes(1_500_000);
const file = `keel-agent-${TO}.tar.gz`;
const sha256 = createHash('sha256').update(bundle).digest('hex');
writeFileSync(join(bundles, file), bundle);
writeFileSync(join(bundles, `${file}.sha256`), `${sha256}  ${file}\n`);
process.env.KEEL_AGENT_BUNDLE_DIR = bundles;

const ctl = await startController({ dataDir: join(work, 'data') });
process.on('exit', () => ctl.child.kill('SIGKILL'));
console.log(`machine: ${machine()}`);
const { token, pin } = await createJoinToken(ctl.api, N);

/** One simulated host: a link on `version`, replaced by a link on the new one after an upgrade. */
interface SimHost {
  name: string;
  identity: SigningIdentity;
  version: string;
  link: AgentLink | null;
  upgrading: boolean;
}

const connect = (host: SimHost) => {
  const link: AgentLink = new AgentLink({
    controllerUrl: ctl.url,
    identity: host.identity,
    pin,
    log,
    streams: new Map(),
    agentVersion: host.version,
    handlers: {
      'agent.upgrade.status': () => ({
        version: host.version,
        upgrading: host.upgrading,
        lastRollback: null,
      }),
      'agent.upgrade': async (params: unknown) => {
        const p = params as { version: string; sha256: string; size: number };
        host.upgrading = true;
        const res = await fetch(`${ctl.url}/install/agent/keel-agent-${p.version}.tar.gz`);
        const bytes = Buffer.from(await res.arrayBuffer());
        if (bytes.length !== p.size || createHash('sha256').update(bytes).digest('hex') !== p.sha256) {
          host.upgrading = false;
          throw new Error('checksum mismatch');
        }
        // Answer first, then go away and come back on the new version, as the real agent does.
        setTimeout(() => {
          void (async () => {
            await link.stop();
            await sleep(RESTART_MS);
            host.version = p.version;
            host.upgrading = false;
            connect(host);
          })();
        }, 300);
        return { previous: host.version, version: p.version };
      },
    },
  });
  link.onSessionReady((channel) => {
    channel.send({ type: 'facts', facts: { ...benchFacts(host.name), agentVersion: host.version } });
  });
  host.link = link;
  void link.run();
};

console.log(`enrolling ${N} simulated agents on ${FROM} ...`);
const hosts: SimHost[] = [];
await pool(
  Array.from({ length: N }, (_, i) => i),
  16,
  async (i) => {
    const name = `sim-${String(i).padStart(4, '0')}`;
    const identity = generateSigningIdentity();
    await enrollIdentity({ controllerUrl: ctl.url, identity, pin, token, name });
    hosts.push({ name, identity, version: FROM, link: null, upgrading: false });
  },
);
for (const h of hosts) connect(h);
type HostRow = { name: string; online: boolean; agentVersion: string | null };
const list = async () => (await ctl.api.get<{ hosts: HostRow[] }>('/hosts')).body.hosts;
await waitFor(
  async () => {
    const rows = await list();
    return rows.length === N && rows.every((h) => h.online && h.agentVersion === FROM);
  },
  300_000,
  `${N} hosts online on ${FROM}`,
);
console.log(`${N} hosts online on ${FROM}; rollout to ${TO}: canary ${CANARY}, batches of ${BATCH}`);

const t0 = performance.now();
const started = await ctl.api.post<{ rollout: { id: string } }>('/agent-rollouts', {
  version: TO,
  canary: CANARY,
  batchSize: BATCH,
  confirmSeconds: 120,
});
if (started.status !== 201) throw new Error(JSON.stringify(started.body));
const id = started.body.rollout.id;
let mostOffline = 0;
let mostUpgrading = 0;
let samples = 0;
type RolloutHost = {
  name: string;
  state: string;
  position: number;
  startedAt: string | null;
  finishedAt: string | null;
};
let final: { state: string; reason: string | null; hosts: RolloutHost[] } | null = null;
let sampleErrors = 0;
for (;;) {
  if (ctl.child.exitCode !== null || ctl.child.signalCode !== null) {
    throw new Error(
      `the controller exited mid-rollout (${ctl.child.exitCode ?? ctl.child.signalCode}): ${ctl.output().slice(-2000)}`,
    );
  }
  // A sample that fails (a reset connection on a machine this loaded) is counted and skipped.
  const got = await Promise.all([
    list(),
    ctl.api.get<{ rollout: { state: string; reason: string | null; hosts: RolloutHost[] } }>(
      `/agent-rollouts/${id}`,
    ),
  ]).catch(() => null);
  if (!got) {
    sampleErrors++;
    await sleep(250);
    continue;
  }
  const [rows, r] = got;
  samples++;
  mostOffline = Math.max(mostOffline, rows.filter((h) => !h.online).length);
  mostUpgrading = Math.max(mostUpgrading, r.body.rollout.hosts.filter((h) => h.state === 'upgrading').length);
  if (r.body.rollout.state !== 'running') {
    final = r.body.rollout;
    break;
  }
  if (performance.now() - t0 > 900_000) throw new Error('rollout not done in 15 min');
  await sleep(250);
}
const seconds = (performance.now() - t0) / 1000;
const onNew = (await list()).filter((h) => h.agentVersion === TO).length;
// Per batch: from its first host's start to its last host's finish.
const batchOf = (p: number) => (p < CANARY ? 0 : 1 + Math.floor((p - CANARY) / BATCH));
const batches = new Map<number, { start: number; end: number }>();
for (const h of final.hosts) {
  if (!h.startedAt || !h.finishedAt) continue;
  const b = batches.get(batchOf(h.position)) ?? { start: Infinity, end: 0 };
  b.start = Math.min(b.start, Date.parse(h.startedAt));
  b.end = Math.max(b.end, Date.parse(h.finishedAt));
  batches.set(batchOf(h.position), b);
}
const perBatch = [...batches.entries()]
  .sort((a, b) => a[0] - b[0])
  .map(([, b]) => ((b.end - b.start) / 1000).toFixed(1));

console.log(
  `\nrollout ${final.state}${final.reason ? ` (${final.reason})` : ''}: ${N} hosts in ${seconds.toFixed(1)} s`,
);
console.log(`  on ${TO} afterwards: ${onNew}/${N}`);
console.log(
  `  most hosts offline at once: ${mostOffline} (batch size ${BATCH}; target: never more than one batch)`,
);
console.log(`  most hosts upgrading at once: ${mostUpgrading}; ${samples} samples (${sampleErrors} failed)`);
console.log(
  `  seconds per batch (canary first): ${perBatch.join(', ')} (each includes a ${RESTART_MS} ms simulated restart)`,
);
console.log(
  `  peer: target from issue 11 (never more than one batch offline); Ansible serial batches not timed at this size`,
);

for (const h of hosts) await h.link?.stop();
await ctl.stop();
removeDir(work);
process.exit(final.state === 'done' && mostOffline <= BATCH ? 0 : 1);
