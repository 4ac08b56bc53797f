// Proves the proxy share links and subscriptions: tg:// and t.me carry ee + secret + hex(tls domain);
// vless://, vmess://, trojan:// and ss:// links (taken from the base64 subscription) parsed the way a
// client does, turned into a real v2ray client config, carry bytes through a real v2ray server to
// a local target; the Clash profile has the sing-box profile as JSON with the
// fields those clients read; the subscription-userinfo header has the documented form.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  base64Subscription,
  clashProfile,
  mtprotoClientSecret,
  shareLink,
  singBoxProfile,
  subscriptionUserinfo,
  tgProxyLink,
  tmeProxyLink,
  type ProxyEndpoint,
} from './proxy-links.ts';

const secret = '0123456789abcdef0123456789abcdef';

describe('MTProxy links', () => {
  test('tg:// carries ee + secret + hex(tls domain); t.me is the same query', () => {
    const e = { protocol: 'mtproto', name: 'alice', server: 'mt.example.net', port: 443, secret } as const;
    const tg = tgProxyLink({ ...e, tlsDomain: 'www.google.com' });
    const m = /^tg:\/\/proxy\?server=mt\.example\.net&port=443&secret=ee([0-9a-f]{32})([0-9a-f]+)$/.exec(tg);
    assert.ok(m, tg);
    assert.equal(m[1], secret);
    assert.equal(Buffer.from(m[2]!, 'hex').toString('utf8'), 'www.google.com');
    assert.equal(
      tmeProxyLink({ ...e, tlsDomain: 'www.google.com' }),
      tg.replace('tg://proxy?', 'https://t.me/proxy?'),
    );
    assert.equal(new URL(tmeProxyLink(e)).searchParams.get('secret'), `dd${secret}`);
    assert.equal(shareLink({ ...e, tlsDomain: 'a.b' }), tgProxyLink({ ...e, tlsDomain: 'a.b' }));
    assert.throws(() => mtprotoClientSecret('XYZ'), /32 lower-case hex/);
  });
});

const uuid = randomUUID();
const password = 'pa:ss/wörd+#1';

/** Endpoints as the controller would make them for one user on one node (ports filled in below). */
function endpoints(ports: Record<string, number>): ProxyEndpoint[] {
  return [
    { protocol: 'vless', name: 'alice@vless', server: '127.0.0.1', port: ports.vless!, uuid },
    {
      protocol: 'vless',
      name: 'alice@vless-ws',
      server: '127.0.0.1',
      port: ports.vlessWs!,
      uuid,
      transport: { network: 'ws', security: 'none', path: '/v ws', host: 'cdn.example.net' },
    },
    { protocol: 'vmess', name: 'alice@vmess', server: '127.0.0.1', port: ports.vmess!, uuid },
    {
      protocol: 'trojan',
      name: 'alice@trojan',
      server: '127.0.0.1',
      port: ports.trojan!,
      password,
      transport: { network: 'tcp', security: 'none' },
    },
    {
      protocol: 'shadowsocks',
      name: 'alice@ss',
      server: '127.0.0.1',
      port: ports.ss!,
      method: 'chacha20-ietf-poly1305',
      password,
    },
    { protocol: 'mtproto', name: 'alice@mt', server: '127.0.0.1', port: 1, secret },
  ];
}

/**
 * A v2ray outbound from a share link, parsed as a client does (WHATWG URL, base64 JSON for vmess,
 * base64url userinfo for ss) — independent of the code that wrote the link.
 */
function outboundFromLink(link: string, tag: string): Record<string, unknown> {
  const scheme = link.slice(0, link.indexOf('://'));
  if (scheme === 'vmess') {
    const j = JSON.parse(Buffer.from(link.slice(8), 'base64').toString('utf8')) as Record<string, string>;
    assert.equal(j.v, '2');
    return {
      tag,
      protocol: 'vmess',
      settings: {
        vnext: [{ address: j.add, port: Number(j.port), users: [{ id: j.id, alterId: Number(j.aid) }] }],
      },
      streamSettings: { network: j.net, security: j.tls === 'tls' ? 'tls' : 'none' },
    };
  }
  const u = new URL(link);
  const stream = (q: URLSearchParams) => ({
    network: q.get('type') ?? 'tcp',
    security: q.get('security') ?? 'none',
    ...(q.get('type') === 'ws'
      ? { wsSettings: { path: q.get('path') ?? '/', headers: q.get('host') ? { Host: q.get('host') } : {} } }
      : {}),
  });
  const address = u.hostname;
  const port = Number(u.port);
  if (scheme === 'vless') {
    assert.equal(u.searchParams.get('encryption'), 'none');
    return {
      tag,
      protocol: 'vless',
      settings: { vnext: [{ address, port, users: [{ id: u.username, encryption: 'none' }] }] },
      streamSettings: stream(u.searchParams),
    };
  }
  if (scheme === 'trojan') {
    return {
      tag,
      protocol: 'trojan',
      settings: { servers: [{ address, port, password: decodeURIComponent(u.username) }] },
      streamSettings: stream(u.searchParams),
    };
  }
  if (scheme === 'ss') {
    const userinfo = Buffer.from(decodeURIComponent(u.username), 'base64url').toString('utf8');
    const colon = userinfo.indexOf(':');
    return {
      tag,
      protocol: 'shadowsocks',
      settings: {
        servers: [{ address, port, method: userinfo.slice(0, colon), password: userinfo.slice(colon + 1) }],
      },
    };
  }
  throw new Error(`unexpected link ${link}`);
}

const hasV2ray = spawnSync('sh', ['-c', 'command -v v2ray']).status === 0;
const needV2ray = hasV2ray || process.env.CI ? false : 'v2ray is not installed';

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups.reverse()) c();
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function startV2ray(dir: string, name: string, config: unknown): ChildProcess {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  const check = spawnSync('v2ray', ['-test', '-config', file], { encoding: 'utf8' });
  assert.equal(check.status, 0, `v2ray -test ${name}: ${check.stdout}${check.stderr}`);
  const child = spawn('v2ray', ['-config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  child.on('exit', (code) => {
    if (code !== null && code !== 0) console.error(`v2ray ${name} exited ${code}: ${out}`);
  });
  cleanups.push(() => child.kill('SIGKILL'));
  return child;
}

/** Sends `text` to 127.0.0.1:port and resolves with what comes back before the echo closes. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no echo through port ${port} (got "${got}")`));
    }, 5000);
    s.on('connect', () => s.write(text));
    s.on('data', (d) => {
      got += d.toString();
      if (got.length >= text.length) {
        clearTimeout(timer);
        s.end();
        resolve(got);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function eventually(f: () => Promise<string>, ms: number): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe('share links and the subscription in a real client (v2ray)', () => {
  test(
    'every link from the base64 subscription, parsed as a client does, carries bytes through v2ray',
    { skip: needV2ray, timeout: 60_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'keel-links-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const echo: Server = createServer((s) => s.pipe(s));
      await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
      cleanups.push(() => echo.close());
      const target = (echo.address() as AddressInfo).port;

      const ports: Record<string, number> = {};
      for (const k of ['vless', 'vlessWs', 'vmess', 'trojan', 'ss']) ports[k] = await freePort();
      const eps = endpoints(ports);

      // The server: one inbound per endpoint, holding the same user.
      startV2ray(dir, 'server', {
        log: { loglevel: 'warning' },
        inbounds: [
          {
            port: ports.vless,
            listen: '127.0.0.1',
            protocol: 'vless',
            settings: { clients: [{ id: uuid, email: 'alice' }], decryption: 'none' },
          },
          {
            port: ports.vlessWs,
            listen: '127.0.0.1',
            protocol: 'vless',
            settings: { clients: [{ id: uuid, email: 'alice' }], decryption: 'none' },
            streamSettings: { network: 'ws', wsSettings: { path: '/v ws' } },
          },
          {
            port: ports.vmess,
            listen: '127.0.0.1',
            protocol: 'vmess',
            settings: { clients: [{ id: uuid, alterId: 0, email: 'alice' }] },
          },
          {
            port: ports.trojan,
            listen: '127.0.0.1',
            protocol: 'trojan',
            settings: { clients: [{ password, email: 'alice' }] },
          },
          {
            port: ports.ss,
            listen: '127.0.0.1',
            protocol: 'shadowsocks',
            settings: { method: 'chacha20-ietf-poly1305', password, network: 'tcp' },
          },
        ],
        outbounds: [{ protocol: 'freedom' }],
      });

      // The client: the subscription decoded, one outbound per link, a fixed-target inbound each.
      const lines = Buffer.from(base64Subscription(eps), 'base64').toString('utf8').split('\n');
      assert.equal(lines.length, 5, 'MTProxy is left out of the v2ray subscription');
      assert.deepEqual(
        lines.map((l) => l.slice(0, l.indexOf('://'))),
        ['vless', 'vless', 'vmess', 'trojan', 'ss'],
      );
      const local: number[] = [];
      const inbounds = [];
      const outbounds = [];
      const rules = [];
      for (const [i, link] of lines.entries()) {
        local.push(await freePort());
        inbounds.push({
          tag: `in-${i}`,
          port: local[i],
          listen: '127.0.0.1',
          protocol: 'dokodemo-door',
          settings: { address: '127.0.0.1', port: target, network: 'tcp' },
        });
        outbounds.push(outboundFromLink(link, `out-${i}`));
        rules.push({ type: 'field', inboundTag: [`in-${i}`], outboundTag: `out-${i}` });
      }
      startV2ray(dir, 'client', { log: { loglevel: 'warning' }, inbounds, outbounds, routing: { rules } });

      for (const [i, link] of lines.entries()) {
        const text = `hello through ${link.slice(0, 8)} #${i}`;
        assert.equal(await eventually(() => roundTrip(local[i]!, text), 15_000), text, link);
      }
    },
  );
});

describe('subscription profiles', () => {
  const eps = endpoints({ vless: 1001, vlessWs: 1002, vmess: 1003, trojan: 1004, ss: 1005 });

  // The YAML text itself is parsed with a real YAML parser in the subscription route test.
  test('Clash: one proxy per endpoint and a group naming them', () => {
    const parsed = JSON.parse(JSON.stringify(clashProfile(eps))) as {
      proxies: Record<string, unknown>[];
      'proxy-groups': { proxies: string[] }[];
      rules: string[];
    };
    assert.deepEqual(
      parsed.proxies.map((p) => [p.type, p.port]),
      [
        ['vless', 1001],
        ['vless', 1002],
        ['vmess', 1003],
        ['trojan', 1004],
        ['ss', 1005],
      ],
    );
    assert.deepEqual(parsed.proxies[1]!['ws-opts'], { path: '/v ws', headers: { Host: 'cdn.example.net' } });
    assert.equal(parsed.proxies[3]!.password, password);
    assert.equal(parsed.proxies[4]!.cipher, 'chacha20-ietf-poly1305');
    assert.deepEqual(
      parsed['proxy-groups'][0]!.proxies,
      eps.slice(0, 5).map((e) => e.name),
    );
    assert.deepEqual(parsed.rules, ['MATCH,Keel']);
  });

  test('sing-box: JSON with one typed outbound per endpoint and a selector', () => {
    const parsed = JSON.parse(JSON.stringify(singBoxProfile(eps))) as {
      outbounds: { type: string; tag: string; server_port?: number; transport?: unknown; uuid?: string }[];
    };
    assert.deepEqual(
      parsed.outbounds.map((o) => o.type),
      ['selector', 'vless', 'vless', 'vmess', 'trojan', 'shadowsocks', 'direct'],
    );
    assert.deepEqual(parsed.outbounds[2]!.transport, {
      type: 'ws',
      path: '/v ws',
      headers: { Host: 'cdn.example.net' },
    });
    assert.equal(parsed.outbounds[1]!.uuid, uuid);
  });

  test('ss:// is SIP002 (base64url userinfo); vmess:// is the v2 JSON', () => {
    const ss = shareLink(eps[4]!);
    const u = new URL(ss);
    assert.equal(Buffer.from(u.username, 'base64url').toString(), `chacha20-ietf-poly1305:${password}`);
    assert.equal(u.hash, '#alice%40ss');
    const vmess = JSON.parse(Buffer.from(shareLink(eps[2]!).slice(8), 'base64').toString()) as Record<
      string,
      string
    >;
    assert.equal(vmess.id, uuid);
    assert.equal(vmess.ps, 'alice@vmess');
    assert.equal(vmess.port, '1003');
  });

  test('subscription-userinfo has the form clients read', () => {
    assert.equal(
      subscriptionUserinfo({
        upload: 10,
        download: 20.7,
        total: 1000,
        expire: new Date('2030-01-01T00:00:00Z'),
      }),
      'upload=10; download=20; total=1000; expire=1893456000',
    );
    assert.equal(
      subscriptionUserinfo({ upload: -1, download: 0, total: null, expire: null }),
      'upload=0; download=0; total=0; expire=0',
    );
  });
});
