// The agent's version, reported in facts and on the event stream.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
/** Version from agent/package.json (bundled builds inline it). */
export const AGENT_VERSION: string = (require('../package.json') as { version: string }).version;
