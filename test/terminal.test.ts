// Proves the remote terminal end to end with a real controller and a real agent process, through
// the channel client an API user (or the console) uses: type `echo hi` and see `hi`, resize and
// see `stty size` change, exit and get the exit code; the session's asciicast recording is listed,
// downloadable and complete (and `asciinema cat` reads it where asciinema is installed); closing
// the client socket ends the shell (its pid is gone); a `yes` flood stays interruptible by ^C with
// a reader that stops reading and bounded memory on agent and controller; a user without
// terminal.open is refused; kill -9 of the agent mid-session ends the client's channel and still
// finalizes the recording. Start and end are in the audit log.
//
// The shell is a login shell of the tests' terminal user (KEEL_TEST_TERMINAL_USER, `keel-test`,
// which `npm test` makes when run as root: the system's skeleton profile, ~0.05 s), opened by the
// agent with `runuser -l` as on a host. Without it (not root, or KEEL_TEST_TERMINAL_USER=root) it is
// the login shell of the user running the tests, whose profile runs first: root's here runs
// `pyenv init` (a rehash under a lock every login shell takes in turn), 1 s idle, 3.7 s alone and
// 8-17 s for six at once at load 19. A terminal therefore first waits for the shell to answer, with
// a bound for that profile (SHELL_READY_MS); Keel's own timings are asserted after it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeTerminalInput, encodeTerminalResize } from '@keel/shared';
import type { ApiClient } from './helpers/api.ts';
import { channelTicket, connectChannel, rssOf, type ChannelClient } from './helpers/channels.ts';
import { kill, removeDir, waitFor, type ControllerProcess, type Proc, startFleet } from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: ControllerProcess;
let agent: Proc;
let hostId: string;

interface Terminal extends ChannelClient {
  text(): string;
  type(s: string): void;
  resize(cols: number, rows: number): void;
  until(re: RegExp, ms?: number): Promise<string>;
}

/** How long a login shell may take through its profile before it answers (see the top). */
const SHELL_READY_MS = 60_000;

/** Opens a terminal and waits until its shell answers a typed command (its profile has run). */
async function openTerminal(api: ApiClient, params = { cols: 80, rows: 24 }): Promise<Terminal> {
  const { url } = await channelTicket(api, hostId, 'terminal', params);
  const client = await connectChannel(api.baseUrl, url);
  const chunks: Buffer[] = [];
  client.onData = (chunk) => chunks.push(chunk);
  await Promise.race([
    client.opened,
    client.closed.then(({ end }) => {
      throw new Error(`closed before it opened: ${JSON.stringify(end)}`);
    }),
  ]);
  const text = () => Buffer.concat(chunks).toString('utf8');
  const term = Object.assign(client, {
    text,
    type: (s: string) => client.ws.send(encodeTerminalInput(s)),
    resize: (cols: number, rows: number) => client.ws.send(encodeTerminalResize(cols, rows)),
    async until(re: RegExp, ms = 10_000) {
      const found = () => re.exec(text())?.[1];
      // The output at the end of the wait, not at its start (that read "" while the shell was busy).
      return waitFor(found, ms, String(re)).catch(() =>
        assert.fail(`no ${re} after ${ms} ms in ${JSON.stringify(text().slice(-300))}`),
      );
    },
  });
  term.type('echo "shell-""up"\r');
  await term.until(/[\r\n](shell-up)\r\n/, SHELL_READY_MS);
  return term;
}

interface RecordingView {
  id: string;
  hostId: string;
  userId: string | null;
  endedAt: string | null;
  exitCode: number | null;
  endReason: string | null;
  outputBytes: number;
}

async function recordings(): Promise<RecordingView[]> {
  const res = await ctl.api.get<{ recordings: RecordingView[] }>(`/recordings?hostId=${hostId}`);
  assert.equal(res.status, 200);
  return res.body.recordings;
}

/** Downloads a .cast (not JSON, so not through the API helper's parsing request). */
async function download(id: string): Promise<{ status: number; type: string | null; text: string }> {
  const res = await ctl.api.fetchRaw(`/recordings/${id}.cast`);
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

function pidGone(pid: number): boolean {
  return !existsSync(`/proc/${pid}`);
}

before(async () => {
  ({ ctl, agent, hostId } = await startFleet(procs, dirs, {
    controller: 'process',
    env: { KEEL_HEARTBEAT_MS: '1000' },
    agentEnv: { KEEL_AGENT_LOG_LEVEL: 'info' },
    name: 'terminal-host',
  }));
});

after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

test('echo hi, resize, exit: the recording is complete and downloadable', { timeout: 90_000 }, async () => {
  const term = await openTerminal(ctl.api, { cols: 100, rows: 30 });
  term.type('echo "h""i"\r');
  await term.until(/[\r\n](hi)\r\n/);
  // The shell is the terminal user's login shell (the agent's KEEL_TERMINAL_USER, see the header).
  term.type('echo "user=$(id -un)"\r');
  assert.equal(
    await term.until(/[\r\n]user=(\S+)\r\n/),
    process.env.KEEL_TEST_TERMINAL_USER ?? userInfo().username,
  );
  term.resize(132, 43);
  term.type('stty size\r');
  assert.equal(await term.until(/[\r\n](43 132)\r\n/), '43 132');
  term.type('exit 7\r');
  const { end } = await term.closed;
  assert.equal(end?.type, 'close');
  assert.equal(end.type === 'close' ? end.exitCode : undefined, 7);

  const rec = await waitFor(
    async () => (await recordings()).find((r) => r.endedAt !== null && r.exitCode === 7),
    10_000,
    'the recording ended',
  );
  assert.ok(rec.outputBytes > 0);
  const cast = await download(rec.id);
  assert.equal(cast.status, 200);
  assert.equal(cast.type, 'application/x-asciicast');
  const lines = cast.text.trimEnd().split('\n');
  const header = JSON.parse(lines[0]!) as { version: number; width: number; height: number };
  assert.deepEqual([header.version, header.width, header.height], [2, 100, 30]);
  const events = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
  const output = events
    .filter((e) => e[1] === 'o')
    .map((e) => e[2])
    .join('');
  assert.match(output, /[\r\n]hi\r\n/);
  assert.match(output, /[\r\n]43 132\r\n/);
  assert.ok(events.some((e) => e[1] === 'r' && e[2] === '132x43'));
  assert.ok(!events.some((e) => e[1] === 'i'), 'input is not recorded by default');
  for (let i = 1; i < events.length; i++) assert.ok(events[i]![0] >= events[i - 1]![0], 'times ascend');

  // The Debian player reads it (.ci/run installs asciinema; under CI a missing one fails).
  if (existsSync('/usr/bin/asciinema') || process.env.CI) {
    const file = join(ctl.dataDir, 'downloaded.cast');
    writeFileSync(file, cast.text);
    // asciinema cat insists on a terminal: give it one (script), the file name is our own.
    const played = execFileSync('script', ['-qec', `asciinema cat '${file}'`, '/dev/null'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    assert.match(played, /[\r\n]hi\r/);
    assert.match(played, /43 132/);
  }

  // terminal.end is appended after the recording's row is finished (the wait above), not with it.
  const actions = async () =>
    (
      await ctl.api.get<{ entries: { action: string; detail: Record<string, unknown> }[] }>(
        '/audit?action=terminal.',
      )
    ).body.entries
      .filter((e) => e.detail.recording === rec.id)
      .map((e) => e.action)
      .sort();
  await waitFor(async () => (await actions()).includes('terminal.end'), 15_000, 'terminal.end audited');
  assert.deepEqual(await actions(), ['terminal.end', 'terminal.start']);

  const missing = await download('00000000-0000-4000-8000-000000000000');
  assert.equal(missing.status, 404);
});

test('closing the client socket ends the shell and its jobs', { timeout: 90_000 }, async () => {
  const term = await openTerminal(ctl.api);
  term.type('sleep 600 & echo "pid=$$ job=$!"\r');
  const pid = Number(await term.until(/pid=(\d+) job=\d+/));
  const job = Number(await term.until(/pid=\d+ job=(\d+)/));
  assert.ok(!pidGone(pid) && !pidGone(job));
  term.ws.close();
  await waitFor(() => pidGone(pid) && pidGone(job), 10_000, 'shell and job gone');
  await waitFor(
    async () => (await recordings()).find((r) => r.endReason === 'client closed the channel'),
    10_000,
    'the recording ended by the client',
  );
});

test('a yes flood with a stalled reader stays bounded; ^C stops it', { timeout: 100_000 }, async () => {
  const term = await openTerminal(ctl.api);
  term.type('echo "re""ady"\r');
  await term.until(/[\r\n](ready)\r\n/);
  const ctlRss = await rssOf(ctl.proc.child.pid!);
  const agentRss = await rssOf(agent.child.pid!);
  term.type('yes\r');
  await term.until(/(y\r\ny\r\ny\r\n)/);
  term.ws.pause(); // the client stops reading: the flood must wait, not pile up
  await new Promise((r) => setTimeout(r, 1_500));
  const ctlGrowth = (await rssOf(ctl.proc.child.pid!)) - ctlRss;
  const agentGrowth = (await rssOf(agent.child.pid!)) - agentRss;
  assert.ok(ctlGrowth < 40 * 1024 * 1024, `controller grew ${ctlGrowth} bytes`);
  assert.ok(agentGrowth < 40 * 1024 * 1024, `agent grew ${agentGrowth} bytes`);
  term.type('\x03');
  term.ws.resume();
  const started = Date.now();
  term.type('echo "done=$((6*7))"\r');
  await term.until(/(done=42)/, 15_000);
  assert.ok(Date.now() - started < 10_000);
  term.ws.close();
});

test('a user without terminal.open is refused', { timeout: 20_000 }, async () => {
  const { api: operator } = await ctl.api.newUser({ username: 'terminal-operator', role: 'operator' });
  const res = await operator.post<{ error: { code: string } }>(`/hosts/${hostId}/channels`, {
    kind: 'terminal',
  });
  assert.equal(res.status, 403);
  assert.equal(res.body.error.code, 'auth.forbidden');
  const list = await operator.get<{ error: { code: string } }>('/recordings');
  assert.equal(list.status, 403);
});

test('a user who loses terminal.open is cut off', { timeout: 90_000 }, async () => {
  const { api: admin, id } = await ctl.api.newUser({ username: 'terminal-admin', role: 'admin' });
  const term = await openTerminal(admin);
  term.type('echo "st""ill"\r');
  await term.until(/[\r\n](still)\r\n/);
  const changed = await ctl.api.request('PATCH', `/users/${id}`, { role: 'operator' });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  const { end } = await term.closed;
  assert.equal(end?.type === 'close' ? end.code : undefined, 'auth.forbidden');
});

test(
  'kill -9 of the agent mid-session: the client is told, the recording is finalized',
  { timeout: 90_000 },
  async () => {
    const term = await openTerminal(ctl.api);
    term.type('echo "be""fore"\r');
    await term.until(/[\r\n](before)\r\n/);
    await kill(agent);
    const { end } = await term.closed;
    assert.equal(end?.type, 'close');
    const rec = await waitFor(
      async () =>
        (await recordings()).find(
          (r) => r.endedAt !== null && r.exitCode === null && r.endReason !== 'client closed the channel',
        ),
      15_000,
      'the recording finalized',
    );
    const cast = await download(rec.id);
    assert.match(cast.text, /before/);
    for (const line of cast.text.trimEnd().split('\n')) JSON.parse(line);
  },
);
