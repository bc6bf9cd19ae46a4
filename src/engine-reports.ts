import { errorMonitor, type EventEmitter } from 'node:events';
import { SessionError } from './errors.js';
import { isThenable } from './maybe-async.js';
import type { Counters } from './stats.js';
import type { ReportCounter } from './store.js';

// How an engine says what went wrong: on its 'error' event, counted, and never by throwing into the code
// that reported it (a close, a teardown, a request's release must go on whatever a listener does).

/** Counts `error` and emits it on 'error'; without a listener, or to one that fails, a process warning. */
export function report(engine: EventEmitter, counters: Counters, error: SessionError, counter: ReportCounter): void {
  if (counter === 'processLimit') counters.rejected.processLimit++;
  else counters[counter]++;
  // An 'error' event without a listener would throw and crash the server: warn instead. A listener
  // that fails gets the same (a close or teardown reporting a hook's failure must still go on).
  const warn = (listenerError: unknown, how: 'threw' | 'rejected'): void => {
    process.emitWarning(new SessionError('ERR_SESSION_HANDLER_FAILED', `an 'error' listener ${how} on ${error.code}`, { cause: listenerError, sessionId: error.sessionId }));
  };
  // events.errorMonitor listeners hear it first, as emit('error') would have them.
  if (engine.listenerCount(errorMonitor) > 0) callEach(engine, errorMonitor, error, warn);
  if (engine.listenerCount('error') === 0) return void process.emitWarning(error);
  callEach(engine, 'error', error, warn);
}

/** Emits an event whose listeners' throws and rejections are reported (ERR_SESSION_HANDLER_FAILED), never passed on. */
export function emitGuarded(engine: EventEmitter, counters: Counters, event: 'create' | 'close' | 'option', payload: unknown, sessionId: string | undefined): void {
  if (engine.listenerCount(event) === 0) return;
  callEach(engine, event, payload, (error, how) => {
    report(engine, counters, new SessionError('ERR_SESSION_HANDLER_FAILED', `a '${event}' listener ${how}`, { cause: error, sessionId }), 'handlerErrors');
  });
}

type Listener = (this: EventEmitter, payload: unknown) => unknown;

/**
 * Calls the listeners of `event` as emit() would (in order, `once` ones removed), each on its own: one
 * that throws, or returns a promise (or any thenable) that rejects or whose `then` throws, is `failed`,
 * and the others still run. Never an unhandled rejection.
 */
function callEach(engine: EventEmitter, event: string | symbol, payload: unknown, failed: (error: unknown, how: 'threw' | 'rejected') => void): void {
  for (const listener of engine.rawListeners(event) as Listener[]) {
    let result: unknown;
    try {
      result = listener.call(engine, payload);
      if (!isThenable(result)) continue;
    } catch (error) {
      failed(error, 'threw');
      continue;
    }
    // Adopted by a promise of our own: a `then` that throws rejects it too. Not Promise.resolve(),
    // which hands a native promise back as it is, so its own `then` would be called (and throw) here.
    new Promise<unknown>((resolve) => resolve(result)).then(undefined, (error: unknown) => failed(error, 'rejected'));
  }
}
