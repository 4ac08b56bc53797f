// One log line format for every Keel process (agent and controller): pino JSON with the level as
// its name (`"level":"info"`, not 30) and the time as ISO 8601 UTC (`"time":"2026-…Z"`), which read
// the same in journald and survive log shippers that drop numeric epochs. pino options only; no
// pino import here (this package does no I/O), so each daemon passes these to its own pino().

/** pino options both daemons use: `pino({ name, level, ...logFormat })`. */
export const logFormat = {
  timestamp: (): string => `,"time":"${new Date().toISOString()}"`,
  formatters: { level: (label: string): { level: string } => ({ level: label }) },
};
