import type { IncomingMessage } from 'node:http';
import type { LeaseHandle } from './response.js';

const kLease = Symbol('legacy-web-sessions.events');

type EventsRequest = IncomingMessage & { [kLease]?: { readonly lease: Pick<LeaseHandle, 'run'>; readonly emit: IncomingMessage['emit'] } };

/**
 * Runs the request stream's events ('data', 'end', …) in the lease's process context. Node emits them
 * from the HTTP parser, outside the async context of the request's handler, so a middleware reading the
 * body from those events (and everything it calls next) would lose `engine.currentSessionId()`, and a
 * logout from there would not count as coming from inside its own session: it would wait on its own
 * request until closeTimeoutMs. (Express's body-parser and Fastify's parser already carry the context;
 * hand-written and other middlewares often do not.)
 */
export function runRequestEventsIn(req: IncomingMessage, lease: Pick<LeaseHandle, 'run'>): void {
  // Without a body there is nothing to read from those events; most requests skip the wrapper.
  const { 'content-length': length, 'transfer-encoding': encoding } = req.headers;
  if (encoding === undefined && (length === undefined || length === '0')) return;
  (req as EventsRequest)[kLease] = { lease, emit: req.emit };
  req.emit = emitInLease as IncomingMessage['emit'];
}

function emitInLease(this: EventsRequest, ...args: Parameters<IncomingMessage['emit']>): boolean {
  const bound = this[kLease]!;
  return bound.lease.run(() => bound.emit.apply(this, args));
}
