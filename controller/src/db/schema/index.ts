// Every table of the controller's database. Each file in this folder is re-exported here, and
// drizzle-kit reads this file to generate migrations (`npm run db:generate -w controller`).
export * from './alerts.ts';
export * from './audit.ts';
export * from './checks.ts';
export * from './groups.ts';
export * from './hosts.ts';
export * from './jobs.ts';
export * from './join-tokens.ts';
export * from './metrics.ts';
export * from './processes.ts';
export * from './process-templates.ts';
export * from './log-retention.ts';
export * from './proxy-nodes.ts';
export * from './proxy-users.ts';
export * from './recordings.ts';
export * from './replicas.ts';
export * from './rollouts.ts';
export * from './streams.ts';
export * from './tokens.ts';
export * from './traffic.ts';
export * from './users.ts';
export * from './wallets.ts';
