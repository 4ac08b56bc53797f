// The Keel protocol package: everything agent and controller must agree on, and no I/O.
export * from './errors.ts';
export * from './records.ts';
export * from './messages/facts.ts';
export * from './messages/channels.ts';
export * from './scheduler.ts';
export * from './keys.ts';
export * from './sealed.ts';
export * from './frames.ts';
export * from './codec.ts';
export * from './close-codes.ts';
export * from './handshake.ts';
export * from './channel.ts';
export * from './frame-router.ts';
export * from './definitions.ts';
export * from './catalogue.ts';
export * from './messages/agent.ts';
export * from './messages/events.ts';
