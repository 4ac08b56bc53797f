// The controller's route types for the console's typed client (`hc<AppType>` from hono/client).
export type { AppType } from './app.ts';
