import type { EventEmitter } from 'node:events';
import { SessionError } from './errors.js';
import type { Counters } from './stats.js';
import type { ReportCounter } from './store.js';

// How an engine says what went wrong: on its 'error' event, counted, and never by throwing into the code
// that reported it (a close, a teardown, a request's release must go on whatever a listener does).

/** Counts `error` and emits it on 'error'; without a listener, or one that throws, a process warning. */
export function report(engine: EventEmitter, counters: Counters, error: SessionError, counter: ReportCounter): void {
  if (counter === 'processLimit') counters.rejected.processLimit++;
  else counters[counter]++;
  // An 'error' event without a listener would throw and crash the server: warn instead. A listener
  // that throws gets the same (a close or teardown reporting a hook's failure must still go on).
  if (engine.listenerCount('error') === 0) return void process.emitWarning(error);
  try {
    engine.emit('error', error);
  } catch (listenerError) {
    process.emitWarning(new SessionError('ERR_SESSION_HANDLER_FAILED', `an 'error' listener threw on ${error.code}`, { cause: listenerError, sessionId: error.sessionId }));
  }
}

/** Emits an event whose listeners' throws are reported (ERR_SESSION_HANDLER_FAILED), never passed on. */
export function emitGuarded(engine: EventEmitter, counters: Counters, event: 'create' | 'close' | 'option', payload: unknown, sessionId: string | undefined): void {
  try {
    engine.emit(event, payload);
  } catch (error) {
    report(engine, counters, new SessionError('ERR_SESSION_HANDLER_FAILED', `a '${event}' listener threw`, { cause: error, sessionId }), 'handlerErrors');
  }
}

/**
 * An async listener rejected (EventEmitter's captureRejections): reported as a listener's throw is,
 * never an unhandled rejection. One of an 'error' listener becomes a process warning.
 */
export function reportRejectedListener(engine: EventEmitter, counters: Counters, error: unknown, event: string | symbol, payload: unknown): void {
  if (event === 'error') {
    const reported = payload as SessionError | undefined;
    process.emitWarning(new SessionError('ERR_SESSION_HANDLER_FAILED', `an 'error' listener rejected on ${reported?.code}`, { cause: error, sessionId: reported?.sessionId }));
    return;
  }
  const sessionId = (payload as { sessionId?: unknown } | undefined)?.sessionId;
  report(engine, counters, new SessionError('ERR_SESSION_HANDLER_FAILED', `a '${String(event)}' listener rejected`, { cause: error, sessionId: typeof sessionId === 'string' ? sessionId : undefined }), 'handlerErrors');
}
