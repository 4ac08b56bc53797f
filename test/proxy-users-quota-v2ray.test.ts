// Proves fleet-wide quota enforcement from a real proxy's own counters, no stand-in feed: a real
// controller (scraping every second) and a real agent running the real v2ray from Debian; a proxy
// user with a 300 kB data limit pulls 1 MB through v2ray (VLESS, a second v2ray as the client);
// the controller reads v2ray's StatsService counters through config.traffic, marks the user
// `limited`, and takes it off the node: gone from the config file on the host, refused by the
// running v2ray, while another user on the node keeps being served.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import {
  kill,
  removeDir,
  startFleet,
  tempDir,
  waitFor,
  type Fleet,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import { freePort, httpTarget, httpThroughSocks, startV2rayClient } from './proxies-agent-setup.ts';

const skip = need('v2ray');
// The scrape interval the controller's proxy users service reads at start (this process hosts it).
process.env.KEEL_PROXY_SCRAPE_SECONDS = '1';

const procs: Proc[] = [];
const dirs: string[] = [];
let fleet: Fleet<TestController>;
let api: ApiClient;

before(async () => {
  if (skip) return;
  fleet = await startFleet(procs, dirs, { name: 'quota-host', onlineMs: 60_000 });
  api = await signedInApi(fleet.ctl);
});
after(async () => {
  for (const p of procs) await kill(p);
  await fleet?.ctl.close();
  for (const d of dirs) removeDir(d);
});

interface ProxyUser {
  id: string;
  uuid: string;
  status: string;
  usedBytes: number;
}

test(
  'a user over its quota on real v2ray counters is marked limited and removed from the node',
  { skip, timeout: 300_000 },
  async (t) => {
    const { hostId } = fleet;
    const vlessPort = await freePort();
    const created = await api.post(`/hosts/${hostId}/proxies`, {
      instance: 'vpn',
      adapter: 'v2ray',
      settings: {
        listenAddress: '127.0.0.1',
        apiPort: await freePort(),
        inbounds: [{ tag: 'vless-in', protocol: 'vless', port: vlessPort }],
      },
      apply: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const make = async (name: string, dataLimitBytes: number | null) => {
      const res = await api.post<{ user: ProxyUser }>('/proxy-users', {
        name,
        dataLimitBytes,
        nodes: [{ hostId, instance: 'vpn' }],
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.user;
    };
    const alice = await make('alice', 300_000);
    const bob = await make('bob', null);

    /** The v2ray config file the agent applied on the host. */
    const configOnHost = async () => {
      const node = (
        await api.get<{ node: { currentGeneration: number | null } }>(`/hosts/${hostId}/proxies/vpn`)
      ).body.node;
      if (node.currentGeneration === null) return '';
      const g = await api.get<{ generation: { files: { path: string }[] } }>(
        `/hosts/${hostId}/proxies/vpn/generations/${node.currentGeneration}`,
      );
      return g.body.generation.files.map((f) => readFileSync(f.path, 'utf8')).join('\n');
    };
    await waitFor(
      async () => {
        const text = await configOnHost();
        return text.includes(alice.uuid) && text.includes(bob.uuid);
      },
      120_000,
      'both users applied on the node',
    );

    // The client: a second v2ray with one SOCKS inbound per user.
    const socks = { alice: await freePort(), bob: await freePort() };
    const clientDir = tempDir('keel-quota-client-');
    dirs.push(clientDir);
    const outbound = (tag: string, id: string) => ({
      tag,
      protocol: 'vless',
      settings: { vnext: [{ address: '127.0.0.1', port: vlessPort, users: [{ id, encryption: 'none' }] }] },
    });
    startV2rayClient(t, clientDir, socks, [outbound('alice', alice.uuid), outbound('bob', bob.uuid)]);
    const body = 'x'.repeat(1_000_000);
    const target = await httpTarget(body);
    t.after(() => target.close());
    await waitFor(
      () =>
        httpThroughSocks(socks.alice, target.port).then(
          (r) => r.endsWith(body),
          () => false,
        ),
      30_000,
      'alice pulls 1 MB through v2ray',
    );

    // v2ray counted it; the scraper sums it, marks alice limited and takes her off the node.
    const limited = await waitFor(
      async () => {
        const u = (await api.get<{ user: ProxyUser }>(`/proxy-users/${alice.id}`)).body.user;
        return u.status === 'limited' ? u : undefined;
      },
      120_000,
      'alice marked limited',
    );
    assert.ok(limited.usedBytes >= 1_000_000, `usage from v2ray's counters: ${limited.usedBytes}`);
    await waitFor(
      async () => !(await configOnHost()).includes(alice.uuid),
      120_000,
      'alice gone from the file',
    );
    const text = await configOnHost();
    assert.ok(text.includes(bob.uuid), 'bob stays');
    // The running v2ray refuses alice now (removed through its API or a restart) and serves bob.
    await waitFor(
      () =>
        httpThroughSocks(socks.alice, target.port).then(
          (r) => !r.endsWith(body),
          () => true,
        ),
      30_000,
      'alice refused by v2ray',
    );
    assert.ok((await httpThroughSocks(socks.bob, target.port)).endsWith(body), 'bob served');
  },
);
