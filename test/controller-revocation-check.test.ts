// Proves a replica with a broker closes the session of a host revoked in the database without any
// bus message (one dropped on the broker) at its next periodic check (KEEL_REVOCATION_CHECK_SECONDS,
// here 1 s), and that the agent then stays out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import postgres from 'postgres';
import { enrollHere, joinToken, runAgent, startTestController, tempDir, waitFor } from './helpers/fleet.ts';
import { clearedAfter, replicaServices } from './helpers/replicas.ts';

const left = clearedAfter();
const { procs, dirs, closers } = left;

test(
  'a revocation written to the database alone closes the session at the next check',
  { timeout: 120_000 },
  async (t) => {
    const services = await replicaServices(t, left, 'keel_revocation_check');
    if (!services) return;
    const ctl = await startTestController({
      env: { ...services, KEEL_REVOCATION_CHECK_SECONDS: '1' },
    });
    closers.push(() => ctl.close());
    dirs.push(ctl.dataDir);
    assert.equal(ctl.config.revocationCheckSeconds, 1);

    const agentDir = tempDir('keel-agent-');
    dirs.push(agentDir);
    const hostId = await enrollHere(
      agentDir,
      ctl.url,
      await joinToken(ctl),
      ctl.fingerprint,
      'revoked-in-db',
    );
    const agent = runAgent(agentDir);
    procs.push(agent);
    await waitFor(() => ctl.gateway.isOnline(hostId), 30_000, 'the host online');

    // As a revocation through another replica whose bus message never arrived: the row only.
    const sql = postgres(services.DATABASE_URL, { max: 1, onnotice: () => {} });
    closers.push(() => sql.end());
    await sql`update hosts set revoked_at = now() where id = ${hostId}`;
    const revokedAt = Date.now();
    await waitFor(() => !ctl.gateway.isOnline(hostId), 10_000, 'the session closed by the check');
    const tookMs = Date.now() - revokedAt;
    // One period, plus the database read and a loaded machine; the default (30 s) would not make it.
    assert.ok(tookMs < 5_000, `closed after ${tookMs} ms`);
    await waitFor(() => agent.output().includes('revoked'), 10_000, 'the agent was told it is revoked');
    // It stays out: its reconnects are refused.
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(ctl.gateway.isOnline(hostId), false);
  },
);
