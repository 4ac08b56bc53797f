// Starts a whole controller: database (migrated), services, agent gateway and HTTP app on one
// server, the first admin on a new install, and an optional local agent for this host.
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import type { Logger } from 'pino';
import { createApp } from './app.ts';
import { createLocalReplicaBus, type ReplicaBus } from './bus/index.ts';
import { EVENT_MAC_PURPOSE } from './bus/wire.ts';
import { CHANNEL_KEY_PURPOSE, replicaWill, type ChannelRouting } from './bus/channels.ts';
import { randomUUID } from 'node:crypto';
import type { Config } from './config/index.ts';
import { databaseReachable, openDatabase, type OpenDatabase } from './db/index.ts';
import { Gateway } from './gateway/index.ts';
import type { GatewayStore } from './gateway/store.ts';
import { loadControllerIdentity } from './identity.ts';
import { loadSecretBox } from './secrets.ts';
import { createAuditRepository } from './repositories/audit.ts';
import { createHostRepository, toHostView, type HostRepository } from './repositories/hosts.ts';
import { createReplicaRepository } from './repositories/replicas.ts';
import { createStreamRepository } from './repositories/streams.ts';
import { startReplicaLease } from './services/replicas.ts';
import { createAuditService, type AuditService } from './services/audit.ts';
import { fileAuditAnchor } from './services/audit-anchor.ts';
import { createServices, type Services } from './services/index.ts';
import { recordingLimitsFromEnv } from './services/recordings.ts';
import { ChannelHub } from './channels/hub.ts';
import { linkForHost, wireChannels } from './channels/gateway-link.ts';
import { attachChannelSockets } from './channels/socket.ts';

/** A running controller. */
export interface Controller {
  config: Config;
  url: string;
  port: number;
  fingerprint: string;
  server: Server;
  gateway: Gateway;
  /** Live channels relayed by this controller. */
  channels: ChannelHub;
  services: Services;
  database: OpenDatabase;
  /** The fleet bus: in process, or shared with the other replicas over MQTT (KEEL_MQTT_URL). */
  bus: ReplicaBus;
  /** Set on a brand-new install: the generated first admin, to print once. */
  firstAdmin: { username: string; password: string } | null;
  close(): Promise<void>;
}

/** Where the built console lives, if it was built. */
export function defaultWebRoot(): string | undefined {
  const candidates = [
    new URL('./web/', import.meta.url), // bundled: dist/web
    new URL('../../web/build/', import.meta.url), // source checkout
  ];
  const found = candidates.find((u) => existsSync(new URL('index.html', u)));
  return found ? fileURLToPath(found) : undefined;
}

/** Adapts the repositories to what the gateway needs, auditing enrollments. */
function gatewayStore(
  hosts: HostRepository,
  db: OpenDatabase['db'],
  audit: AuditService,
  replicaId: string,
): GatewayStore {
  const streams = createStreamRepository(db);
  return {
    async findHostsByKeys(publicKeys) {
      const rows = await hosts.findByPublicKeys(publicKeys);
      return new Map(rows.map((h) => [h.publicKey, { id: h.id, revoked: h.revokedAt !== null }]));
    },
    async activeHostKeys() {
      const rows = await hosts.activeKeys();
      return new Map(rows.map((h) => [h.publicKey, { id: h.id, revoked: false }]));
    },
    async enroll(input) {
      const host = await hosts.enroll(input);
      await audit.record(`agent:${host.id}`, 'host.enroll', `host:${host.id}`, { name: host.name });
      return { id: host.id };
    },
    async applyPresence(changes, at) {
      return (await hosts.applyPresence(changes, at, replicaId)).map(toHostView);
    },
    sessionInfoOf: (hostIds) => hosts.sessionStates(hostIds),
    async recordKeyConflict(hostId, peer) {
      await audit.record(`agent:${hostId}`, 'host.key_conflict', `host:${hostId}`, { peer }, peer);
    },
    appendStream: (hostId, stream, batch) => streams.append(hostId, stream, batch),
  };
}

/** `KEEL_ALERTS_EVAL_SECONDS` (1-3600, default 15) in ms. */
function alertsEvalMs(): number {
  const raw = process.env.KEEL_ALERTS_EVAL_SECONDS;
  const n = raw === undefined || raw === '' ? 15 : Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 3600) {
    throw new Error(`KEEL_ALERTS_EVAL_SECONDS must be a whole number from 1 to 3600, got "${raw}"`);
  }
  return n * 1000;
}

/** Opens storage and starts serving; resolves once listening. */
export async function startController(
  config: Config,
  log: Logger,
  opts: { webRoot?: string } = {},
): Promise<Controller> {
  const identity = loadControllerIdentity(config.dataDir);
  // The master key for secrets at rest (KEEL_MASTER_KEY or <dataDir>/master.key); only its id is logged.
  const secrets = loadSecretBox({ dataDir: config.dataDir });
  log.info({ keyId: secrets.keyId, source: secrets.source }, 'master key loaded');
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
  log.info({ driver: database.driver }, 'database ready');
  const hosts = createHostRepository(database.db);
  // With a broker, replicas share their events (bus/mqtt.ts); the services hear only this replica's
  // own (`bus.local`: audit rows and pushes to agents happen once, where the session is), the
  // routes every replica's (the console's live views).
  // Its will (published by the broker if this process dies) ends the channels routed through it.
  const busId = randomUUID();
  // The lease id is known before the bus: the will names it, so the other replicas stop routing to
  // the hosts this one holds at once when it is heard (bus/channels.ts).
  const leaseId = randomUUID();
  const channelKey = secrets.deriveKey(CHANNEL_KEY_PURPOSE);
  const mqttBus = config.mqttUrl
    ? await (
        await import('./bus/mqtt.ts')
      ).createMqttBus({
        url: config.mqttUrl,
        prefix: config.mqttTopicPrefix,
        eventKey: secrets.deriveKey(EVENT_MAC_PURPOSE),
        log: log.child({ component: 'bus' }),
        replicaId: busId,
        will: replicaWill(channelKey, config.mqttTopicPrefix, busId, leaseId),
      })
    : null;
  const bus: ReplicaBus = mqttBus ?? createLocalReplicaBus();
  // Hosts whose sessions belonged to a controller that is gone (this one before a restart, or a
  // replica that stopped or crashed) are offline now; those another running replica holds are not.
  const replicaRepository = createReplicaRepository(database.db);
  const lease = await startReplicaLease({
    id: leaseId,
    replicas: replicaRepository,
    log: log.child({ component: 'replicas' }),
    alone: database.driver === 'pglite',
    onReleased: (released) => {
      for (const host of released) bus.publish({ type: 'host', host: toHostView(host) });
    },
    onLeaseLost: () => gateway.reassertPresence(),
  });
  // The chain's head is anchored beside the controller key, out of reach of a database edit.
  const audit = createAuditService({
    audit: createAuditRepository(database.db),
    log,
    anchor: fileAuditAnchor(config.dataDir),
  });
  const publishHost = async (hostId: string) => {
    const host = await hosts.get(hostId);
    if (host) bus.publish({ type: 'host', host: toHostView(host) });
  };
  const gateway = new Gateway({
    identity,
    store: gatewayStore(hosts, database.db, audit, lease.id),
    log: log.child({ component: 'gateway' }),
    maxFrameBytes: config.maxFrameBytes,
    heartbeatMs: config.heartbeatMs,
    maxPendingHandshakes: config.maxPendingHandshakes,
    maxPendingHandshakesPerAddress: config.maxPendingHandshakesPerAddress,
    trustProxy: config.trustProxy,
    onHostChanged: (hostId) => {
      publishHost(hostId).catch((err: unknown) =>
        log.error({ err, host: hostId }, 'publishing host change failed'),
      );
    },
    onHostViews: (views) => {
      for (const host of views) bus.publish({ type: 'host', host });
    },
    onStreamStored: (stored) => bus.publish({ type: 'stream.stored', ...stored }),
  });
  // Channel routing (made once the hub exists, below) also tells which replicas are gone (their wills).
  let channelRouting: ChannelRouting | null = null;
  // With a broker, a request for a host another replica holds goes to that replica (bus/routing.ts).
  const routing = mqttBus
    ? (await import('./bus/routing.ts')).routeRequests({
        bus: mqttBus,
        gateway,
        replicaId: lease.id,
        hosts,
        secrets,
        log: log.child({ component: 'bus' }),
        // Channel routing hears the wills (made below, once the hub exists).
        holderGone: (id) => channelRouting?.holderGone(id) ?? false,
      })
    : null;
  const agents = routing ?? gateway;
  const services = createServices({
    db: database.db,
    bus: bus.local,
    ...(mqttBus ? { fleetBus: bus } : {}),
    gateway: agents,
    log,
    config,
    controllerFingerprint: identity.fingerprint,
    audit,
    secrets,
    recordings: {
      dir: join(config.dataDir, 'recordings'),
      recordInput: process.env.KEEL_TERMINAL_RECORD_INPUT === '1',
      ...recordingLimitsFromEnv(process.env),
    },
  });
  // Process events go into the audit trail after they are stored and before they are acked.
  gateway.sinks.onStored('events', services.processes.auditEvents);
  // Metrics are stored one row per tick (not in chunks) and rolled up every minute.
  gateway.sinks.register('metrics', services.metrics.sink);
  services.metrics.start();
  services.proxyUsers.start(); // traffic scrapes every KEEL_PROXY_SCRAPE_SECONDS, quotas, expiries, resets
  // Check results are stored one row per run; alerts are evaluated and delivered every 15 s.
  gateway.sinks.register('checks', services.checks.sink);
  services.checks.start();
  services.alerts.start(alertsEvalMs());
  services.agentUpgrades.run(); // agent rollouts left running by the last controller go on
  await services.proxyNodes.start(); // drift events; rollouts the last run left mid-way become halted
  const first = await services.users.ensureFirstAdmin();
  const resealed = await services.twoFactor.sealStoredSecrets(); // plaintext or retired-key rows
  if (resealed)
    log.info({ rows: resealed, holder: 'users.totp_secret' }, 'secrets sealed under the master key');
  const proxySealed = await services.proxyUsers.sealStoredSecrets(); // proxy users' protocol secrets
  if (proxySealed)
    log.info({ rows: proxySealed, holder: 'proxy_users' }, 'secrets sealed under the master key');
  const channelsSealed = await services.notifications.sealStoredSecrets(); // channel credentials
  if (channelsSealed)
    log.info(
      { rows: channelsSealed, holder: 'notification_channels.secret' },
      'secrets sealed under the master key',
    );
  await services.recordings.finishOrphans(); // sessions cut short by this controller's last stop
  services.recordings.start(); // retention sweep
  services.logRetention.start(); // per-process log retention (KEEL_LOG_RETENTION_*)
  let ready = true;
  // After a broker outage the other replicas may have missed changes of the hosts held here, and
  // this one revocations made through them: a session held here for a revoked host closes now.
  bus.onReconnected(() => {
    hosts
      .list()
      .then((all) => {
        for (const h of all) {
          if (!gateway.isOnline(h.id)) continue;
          if (h.revokedAt) gateway.disconnect(h.id, 'revoked');
          else bus.publish({ type: 'host', host: toHostView(h) });
        }
      })
      .catch((err: unknown) => log.error({ err }, 'resending host states after a broker outage failed'));
  });
  // With replicas, a revocation made through another one reaches this one over the broker; a
  // message dropped on the way (a client with the broker's credentials can) must not keep a
  // revoked agent's session open here: the database is checked every KEEL_REVOCATION_CHECK_SECONDS
  // (default 30) too.
  const revocationSweep = mqttBus
    ? setInterval(() => {
        hosts
          .list()
          .then((all) => {
            for (const h of all) {
              if (h.revokedAt && gateway.isOnline(h.id) && gateway.disconnect(h.id, 'revoked'))
                log.warn({ host: h.id }, 'session of a revoked host closed by the periodic check');
            }
          })
          .catch((err: unknown) => log.error({ err }, 'checking held sessions for revocations failed'));
      }, config.revocationCheckSeconds * 1000).unref()
    : null;
  const app = createApp({
    db: database.db,
    bus,
    gateway: agents,
    config,
    log,
    controllerFingerprint: identity.fingerprint,
    services,
    ready: async () => ready && (await databaseReachable(database.db)),
    webRoot: opts.webRoot ?? defaultWebRoot(),
    trustProxy: config.trustProxy,
  });
  const server = createServer(getRequestListener(app.fetch));
  const keys = await gateway.loadKeys();
  log.debug({ hosts: keys }, 'agent key index loaded');
  gateway.attach(server);
  services.prometheus.figures.heartbeatRttMs = (hostId) => gateway.heartbeatRttMs(hostId);

  // With a broker, a channel to a host another replica holds goes through it (bus/channels.ts).
  const channels = new ChannelHub({
    log: log.child({ component: 'channels' }),
    linkFor: linkForHost(gateway),
    tap: services.recordings.tap,
    ...(mqttBus ? { remote: async (grant) => channelRouting?.open(grant) } : {}),
  });
  wireChannels(gateway, channels);
  channelRouting = mqttBus
    ? (await import('./bus/channels.ts')).routeChannels({
        bus: mqttBus,
        hub: channels,
        replicaId: lease.id,
        hosts,
        key: channelKey,
        log: log.child({ component: 'bus' }),
        liveLeases: (ids) => replicaRepository.live(ids),
      })
    : null;
  if (mqttBus && routing) {
    services.prometheus.figures.bus = () => {
      const events = mqttBus.stats();
      const routed = routing.stats();
      const channelsRouted = channelRouting?.stats();
      return {
        connected: mqttBus.connected,
        published: events.sent,
        received: events.received,
        unsent: events.unsent,
        malformed: events.malformed,
        unverified: events.unverified,
        ...routed,
        refused: routed.refused + (channelsRouted?.refused ?? 0),
        ...(channelsRouted
          ? {
              channelsOpened: channelsRouted.opened,
              channelsServed: channelsRouted.served,
              channelsRouted: channelsRouted.open,
            }
          : {}),
      };
    };
  }
  services.prometheus.figures.channelsOpen = () => channels.openCount;
  // Jobs open their channels through the same hub; the scheduler starts once they can.
  services.jobs.attach(channels);
  services.schedules.start();
  const closeChannels = attachChannelSockets(server, {
    hub: channels,
    tickets: services.channels.tickets,
    publicUrl: config.publicUrl,
    log: log.child({ component: 'channels' }),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = config.publicUrl;
  log.info({ port, url, fingerprint: identity.fingerprint }, 'controller listening');
  let closing: Promise<void> | null = null;
  return {
    config,
    url,
    port,
    fingerprint: identity.fingerprint,
    server,
    gateway,
    channels,
    services,
    database,
    bus,
    firstAdmin: first ? { username: first.user.username, password: first.password } : null,
    close() {
      closing ??= (async () => {
        ready = false;
        if (revocationSweep) clearInterval(revocationSweep);
        await services.schedules.stop();
        await services.jobs.stop();
        services.recordings.stop();
        services.logRetention.stop();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        channelRouting?.close();
        await closeChannels();
        await gateway.close();
        // Its sessions are closed and stored offline: no host names this replica any more.
        await lease.stop();
        server.closeAllConnections();
        await closed;
        await services.metrics.stop();
        await services.proxyUsers.stop();
        services.checks.stop();
        await services.alerts.stop();
        await services.agentUpgrades.stop();
        await services.proxyNodes.stop();
        await audit.flushAnchor(); // the audit anchor holds the last head before we go
        routing?.close();
        await bus.close();
        await database.close();
        log.info('controller stopped');
      })();
      return closing;
    },
  };
}
