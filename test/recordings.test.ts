// Proves the terminal recording limits and the permission re-check through API tokens, with a real
// controller and agent: a session whose output passes the recording cap keeps running while its
// .cast stops with a visible note (and the row says so); the retention sweep deletes ended
// recordings and their files past the configured age but not a running one; a terminal opened with
// an API token is cut off within the 5 s re-check when the token's own scope loses the host (its
// group no longer holds it) or the token is revoked, although the user still holds terminal.open.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeTerminalInput } from '@keel/shared';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import { channelTicket, connectChannel, type ChannelClient } from './helpers/channels.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startTestController,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';

const CAP = 20_000;
let ctl: Awaited<ReturnType<typeof startTestController>>;
let api: ApiClient;
let hostId: string;
const procs: Proc[] = [];
const dirs: string[] = [];

interface Recording {
  id: string;
  endedAt: string | null;
  endReason: string | null;
  outputBytes: number;
}

before(async () => {
  // Read by the controller from its environment at start.
  process.env.KEEL_TERMINAL_RECORDING_MAX_BYTES = String(CAP);
  process.env.KEEL_RECORDINGS_RETENTION_DAYS = '30';
  ctl = await startTestController();
  dirs.push(ctl.dataDir);
  const dir = await enrollNewAgent(ctl, 'recorded-host');
  dirs.push(dir);
  procs.push(runAgent(dir));
  api = await signedInApi(ctl);
  hostId = await waitFor(
    async () =>
      (await api.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts.find((h) => h.online)
        ?.id,
    30_000,
    'agent online',
  );
});

after(async () => {
  await ctl?.close();
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
  delete process.env.KEEL_TERMINAL_RECORDING_MAX_BYTES;
  delete process.env.KEEL_RECORDINGS_RETENTION_DAYS;
});

function collect(client: ChannelClient) {
  const chunks: Buffer[] = [];
  client.onData = (c) => chunks.push(c);
  const text = () => Buffer.concat(chunks).toString('utf8');
  return {
    text,
    until: (re: RegExp, ms = 40_000) =>
      waitFor(() => re.test(text()), ms, `${re} in ${JSON.stringify(text().slice(-200))}`),
  };
}

async function recordings(): Promise<Recording[]> {
  return (await api.get<{ recordings: Recording[] }>(`/recordings?hostId=${hostId}`)).body.recordings;
}

test(
  'past the size cap the recording stops with a note; the session goes on',
  { timeout: 60_000 },
  async () => {
    const { url } = await channelTicket(api, hostId, 'terminal', { cols: 80, rows: 24 });
    const term = await connectChannel(api.baseUrl, url);
    const out = collect(term);
    await term.opened;
    term.ws.send(encodeTerminalInput(`head -c 100000 /dev/zero | tr '\\0' x; echo; echo after-""cap\r`));
    await out.until(/after-cap/);
    term.ws.send(encodeTerminalInput('echo still-""alive; exit\r'));
    await out.until(/still-alive/);
    await term.closed;
    const rec = await waitFor(
      async () => (await recordings()).find((r) => r.endedAt),
      10_000,
      'the recording ended',
    );
    assert.ok(rec.outputBytes > 100_000, `outputBytes ${rec.outputBytes}`);
    assert.match(rec.endReason ?? '', /size cap/);
    const file = join(ctl.dataDir, 'recordings', `${rec.id}.cast`);
    const size = statSync(file).size;
    assert.ok(size <= CAP + 300, `file ${size} bytes`);
    const cast = readFileSync(file, 'utf8');
    assert.match(cast, /the recording stopped here at its size cap of 20000 bytes/);
    assert.doesNotMatch(cast, /still-alive/);
  },
);

test(
  'the retention sweep deletes old ended recordings and their files, not a running one',
  { timeout: 60_000 },
  async () => {
    const ended = (await recordings()).filter((r) => r.endedAt);
    assert.ok(ended.length > 0);
    const { url } = await channelTicket(api, hostId, 'terminal', { cols: 80, rows: 24 });
    const running = await connectChannel(api.baseUrl, url);
    await running.opened;
    const openRec = await waitFor(
      async () => (await recordings()).find((r) => !r.endedAt),
      10_000,
      'the running recording',
    );
    // Nothing is 30 days old yet.
    assert.equal(await ctl.services.recordings.sweep(new Date()), 0);
    // Thirty-one days on, every ended recording goes; the running one stays.
    const removed = await ctl.services.recordings.sweep(new Date(Date.now() + 31 * 86_400_000));
    assert.equal(removed, ended.length);
    const left = await recordings();
    assert.deepEqual(
      left.map((r) => r.id),
      [openRec.id],
    );
    for (const r of ended) assert.ok(!existsSync(join(ctl.dataDir, 'recordings', `${r.id}.cast`)));
    assert.ok(existsSync(join(ctl.dataDir, 'recordings', `${openRec.id}.cast`)));
    running.ws.close();
    await running.closed;
  },
);

async function tokenTerminal(secret: string): Promise<ChannelClient> {
  const res = await fetch(`${api.baseUrl}/api/v1/hosts/${hostId}/channels`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'terminal', params: { cols: 80, rows: 24 } }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { url } = (await res.json()) as { url: string };
  const client = await connectChannel(api.baseUrl, url);
  await client.opened;
  return client;
}

test('a terminal opened with an API token follows the token’s scope', { timeout: 60_000 }, async () => {
  const group = await api.post<{ group: { id: string } }>('/groups', {
    name: 'token-scope',
    hostIds: [hostId],
  });
  assert.equal(group.status, 201, JSON.stringify(group.body));
  const made = await api.post<{ token: { id: string }; secret: string }>('/tokens', {
    name: 'terminal bot',
    permissions: ['host.view', 'terminal.open'],
    groupIds: [group.body.group.id],
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));

  // The group loses the host: the token no longer reaches it; the user (an admin) still does.
  const first = await tokenTerminal(made.body.secret);
  const t0 = Date.now();
  const patched = await api.request('PATCH', `/groups/${group.body.group.id}`, { hostIds: [] });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  const { end } = await first.closed;
  assert.equal(end?.type === 'close' ? end.code : undefined, 'auth.forbidden');
  assert.ok(Date.now() - t0 < 12_000);
  // The admin's own session is not affected.
  const { url } = await channelTicket(api, hostId, 'terminal', { cols: 80, rows: 24 });
  const own = await connectChannel(api.baseUrl, url);
  await own.opened;

  // A token revoked mid-session cuts its session too.
  await api.request('PATCH', `/groups/${group.body.group.id}`, { hostIds: [hostId] });
  const second = await tokenTerminal(made.body.secret);
  assert.equal((await api.request('DELETE', `/tokens/${made.body.token.id}`)).status, 200);
  const closed = await second.closed;
  assert.equal(closed.end?.type === 'close' ? closed.end.code : undefined, 'auth.forbidden');
  assert.equal(own.ws.readyState, own.ws.OPEN);
  own.ws.close();
  await own.closed;
});
