// The catalogue of everything an agent can be asked or can stream: each request and stream kind
// defined once in `messages/<family>.ts`, listed here with one line. The controller's
// `gateway.request()` is typed from `requestCatalogue`; both link ends validate against it.
import type { z } from 'zod';
import type { RequestDefinition, StreamDefinition } from './definitions.ts';
import { pingRequest } from './messages/agent.ts';
import { agentUpgradeRequest, agentUpgradeStatusRequest } from './messages/agent-upgrade.ts';
import { factsRefreshRequest } from './messages/facts.ts';
import { eventsStream } from './messages/events.ts';
import * as processes from './messages/processes.ts';
import { metricsConfigureRequest, metricsStream } from './messages/metrics.ts';
import { checksApplyRequest, checksStream } from './messages/checks.ts';
import { configRequests } from './messages/configs.ts';

/** Every agent request, by name. */
export const requestCatalogue = {
  [pingRequest.name]: pingRequest,
  [agentUpgradeRequest.name]: agentUpgradeRequest,
  [agentUpgradeStatusRequest.name]: agentUpgradeStatusRequest,
  [factsRefreshRequest.name]: factsRefreshRequest,
  ...processes.processRequests,
  [checksApplyRequest.name]: checksApplyRequest,
  [metricsConfigureRequest.name]: metricsConfigureRequest,
  ...configRequests,
} as const;

/** Every stream kind, by name. */
export const streamCatalogue = {
  [eventsStream.name]: eventsStream,
  [processes.logsStream.name]: processes.logsStream,
  [metricsStream.name]: metricsStream,
  [checksStream.name]: checksStream,
} as const;

export type RequestName = keyof typeof requestCatalogue;
export type StreamName = keyof typeof streamCatalogue;
/** What the caller passes (schema input). */
export type RequestParams<N extends RequestName> = z.input<(typeof requestCatalogue)[N]['params']>;
/** What the agent answers, validated (schema output). */
export type RequestResult<N extends RequestName> = z.output<(typeof requestCatalogue)[N]['result']>;

/** The definition of a request name that arrived from a peer, or undefined when there is none. */
export function requestDefinition(name: string): RequestDefinition | undefined {
  return Object.hasOwn(requestCatalogue, name)
    ? (requestCatalogue as Record<string, RequestDefinition>)[name]
    : undefined;
}

/** The definition of a stream name, or undefined. */
export function streamDefinition(name: string): StreamDefinition | undefined {
  return Object.hasOwn(streamCatalogue, name)
    ? (streamCatalogue as Record<string, StreamDefinition>)[name]
    : undefined;
}

/** Every request name (what a current agent announces when it serves them all). */
export const requestNames = Object.keys(requestCatalogue) as RequestName[];
/** Every stream name. */
export const streamNames = Object.keys(streamCatalogue) as StreamName[];

/** A one-line account of why a value failed its schema (path and first issue), for error messages. */
export function describeSchemaError(error: z.ZodError): string {
  const first = error.issues[0];
  if (!first) return 'invalid';
  const path = first.path.map(String).join('.');
  return `${path || 'value'}: ${first.message}`.slice(0, 300);
}
