// Builds every controller service over one database, so the HTTP app, the gateway and the CLI
// share them (one audit writer queue per process).
import type { Logger } from 'pino';
import type { FleetBus } from '../bus/index.ts';
import type { Db } from '../db/index.ts';
import type { AgentGateway } from '../gateway/types.ts';
import { createAuditRepository } from '../repositories/audit.ts';
import { createHostRepository } from '../repositories/hosts.ts';
import { createJoinTokenRepository } from '../repositories/join-tokens.ts';
import { createSessionsRepository } from '../repositories/sessions.ts';
import { createStreamRepository } from '../repositories/streams.ts';
import { createUsersRepository } from '../repositories/users.ts';
import { createGroupsRepository } from '../repositories/groups.ts';
import { createActorResolver, createGroupsService } from './groups.ts';
import { createTokensRepository } from '../repositories/tokens.ts';
import { createTokensService } from './tokens.ts';
import { createTwoFactorRepository } from '../repositories/two-factor.ts';
import { createTwoFactorService } from './two-factor.ts';
import { createAuditService, type AuditService } from './audit.ts';
import { createAuthService, verifyPassword, type authPolicy } from './auth.ts';
import { createHostEventsReader } from './host-events.ts';
import { createHostsService } from './hosts.ts';
import { createJoinTokensService } from './join-tokens.ts';
import { createUsersService } from './users.ts';
import { createChannelsService } from '../channels/service.ts';
import { createProcessRepository } from '../repositories/processes.ts';
import { createProcessesService } from './processes.ts';
import { createProcessTemplateRepository } from '../repositories/process-templates.ts';
import { createProcessTemplatesService } from './process-templates.ts';
import { createFleetProcessesService } from './fleet-processes.ts';
import { createLogSearchRepository } from '../repositories/log-search.ts';
import { createLogSearchService } from './log-search.ts';
import { createLogRetentionRepository } from '../repositories/log-retention.ts';
import { createLogRetentionService } from './log-retention.ts';
import { createMetricsRepository } from '../repositories/metrics.ts';
import { createMetricsService, metricsRetentionFromEnv } from './metrics.ts';
import { createTrafficRepository } from '../repositories/traffic.ts';
import { createTrafficService } from './traffic.ts';
import { createPrometheusService } from './prometheus.ts';
import { createRecordingsRepository } from '../repositories/recordings.ts';
import { createRecordingsService } from './recordings.ts';
import { hasHostPermission, narrowActor } from './access.ts';
import { createProxyUsersRepository } from '../repositories/proxy-users.ts';
import { createProxyUsersService, linkProxyUsers } from './proxy-users.ts';
import { createChecksRepository } from '../repositories/checks.ts';
import { createChecksService, checksRetentionFromEnv } from './checks.ts';
import { createAlertsRepository } from '../repositories/alerts.ts';
import { createAlertsService } from './alerts.ts';
import { createNotificationsRepository } from '../repositories/notifications.ts';
import { createNotificationsService } from './notifications.ts';
import { createAgentUpgradeRepository } from '../repositories/agent-upgrades.ts';
import { createAgentUpgradesService } from './agent-upgrades.ts';
import { agentBundleStore, defaultInstallSources } from '../routes/install.ts';
import { createJobsRepository } from '../repositories/jobs.ts';
import { createJobsService } from './jobs.ts';
import { createSchedulesService } from './schedules.ts';
import { createProxyNodeRepository } from '../repositories/proxy-nodes.ts';
import { createProxyNodesService } from './proxy-nodes.ts';
import { createSecretBox, type SecretBox } from '../secrets.ts';
import { createWalletsRepository } from '../repositories/wallets.ts';
import { createWalletsService } from './wallets.ts';
import { randomBytes } from 'node:crypto';

export interface ServicesDeps {
  db: Db;
  bus: FleetBus;
  /**
   * Every replica's events (the replica bus's fleet-wide side; `bus` is this replica's own): how a
   * job run hears a cancel made through another replica. Absent: one controller, no other replica.
   */
  fleetBus?: FleetBus;
  gateway: AgentGateway;
  log: Logger;
  config: { publicUrl: string; joinTokenTtlSeconds: number; channelTicketTtlSeconds?: number };
  /** The controller key's fingerprint, pinned by agents (goes into the enroll command). */
  controllerFingerprint: string;
  /** An audit service built earlier (e.g. handed to the gateway first); one is made otherwise. */
  audit?: AuditService;
  /** Sign-in policy overrides (tests). */
  authPolicy?: Partial<typeof authPolicy>;
  /**
   * How new passwords are hashed (argon2id at the production cost, `hashPassword`, by default).
   * The route tests' fixture (app-fixture.ts) uses a low-cost argon2id: what they prove is not
   * the hash's cost, and ~130 hashes and checks at ~40 ms of CPU each were seconds a run.
   */
  hashPassword?: (password: string) => Promise<string>;
  now?: () => Date;
  /** The agent bundles rollouts hand out (default: the directory GET /install/agent serves). */
  agentBundleDir?: string;
  /** Terminal recordings: where the .cast files go (null/absent: not recorded) and the input policy. */
  recordings?: { dir: string | null; recordInput?: boolean; maxBytes?: number; retentionDays?: number };
  /** Job scheduler tuning (tests). */
  jobs?: { tickMs?: number };
  /**
   * Seals secrets at rest under the master key (secrets.ts `loadSecretBox`). The server and the CLI
   * pass the loaded key; when absent (tests) a random key that lives as long as the process is used.
   */
  secrets?: SecretBox;
}

/** Every service of the controller. */
export function createServices(deps: ServicesDeps) {
  const { db, log, now } = deps;
  const secrets = deps.secrets ?? createSecretBox(randomBytes(32));
  const users = createUsersRepository(db);
  const groups = createGroupsRepository(db);
  const sessions = createSessionsRepository(db);
  const resolveActor = createActorResolver(groups);
  const audit = deps.audit ?? createAuditService({ audit: createAuditRepository(db), log, now });
  const tokensRepository = createTokensRepository(db);
  const tokens = createTokensService({
    tokens: tokensRepository,
    users,
    groups,
    audit,
    resolveActor,
    now,
  });
  const twoFactor = createTwoFactorService({
    users,
    twoFactor: createTwoFactorRepository(db),
    sessions,
    audit,
    checkPassword: verifyPassword,
    secrets,
    now,
  });
  const wallets = createWalletsService({
    wallets: createWalletsRepository(db),
    users,
    audit,
    publicUrl: deps.config.publicUrl,
    now,
  });
  const jobsRepository = createJobsRepository(db);
  const jobs = createJobsService({
    jobs: jobsRepository,
    hosts: createHostRepository(db),
    groups,
    gateway: deps.gateway,
    audit,
    bus: deps.bus,
    fleet: deps.fleetBus,
    log: log.child({ component: 'jobs' }),
    now,
  });
  // Service checks, alert rules and notifications (docs/alerts.md).
  const clock = now ? () => now().getTime() : undefined;
  const checks = createChecksService({
    checks: createChecksRepository(db),
    hosts: createHostRepository(db),
    gateway: deps.gateway,
    bus: deps.bus,
    audit,
    log: log.child({ component: 'checks' }),
    now: clock,
    retentionDays: checksRetentionFromEnv(),
  });
  const notifications = createNotificationsService({
    notifications: createNotificationsRepository(db),
    audit,
    log: log.child({ component: 'notifications' }),
    now: clock,
    publicUrl: deps.config.publicUrl,
    secrets,
  });
  const alerts = createAlertsService({
    alerts: createAlertsRepository(db),
    checks: createChecksRepository(db),
    groups,
    notifications,
    audit,
    bus: deps.bus,
    log: log.child({ component: 'alerts' }),
    now: clock,
    publicUrl: deps.config.publicUrl,
    trafficUsage: (hostIds, at) => traffic.usageMany(hostIds, at),
  });
  const proxyUsers = createProxyUsersService({
    repo: createProxyUsersRepository(db, secrets),
    audit,
    log: log.child({ component: 'proxy-users' }),
    publicUrl: deps.config.publicUrl,
    readTraffic: (node) => deps.gateway.request(node.hostId, 'config.traffic', { instance: node.instance }),
    isOnline: (hostId) => deps.gateway.isOnline(hostId),
    now,
  });
  const metrics = createMetricsService({
    hosts: createHostRepository(db),
    metrics: createMetricsRepository(db),
    traffic: createTrafficRepository(db),
    log: log.child({ component: 'metrics' }),
    retention: metricsRetentionFromEnv(),
    now: now ? () => now().getTime() : undefined,
    gateway: deps.gateway,
    bus: deps.bus,
    audit,
  });
  const traffic = createTrafficService({
    hosts: createHostRepository(db),
    traffic: createTrafficRepository(db),
    audit,
    now: now ? () => now().getTime() : undefined,
  });
  const services = {
    secrets,
    wallets,
    proxyUsers,
    checks,
    alerts,
    notifications,
    jobs,
    schedules: createSchedulesService({
      jobs: jobsRepository,
      runs: jobs,
      users,
      resolveActor,
      groups,
      hosts: createHostRepository(db),
      isOnline: (hostId) => deps.gateway.isOnline(hostId),
      bus: deps.bus,
      notifications,
      publicUrl: deps.config.publicUrl,
      audit,
      log: log.child({ component: 'schedules' }),
      now,
      tickMs: deps.jobs?.tickMs,
    }),
    audit,
    tokens,
    twoFactor,
    auth: createAuthService({
      users,
      sessions,
      audit,
      log,
      now,
      policy: deps.authPolicy,
      hashPassword: deps.hashPassword,
      resolveActor,
      tokens,
      twoFactor,
      wallets,
    }),
    users: createUsersService({ users, audit, groups, sessions, now, hashPassword: deps.hashPassword }),
    groups: createGroupsService({ groups, hosts: createHostRepository(db), audit }),
    hosts: createHostsService({
      hosts: createHostRepository(db),
      gateway: deps.gateway,
      bus: deps.bus,
      audit,
      now,
    }),
    channels: createChannelsService({
      hosts: createHostRepository(db),
      gateway: deps.gateway,
      audit,
      ticketTtlSeconds: deps.config.channelTicketTtlSeconds,
    }),
    hostEvents: createHostEventsReader(createStreamRepository(db)),
    recordings: createRecordingsService({
      recordings: createRecordingsRepository(db),
      audit,
      log,
      now,
      dir: deps.recordings?.dir ?? null,
      recordInput: deps.recordings?.recordInput,
      maxBytes: deps.recordings?.maxBytes,
      retentionDays: deps.recordings?.retentionDays,
      stillAllowed: async (userId, hostId, tokenId) => {
        const user = await users.findById(userId);
        if (!user) return false;
        let actor = await resolveActor(user);
        if (tokenId) {
          // Opened through an API token: the token's own scope (permissions, groups) as it is now.
          const token = await tokensRepository.get(tokenId);
          if (!token || token.revokedAt || token.expiresAt.getTime() <= Date.now()) return false;
          const hostIds = token.groupIds ? new Set(await groups.hostsOf(token.groupIds)) : null;
          actor = narrowActor(actor, new Set(token.permissions), hostIds);
        }
        return hasHostPermission(actor, 'terminal.open', hostId);
      },
    }),
    processes: createProcessesService({
      hosts: createHostRepository(db),
      processes: createProcessRepository(db, createStreamRepository(db)),
      gateway: deps.gateway,
      audit,
    }),
    metrics,
    traffic,
    prometheus: createPrometheusService({
      hosts: createHostRepository(db),
      metrics: createMetricsRepository(db),
      traffic,
      controller: {
        handshakes: () => (deps.gateway as { handshakes?: number }).handshakes ?? 0,
        metricsQueueWaiting: () => metrics.queueWaiting,
      },
    }),
    proxyNodes: createProxyNodesService({
      hosts: createHostRepository(db),
      nodes: createProxyNodeRepository(db),
      groups,
      gateway: deps.gateway,
      audit,
      bus: deps.bus,
      log: log.child({ component: 'proxy-nodes' }),
    }),
    agentUpgrades: createAgentUpgradesService({
      rollouts: createAgentUpgradeRepository(db),
      hosts: createHostRepository(db),
      hostEvents: createHostEventsReader(createStreamRepository(db)),
      gateway: deps.gateway,
      audit,
      log,
      now,
      bundles: agentBundleStore(deps.agentBundleDir ?? defaultInstallSources().agentDir),
    }),
    joinTokens: createJoinTokensService({
      joinTokens: createJoinTokenRepository(db),
      audit,
      publicUrl: deps.config.publicUrl,
      controllerFingerprint: deps.controllerFingerprint,
      defaultTtlSeconds: deps.config.joinTokenTtlSeconds,
    }),
  };
  linkProxyUsers(services);
  const processTemplates = createProcessTemplatesService({
    templates: createProcessTemplateRepository(db),
    processes: services.processes,
    audit,
  });
  const fleetProcesses = createFleetProcessesService({
    hosts: createHostRepository(db),
    processes: services.processes,
    isOnline: (hostId) => deps.gateway.isOnline(hostId),
  });
  const logSearch = createLogSearchService({
    hosts: createHostRepository(db),
    logs: createLogSearchRepository(db),
  });
  const logRetention = createLogRetentionService({
    retention: createLogRetentionRepository(db),
    hosts: createHostRepository(db),
    audit,
    log: log.child({ component: 'log-retention' }),
  });
  return { ...services, processTemplates, fleetProcesses, logSearch, logRetention };
}

export type Services = ReturnType<typeof createServices>;
