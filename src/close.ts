import type { AsyncLocalStorage } from 'node:async_hooks';
import { realTimer, type Clock } from './clock.js';
import { SessionError } from './errors.js';
import { processInternals, type SessionVars, type WebProcess } from './process.js';
import type { CloseReason, Session } from './session.js';
import type { CloseEvent } from './types.js';

/** What the close pipeline needs from its engine. */
export interface CloseContext<Vars extends SessionVars> {
  readonly clock: Clock;
  readonly als: AsyncLocalStorage<WebProcess<Vars>>;
  closeTimeoutMs(): number;
  /** The hook to run for this close, or undefined (scalable / none mode, or no hook). */
  hookFor(reason: CloseReason): ((proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>) | undefined;
  /** Step 1 bookkeeping: forget the id, stop counting the session's processes. */
  detach(session: Session<Vars>, reason: CloseReason): void;
  report(error: SessionError, kind: 'hook' | 'hookTimeout' | 'drainTimeout'): void;
  finished(session: Session<Vars>, event: CloseEvent): void;
}

export const TIMED_OUT = Symbol('timed out');

/** Waits for `promise`, at most `ms` on the engine's clock; resolves to TIMED_OUT when time ran out. */
export function within<T>(clock: Clock, ms: number, promise: Promise<T>): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    const schedule = clock.setTimer?.bind(clock) ?? realTimer;
    // The verdict waits one turn of the event loop: work that has already settled (its continuation is
    // queued) wins over a deadline that fired in the same turn, as when a test clock jumps hours at once.
    const timer = schedule(() => setImmediate(() => resolve(TIMED_OUT)), ms);
    promise.then(
      (value) => { timer.cancel(); resolve(value); },
      (error: unknown) => { timer.cancel(); reject(error); },
    );
  });
}

/**
 * The close pipeline, one state machine `open → closing → closed` per session:
 * 1. mark closing, forget the id (a later request with it gets a new session), refuse queued requests;
 * 2. abort every process's signal, wait for running requests and tasks (bounded by `closeTimeoutMs`);
 * 3. run `onClose` once per process, context intact, one at a time, each bounded by `closeTimeoutMs`;
 * 4. teardown: selections cleared, locks released, vars reset;
 * 5. `closed`, `'close'` event.
 * Idempotent: a second call returns the first call's promise.
 */
export function beginClose<Vars extends SessionVars>(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason): Promise<void> {
  if (session.closed !== undefined) return session.closed;
  const startedAtMs = ctx.clock.now();
  session.state = 'closing';
  session.phase = 'draining';
  session.closeReason = reason;
  ctx.detach(session, reason);

  const queue = session.queue;
  session.queue = undefined;
  // Queued requests never run in this context: they are refused and rebound to a new session.
  if (queue !== undefined) for (const waiter of queue) waiter.reject(new SessionError('ERR_SESSION_CLOSED', `closing (${reason})`, { sessionId: session.id }));

  let abortReason: SessionError | undefined;
  const makeAbortReason = (): SessionError => (abortReason ??= new SessionError('ERR_SESSION_CLOSED', `closing (${reason})`, { sessionId: session.id }));
  for (const proc of session.processes) processInternals.abort(proc, makeAbortReason);

  // The promise exists before the pipeline starts: a hook that runs synchronously and closes a session
  // whose hook closes this one again must find the close already under way (re-entrancy), not start a second.
  let settle!: { resolve: () => void; reject: (error: unknown) => void };
  session.closed = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
  runPipeline(ctx, session, reason, startedAtMs).then(settle.resolve, settle.reject);
  return session.closed;
}

async function runPipeline<Vars extends SessionVars>(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason, startedAtMs: number): Promise<void> {
  if (!session.isDrained) {
    const drained = new Promise<void>((resolve) => { session.onDrained = resolve; });
    if (await within(ctx.clock, ctx.closeTimeoutMs(), drained) === TIMED_OUT) {
      ctx.report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `${session.running.length} process(es) still running after ${ctx.closeTimeoutMs()} ms`, { sessionId: session.id }), 'drainTimeout');
    }
    session.onDrained = undefined;
  }

  session.phase = 'hooks';
  let hookFailures = 0;
  let hooksRun = 0;
  const hook = ctx.hookFor(reason);
  if (hook !== undefined) {
    // One hook at a time per session (4D runs each in its own process; here they share the event loop).
    for (const proc of session.processes.slice()) {
      hooksRun++;
      if (!(await runHook(ctx, hook, proc, reason))) hookFailures++;
    }
  }

  session.phase = 'teardown';
  const processes = session.processes.splice(0);
  session.freeProcesses.length = 0;
  for (const proc of processes) await processInternals.teardown(proc, {});
  session.state = 'closed';
  session.phase = 'done';
  ctx.finished(session, { sessionId: session.id, reason, processCount: processes.length, hooksRun, hookFailures, durationMs: ctx.clock.now() - startedAtMs });
}

/** Runs one hook inside the process's own async context; true when it settled in time without error. */
export async function runHook<Vars extends SessionVars>(
  ctx: Pick<CloseContext<Vars>, 'clock' | 'als' | 'closeTimeoutMs' | 'report'>,
  hook: (proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>,
  proc: WebProcess<Vars>,
  reason: CloseReason,
): Promise<boolean> {
  try {
    const returned = ctx.als.run(proc, () => hook(proc, reason));
    // A synchronous hook is done already: no deadline timer to arm and clear.
    if (!isThenable(returned)) return true;
    const outcome = await within(ctx.clock, ctx.closeTimeoutMs(), Promise.resolve(returned));
    if (outcome !== TIMED_OUT) return true;
    ctx.report(new SessionError('ERR_SESSION_HOOK_TIMEOUT', `${proc.processId} (${reason}) after ${ctx.closeTimeoutMs()} ms`, { sessionId: proc.sessionId }), 'hookTimeout');
  } catch (error) {
    ctx.report(new SessionError('ERR_SESSION_HOOK_FAILED', `${proc.processId} (${reason})`, { cause: error, sessionId: proc.sessionId }), 'hook');
  }
  return false;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** Called whenever a process of a closing session stops running: wakes the pipeline once all are done. */
export function noteProgress<Vars extends SessionVars>(session: Session<Vars>): void {
  if (session.onDrained !== undefined && session.isDrained) session.onDrained();
}
