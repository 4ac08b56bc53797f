// Proves proxy users end to end on the controller (real PostgreSQL/PGlite, routes through
// app.request): usage is summed over nodes and a user over quota on two nodes combined is taken
// off both; counter resets neither double-count nor lose traffic (also with two scrapers at once);
// per-node hourly traffic (host.view);
// expiry and period resets; owner scoping (a user without proxy.users.all sees only its own);
// links (tg:// with ee + secret + hex domain, vless; a node's public address over its host's
// name), regenerate, rotate subscription, bulk actions,
// the public subscription in base64, Clash (YAML parsed back) and sing-box with the
// subscription-userinfo header, its rate limit, and the audit trail. The counters come from a
// stand-in for the agents' config.traffic and applies go to a recording stand-in for the proxy
// nodes service (it renders each node's users through usersForNode, as the real one does).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRequire } from 'node:module';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { proxyNodes } from '../controller/src/db/schema/proxy-nodes.ts';
import {
  counterDeltas,
  createProxyUsersRepository,
  type NodeKey,
} from '../controller/src/repositories/proxy-users.ts';
import {
  createProxyUsersService,
  type ProxyUsersActor,
  type ProxyUsersService,
} from '../controller/src/services/proxy-users.ts';
import { actorOf } from '../controller/src/services/access.ts';

// The controller's yaml (2.x), as the route uses; the root one is an older major other tools pull in.
const { parse: parseYaml } = createRequire(new URL('../controller/package.json', import.meta.url))(
  'yaml',
) as { parse: (text: string) => unknown };

let t: TestApp;
let hostA: string;
let hostB: string;
const as = {} as Record<'viewer' | 'operator' | 'admin' | 'owner', SignedIn>;
let operator2: SignedIn;

/** Counters each node reports (cumulative since its epoch), set by the tests. */
const counters = new Map<
  string,
  { counterEpoch: string; users: { id: string; upBytes: number; downBytes: number }[] }
>();
/** What the recording stand-in applied last on each node: the user ids it rendered. */
const rendered = new Map<string, string[]>();
let clock = new Date('2026-06-01T12:00:00Z');
let svc: ProxyUsersService;

const key = (n: NodeKey) => `${n.hostId}/${n.instance}`;

const enrollHost = (name: string) => t.enrollHost(name);

const ownerActor = (): ProxyUsersActor => ({ ...actorOf({ id: as.owner.userId, role: 'owner' }), ip: null });

before(async () => {
  t = await openTestApp();
  hostA = await enrollHost('mt.example.net');
  hostB = await enrollHost('vpn.example.net');
  await t.db.insert(proxyNodes).values([
    {
      hostId: hostA,
      instance: 'mt',
      adapter: 'telemt',
      settings: {
        port: 443,
        tlsDomain: 'www.google.com',
        modes: { classic: false, secure: false, tls: true },
      },
    },
    {
      hostId: hostB,
      instance: 'vpn',
      adapter: 'v2ray',
      settings: {
        inbounds: [
          { tag: 'vless-in', protocol: 'vless', port: 8443, network: 'tcp' },
          { tag: 'vmess-ws', protocol: 'vmess', port: 8080, network: 'ws', wsPath: '/ws' },
        ],
      },
    },
    { hostId: hostB, instance: 'web', adapter: 'nginx', settings: { sites: [] } },
  ]);
  for (const r of ['viewer', 'operator', 'admin', 'owner'] as const) as[r] = await t.signInAs(r);
  await t.createUser('operator2', 'operator');
  operator2 = await t.login('operator2');
  svc = createProxyUsersService({
    repo: createProxyUsersRepository(t.db),
    audit: t.services.audit,
    log: t.log,
    publicUrl: 'https://keel.example.net',
    readTraffic: async (node) => counters.get(key(node)) ?? { counterEpoch: 'none', users: [] },
    now: () => clock,
    coalesceMs: 10,
  });
  svc.setApplier({
    async apply(_actor, hostId, instance) {
      rendered.set(
        key({ hostId, instance }),
        (await svc.usersForNode(hostId, instance)).map((u) => u.id),
      );
    },
  });
});
after(async () => {
  await svc.stop();
  await t.close();
});

const nodesAB = () => [
  { hostId: hostA, instance: 'mt' },
  { hostId: hostB, instance: 'vpn' },
];

describe('counter deltas', () => {
  test('a new epoch or a smaller value counts from zero; a missing user keeps its last value', () => {
    const first = counterDeltas(null, 'e1', [{ id: 'a', up: 10, down: 5 }]);
    assert.deepEqual([...first.deltas], [['a', [10, 5]]]);
    const same = counterDeltas({ epoch: 'e1', counters: first.counters }, 'e1', [
      { id: 'a', up: 15, down: 5 },
    ]);
    assert.deepEqual([...same.deltas], [['a', [5, 0]]]);
    const restarted = counterDeltas({ epoch: 'e1', counters: same.counters }, 'e2', [
      { id: 'a', up: 3, down: 1 },
    ]);
    assert.deepEqual([...restarted.deltas], [['a', [3, 1]]]);
    const smaller = counterDeltas({ epoch: 'e2', counters: { a: [100, 100] } }, 'e2', [
      { id: 'a', up: 7, down: 200 },
    ]);
    assert.deepEqual([...smaller.deltas], [['a', [7, 100]]]);
    const missing = counterDeltas({ epoch: 'e2', counters: { a: [1, 1], b: [9, 9] } }, 'e2', [
      { id: 'a', up: 1, down: 1 },
    ]);
    assert.deepEqual(missing.counters.b, [9, 9]);
    assert.equal(missing.deltas.size, 0);
  });
});

describe('fleet-wide traffic and enforcement', () => {
  test(
    'a user over quota on two nodes combined is taken off both; others stay',
    { timeout: 60_000 },
    async () => {
      const alice = await svc.create(ownerActor(), { name: 'alice', dataLimitBytes: 1000, nodes: nodesAB() });
      await svc.create(ownerActor(), { name: 'bob', nodes: nodesAB() });
      await svc.settled();
      assert.deepEqual(rendered.get(key(nodesAB()[0]!)), ['alice', 'bob']);
      assert.deepEqual(rendered.get(key(nodesAB()[1]!)), ['alice', 'bob']);

      counters.set(key(nodesAB()[0]!), {
        counterEpoch: 'a1',
        users: [{ id: 'alice', upBytes: 300, downBytes: 100 }],
      });
      counters.set(key(nodesAB()[1]!), {
        counterEpoch: 'b1',
        users: [{ id: 'alice', upBytes: 50, downBytes: 300 }],
      });
      await svc.scrapeOnce();
      await svc.settled();
      let a = await svc.get(ownerActor(), alice.id);
      assert.equal(a.usedBytes, 750);
      assert.equal(a.status, 'active', 'each node alone and both together are under 1000');

      counters.set(key(nodesAB()[0]!), {
        counterEpoch: 'a1',
        users: [{ id: 'alice', upBytes: 400, downBytes: 200 }],
      });
      counters.set(key(nodesAB()[1]!), {
        counterEpoch: 'b1',
        users: [{ id: 'alice', upBytes: 100, downBytes: 400 }],
      });
      await svc.scrapeOnce();
      await svc.settled();
      a = await svc.get(ownerActor(), alice.id);
      assert.equal(a.usedBytes, 1100);
      assert.equal(a.status, 'limited');
      assert.deepEqual(rendered.get(key(nodesAB()[0]!)), ['bob'], 'off node A');
      assert.deepEqual(rendered.get(key(nodesAB()[1]!)), ['bob'], 'off node B');
      // The user's chart has the traffic in the current hour.
      const usage = await svc.usage(ownerActor(), alice.id, 24);
      assert.deepEqual(
        usage.points.map((p) => p.up + p.down),
        [1100],
      );
      // Each node's chart has its own share (600 on A, 500 on B), for anyone who may see the host.
      const viewer = { ...actorOf({ id: as.viewer.userId, role: 'viewer' }), ip: null };
      const [onA, onB] = await Promise.all(nodesAB().map((n) => svc.nodeUsage(viewer, n, 24)));
      assert.deepEqual(
        [onA!.points.map((p) => p.up + p.down), onB!.points.map((p) => p.up + p.down)],
        [[600], [500]],
      );
      const scopedElsewhere = {
        ...actorOf({ id: 'op-x', role: 'operator', scoped: true }, [{ hostId: hostB, role: 'operator' }]),
        ip: null,
      };
      await assert.rejects(svc.nodeUsage(scopedElsewhere, nodesAB()[0]!, 24), /host/i);
      // The route: a viewer reads it; an unknown node is 404.
      const route = await t.request(`/api/v1/proxy-users/nodes/${hostB}/vpn/usage?hours=24`, {
        as: as.viewer,
      });
      assert.equal(route.status, 200, await route.clone().text());
      assert.ok(Array.isArray(((await route.json()) as { points: unknown[] }).points));
      const missing = await t.request(`/api/v1/proxy-users/nodes/${hostB}/nope/usage`, { as: as.viewer });
      assert.equal(missing.status, 404);
    },
  );

  test('a counter reset neither double-counts nor loses traffic; two scrapers at once count once', async () => {
    const carol = await svc.create(ownerActor(), { name: 'carol', nodes: [nodesAB()[0]!] });
    const node = nodesAB()[0]!;
    const repo = createProxyUsersRepository(t.db);
    const read = (epoch: string, up: number) =>
      repo.recordReading(node, epoch, [{ id: 'carol', up, down: 0 }], clock);
    await read('a1', 500); // first sight: 500
    await read('a1', 500); // same reading again: 0
    await read('a2', 100); // the proxy restarted: its 100 are new
    await read('a2', 50); // a smaller value in the same epoch: a restart too, 50 new
    await read('a2', 80); // +30
    await Promise.all([read('a2', 200), read('a2', 200)]); // two scrapers, one reading: +120 once
    const c = await svc.get(ownerActor(), carol.id);
    assert.equal(c.usedBytes, 500 + 100 + 50 + 30 + 120);
    assert.equal(c.lifetimeBytes, c.usedBytes);
  });

  test('expiry marks the user expired and takes it off its nodes within one scrape', async () => {
    const dave = await svc.create(ownerActor(), {
      name: 'dave',
      expiresAt: new Date(clock.getTime() + 60_000).toISOString(),
      nodes: nodesAB(),
    });
    await svc.settled();
    assert.ok(rendered.get(key(nodesAB()[1]!))!.includes('dave'));
    clock = new Date(clock.getTime() + 61_000);
    await svc.scrapeOnce();
    await svc.settled();
    assert.equal((await svc.get(ownerActor(), dave.id)).status, 'expired');
    assert.ok(!rendered.get(key(nodesAB()[0]!))!.includes('dave'));
    assert.ok(!rendered.get(key(nodesAB()[1]!))!.includes('dave'));
  });

  test('a daily reset zeroes usage and puts a limited user back on its nodes', async () => {
    const erin = await svc.create(ownerActor(), {
      name: 'erin',
      dataLimitBytes: 100,
      resetPeriod: 'daily',
      nodes: [nodesAB()[1]!],
    });
    const node = nodesAB()[1]!;
    counters.set(key(node), {
      counterEpoch: 'b1',
      users: [
        { id: 'alice', upBytes: 100, downBytes: 400 },
        { id: 'erin', upBytes: 150, downBytes: 0 },
      ],
    });
    await svc.scrapeOnce();
    await svc.settled();
    assert.equal((await svc.get(ownerActor(), erin.id)).status, 'limited');
    assert.ok(!rendered.get(key(node))!.includes('erin'));
    clock = new Date(clock.getTime() + 12 * 3_600_000);
    await svc.enforce();
    assert.equal((await svc.get(ownerActor(), erin.id)).status, 'limited', 'not a day yet');
    clock = new Date(clock.getTime() + 12 * 3_600_000 + 1000);
    await svc.scrapeOnce(); // same counters: no new traffic
    await svc.settled();
    const e = await svc.get(ownerActor(), erin.id);
    assert.equal(e.status, 'active');
    assert.equal(e.usedBytes, 0);
    assert.ok(rendered.get(key(node))!.includes('erin'));
  });
});

interface UserBody {
  user: {
    id: string;
    name: string;
    status: string;
    secret: string;
    uuid: string;
    subscriptionUrl: string;
    ownerId: string;
  };
}

describe('routes', () => {
  const api = (path: string, who: SignedIn, init: { method?: string; json?: unknown } = {}) =>
    t.request(`/api/v1/proxy-users${path}`, { ...init, as: who });

  test('owner scoping: an operator sees only its own users; an admin sees all; a viewer none', async () => {
    const made = await api('', as.operator, { method: 'POST', json: { name: 'op-one', note: 'mine' } });
    assert.equal(made.status, 201, await made.clone().text());
    const { user } = (await made.json()) as UserBody;
    assert.equal(user.ownerId, as.operator.userId);
    await api('', operator2, { method: 'POST', json: { name: 'op-two' } });
    const names = async (who: SignedIn, q = '') =>
      ((await (await api(q, who)).json()) as { users: { name: string }[] }).users.map((u) => u.name);
    assert.deepEqual(await names(as.operator), ['op-one']);
    assert.deepEqual(await names(operator2), ['op-two']);
    assert.ok((await names(as.admin)).includes('op-one') && (await names(as.admin)).includes('op-two'));
    assert.deepEqual(await names(as.admin, '?search=mine'), ['op-one']);
    assert.equal((await api(`/${user.id}`, operator2)).status, 404);
    const patch = await api(`/${user.id}`, operator2, { method: 'PATCH', json: { status: 'disabled' } });
    assert.equal(patch.status, 404);
    assert.equal((await api('', as.viewer)).status, 403);
    // Giving a user to another owner needs proxy.users.all.
    const give = await api(`/${user.id}`, as.operator, {
      method: 'PATCH',
      json: { ownerId: operator2.userId },
    });
    assert.equal(give.status, 403);
    const bulk = await api('/bulk', operator2, {
      method: 'POST',
      json: { ids: [user.id], action: 'delete' },
    });
    assert.deepEqual(await bulk.json(), { count: 0 }, "another owner's user is skipped");
  });

  test(
    'links, regenerate, rotate, subscription formats and header, bulk, audit',
    { timeout: 60_000 },
    async () => {
      const made = await api('', as.owner, {
        method: 'POST',
        json: {
          name: 'frank',
          dataLimitBytes: 5_000_000,
          expiresAt: '2030-01-01T00:00:00Z',
          nodes: [
            { hostId: hostA, instance: 'mt' },
            { hostId: hostB, instance: 'vpn', inbounds: ['vless-in'] },
          ],
        },
      });
      assert.equal(made.status, 201, await made.clone().text());
      const { user } = (await made.json()) as UserBody;

      const links = (await (await api(`/${user.id}/links`, as.owner)).json()) as {
        links: { protocol: string; link: string; webLink: string | null; qr: string }[];
        subscriptionUrl: string;
      };
      assert.deepEqual(
        links.links.map((l) => l.protocol),
        ['mtproto', 'vless'],
        'only the vless inbound',
      );
      const tg = links.links[0]!.link;
      assert.equal(
        tg,
        `tg://proxy?server=mt.example.net&port=443&secret=ee${user.secret}${Buffer.from('www.google.com').toString('hex')}`,
      );
      assert.ok(links.links[0]!.webLink!.startsWith('https://t.me/proxy?server=mt.example.net'));
      assert.ok(links.links[1]!.link.startsWith(`vless://${user.uuid}@vpn.example.net:8443?`));
      assert.match(Buffer.from(links.links[0]!.qr.split(',')[1]!, 'base64').toString(), /^<svg/);

      // A node that serves no users, or a missing inbound, is refused.
      const bad = await api(`/${user.id}`, as.owner, {
        method: 'PATCH',
        json: { nodes: [{ hostId: hostB, instance: 'web' }] },
      });
      assert.equal(bad.status, 400);
      const noInbound = await api(`/${user.id}`, as.owner, {
        method: 'PATCH',
        json: { nodes: [{ hostId: hostB, instance: 'vpn', inbounds: ['nope'] }] },
      });
      assert.equal(noInbound.status, 400);

      // The public subscription: base64 list, Clash YAML, sing-box JSON, with the userinfo header.
      const subPath = new URL(user.subscriptionUrl).pathname;
      const sub = await t.request(subPath);
      assert.equal(sub.status, 200);
      assert.equal(
        sub.headers.get('subscription-userinfo'),
        'upload=0; download=0; total=5000000; expire=1893456000',
      );
      const lines = Buffer.from(await sub.text(), 'base64')
        .toString()
        .split('\n');
      assert.deepEqual(lines, [links.links[1]!.link], 'MTProxy is not in the v2ray subscription');
      const clash = await t.request(subPath, { headers: { 'user-agent': 'ClashMeta/1.18' } });
      const yaml = parseYaml(await clash.text()) as {
        proxies: { type: string; uuid: string; port: number }[];
      };
      assert.deepEqual(
        yaml.proxies.map((p) => [p.type, p.uuid, p.port]),
        [['vless', user.uuid, 8443]],
      );
      const sing = (await (await t.request(`${subPath}?format=sing-box`)).json()) as {
        outbounds: { type: string }[];
      };
      assert.deepEqual(
        sing.outbounds.map((o) => o.type),
        ['selector', 'vless', 'direct'],
      );

      // Regenerate and rotate.
      const regen = (await (
        await api(`/${user.id}/regenerate`, as.owner, { method: 'POST', json: { which: 'secret' } })
      ).json()) as UserBody;
      assert.notEqual(regen.user.secret, user.secret);
      assert.match(regen.user.secret, /^[0-9a-f]{32}$/);
      assert.equal(regen.user.uuid, user.uuid);
      const rotated = (await (
        await api(`/${user.id}/rotate-subscription`, as.owner, { method: 'POST' })
      ).json()) as UserBody;
      assert.notEqual(rotated.user.subscriptionUrl, user.subscriptionUrl);
      assert.equal((await t.request(subPath)).status, 404, 'the old URL stops answering');
      assert.equal((await t.request(new URL(rotated.user.subscriptionUrl).pathname)).status, 200);

      // Bulk disable; a disabled user's subscription still answers, with no links.
      const bulk = await api('/bulk', as.owner, {
        method: 'POST',
        json: { ids: [user.id], action: 'disable' },
      });
      assert.deepEqual(await bulk.json(), { count: 1 });
      const disabled = (await (await api(`/${user.id}`, as.owner)).json()) as UserBody;
      assert.equal(disabled.user.status, 'disabled');
      const empty = await t.request(new URL(rotated.user.subscriptionUrl).pathname);
      assert.equal(Buffer.from(await empty.text(), 'base64').toString(), '');
      const enable = await api('/bulk', as.owner, {
        method: 'POST',
        json: { ids: [user.id], action: 'enable' },
      });
      assert.deepEqual(await enable.json(), { count: 1 });
      assert.equal(((await (await api(`/${user.id}`, as.owner)).json()) as UserBody).user.status, 'active');

      const audit = (await (await t.request('/api/v1/audit?limit=200', { as: as.owner })).json()) as {
        entries: { action: string }[];
      };
      const actions = new Set(audit.entries.map((e) => e.action));
      for (const a of [
        'proxy.user.create',
        'proxy.user.regenerate',
        'proxy.user.rotate_subscription',
        'proxy.user.bulk_disable',
        'proxy.user.bulk_enable',
        'proxy.user.enforce',
      ])
        assert.ok(actions.has(a), a);
      assert.equal((await api(`/${user.id}`, as.owner, { method: 'DELETE' })).status, 204);
      assert.equal((await api(`/${user.id}`, as.owner)).status, 404);
    },
  );

  test("a node's public address is where its links and subscription point", { timeout: 60_000 }, async () => {
    const node = (path: string, init: { method?: string; json?: unknown } = {}, who = as.operator) =>
      t.request(`/api/v1/hosts/${hostB}/proxies/vpn${path}`, { ...init, as: who });
    const made = await api('', as.owner, {
      method: 'POST',
      json: { name: 'gina', nodes: [{ hostId: hostB, instance: 'vpn', inbounds: ['vless-in'] }] },
    });
    assert.equal(made.status, 201, await made.clone().text());
    const { user } = (await made.json()) as UserBody;
    const linksOf = async () =>
      ((await (await api(`/${user.id}/links`, as.owner)).json()) as { links: { link: string }[] }).links.map(
        (l) => l.link,
      );
    assert.ok(
      (await linksOf())[0]!.startsWith(`vless://${user.uuid}@vpn.example.net:8443?`),
      'host name first',
    );

    // Bad addresses are refused with the field named; a viewer may not set one.
    for (const bad of ['vpn.example.net:443', '[2001:db8::7]', '300.1.1.1', 'a b', '*.example.net']) {
      const r = await node('', { method: 'PUT', json: { publicAddress: bad } });
      assert.equal(r.status, 400, bad);
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'request.invalid');
      assert.match(body.error.message, /^publicAddress/);
    }
    assert.equal(
      (await node('', { method: 'PUT', json: { publicAddress: 'x.example' } }, as.viewer)).status,
      403,
    );

    const before = (await (await node('')).json()) as { node: { settings: unknown; state: string } };
    const set = await node('', { method: 'PUT', json: { publicAddress: 'edge.cdn.example.org' } });
    assert.equal(set.status, 200, await set.clone().text());
    const after = (
      (await set.json()) as { node: { publicAddress: string; settings: unknown; state: string } }
    ).node;
    assert.equal(after.publicAddress, 'edge.cdn.example.org');
    assert.deepEqual(after.settings, before.node.settings, 'settings untouched');
    assert.equal(after.state, before.node.state, 'an address alone does not make the node pending');
    assert.ok((await linksOf())[0]!.startsWith(`vless://${user.uuid}@edge.cdn.example.org:8443?`));
    const sub = await t.request(new URL(user.subscriptionUrl).pathname, { ip: '198.51.100.40' });
    assert.equal(sub.status, 200);
    assert.match(Buffer.from(await sub.text(), 'base64').toString(), /@edge\.cdn\.example\.org:8443\?/);

    // IPv6 goes in brackets in the link; null goes back to the host's name.
    assert.equal((await node('', { method: 'PUT', json: { publicAddress: '2001:db8::7' } })).status, 200);
    assert.ok((await linksOf())[0]!.startsWith(`vless://${user.uuid}@[2001:db8::7]:8443?`));
    assert.equal((await node('', { method: 'PUT', json: { publicAddress: null } })).status, 200);
    assert.ok((await linksOf())[0]!.startsWith(`vless://${user.uuid}@vpn.example.net:8443?`));

    const audit = (await (await t.request('/api/v1/audit?limit=50', { as: as.owner })).json()) as {
      entries: { action: string; detail: { publicAddress?: { from: string | null; to: string | null } } }[];
    };
    const changes = audit.entries
      .filter((e) => e.action === 'proxy.node.update' && e.detail.publicAddress)
      .map((e) => e.detail.publicAddress!.to);
    assert.deepEqual(changes.sort(), ['2001:db8::7', 'edge.cdn.example.org', null].sort());
    assert.equal((await api(`/${user.id}`, as.owner, { method: 'DELETE' })).status, 204);
  });

  test('the subscription route refuses bad tokens and limits requests per address', async () => {
    assert.equal((await t.request('/sub/not-a-token', { ip: '198.51.100.7' })).status, 404);
    let last = 0;
    for (let i = 0; i < 31; i++)
      last = (await t.request(`/sub/${'A'.repeat(43)}`, { ip: '198.51.100.7' })).status;
    assert.equal(last, 429);
    const other = await t.request(`/sub/${'A'.repeat(43)}`, { ip: '198.51.100.8' });
    assert.equal(other.status, 404, 'another address is not limited');
  });
});
