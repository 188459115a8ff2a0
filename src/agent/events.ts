/**
 * How the core's events are logged: one line each, at a level that says how much an operator
 * should care (a tunnel offer is routine, an exhausted port range needs them). Aliases are
 * added where the neighbor has one, so logs read in the operator's own names.
 */
import type { Logger } from 'pino';
import type { Action } from '../neighbors/core.js';

type CoreEventAction = Action & { kind: 'event' };

/** Routine steps of a negotiation: debug. */
const DEBUG_EVENTS = new Set(['tunnel-offer', 'tunnel-answer', 'offer-crossed', 'neighbor-two-way', 'neighbor-evicted']);

export function logEvent(log: Logger, e: CoreEventAction, aliasOf: (neighbor: string) => string | undefined): void {
  const { kind: _k, event, ...fields } = e;
  const alias = 'neighbor' in fields ? aliasOf(fields.neighbor) : undefined;
  const f = { event, ...fields, ...(alias ? { alias } : {}) };
  if (DEBUG_EVENTS.has(event)) log.debug(f, event);
  else if (event === 'tunnel-no-port') log.error(f, 'no free tunnel port: widen tunnels.portRange');
  else if (event === 'tunnel-setup-failed') log.warn(f, 'tunnel setup failed; will retry');
  else log.info(f, event);
}
