import type { AsyncLocalStorage } from 'node:async_hooks';
import { timerOn, type Clock } from './clock.js';
import { SessionError } from './errors.js';
import { isThenable } from './maybe-async.js';
import { processInternals, type SessionVars, type WebProcess } from './process.js';
import { runAs, type ProcessRun } from './runs.js';
import { NONE, refuseQueued, withItem, type CloseReason, type Session } from './session.js';
import { tearDown, type ReportCounter } from './store.js';
import type { CloseEvent } from './types.js';

/** What the close pipeline needs from its engine. */
export interface CloseContext<Vars extends SessionVars> {
  readonly clock: Clock;
  readonly als: AsyncLocalStorage<ProcessRun<Vars>>;
  closeTimeoutMs(): number;
  /** The hook to run for this close, or undefined (not in 'legacy' mode now, or no hook). */
  hookFor(): ((proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>) | undefined;
  /** Step 1 bookkeeping: forget the id, stop counting the session's processes. */
  detach(session: Session<Vars>, reason: CloseReason): void;
  report(error: SessionError, counter: ReportCounter): void;
  finished(session: Session<Vars>, event: CloseEvent): void;
}

export const TIMED_OUT = Symbol('timed out');

/** Waits for `promise`, at most `ms` on the engine's clock; resolves to TIMED_OUT when time ran out. */
export function within<T>(clock: Clock, ms: number, promise: Promise<T>): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    // The verdict waits one turn of the event loop: work that has already settled (its continuation is
    // queued) wins over a deadline that fired in the same turn, as when a test clock jumps hours at once.
    const timer = timerOn(clock, () => setImmediate(() => resolve(TIMED_OUT)), ms);
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
 * Idempotent: a second call returns the first call's promise. The teardown waits for the next
 * microtask at least, so that every `closeSession(id)` made in the same turn finds the close under way
 * and shares it.
 */
export function beginClose<Vars extends SessionVars>(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason, insider?: WebProcess<Vars>): Promise<void> {
  startClose(ctx, session, reason, false, insider);
  // A close already under way (from outside, waiting for this very request): it stops waiting for it.
  if (insider !== undefined) waitingInside(session, insider);
  return closedPromise(session);
}

/**
 * A process of the closing session waits for that close from its own request (a logout, a stop()): the
 * drain must not wait for it. Marked before the drain is first checked, the hooks start within the call
 * that closes (4D runs the close in the calling process), seeing the context as it was then.
 */
export function waitingInside<Vars extends SessionVars>(session: Session<Vars>, caller: WebProcess<Vars>): void {
  if (!session.running.includes(caller) || session.waitingInside.includes(caller)) return;
  session.waitingInside = withItem(session.waitingInside, caller);
  noteProgress(session);
}

/**
 * `beginClose` for eviction and timeout, whose callers never wait for the close. An idle session whose
 * hooks are synchronous and whose processes hold no lock (every eviction and timeout of a typical
 * application) goes through all five steps before this returns, without a promise. The steps, their
 * order and the event are those of the asynchronous path, which takes over at the first step that has
 * to wait (a running request, a hook that returns a promise, a lock to release).
 */
export function closeNow<Vars extends SessionVars>(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason): void {
  startClose(ctx, session, reason, true);
}

function startClose<Vars extends SessionVars>(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason, synchronous: boolean, insider?: WebProcess<Vars>): void {
  if (session.phase !== undefined) return;
  const startedAtMs = ctx.clock.now();
  session.state = 'closing';
  // Marks the close as under way before anything runs: a hook that closes a session whose hook closes
  // this one again finds it started (re-entrancy), and never starts a second.
  session.phase = 'draining';
  session.closeReason = reason;
  ctx.detach(session, reason);

  // Queued requests never run in this context: they are refused and rebound to a new session.
  refuseQueued(session, `closing (${reason})`);

  // One reason shared by the processes, made only if a signal is read. The function is written in place
  // (not a named const): a named closure costs a defineProperty per close under esbuild's keepNames.
  let abortReason: SessionError | undefined;
  for (const proc of session.processes) {
    processInternals.abort(proc, () => (abortReason ??= new SessionError('ERR_SESSION_CLOSED', `closing (${reason})`, { sessionId: session.id })));
  }

  if (insider !== undefined) waitingInside(session, insider);
  let pending: Promise<void> | undefined;
  try {
    pending = new ClosePipeline(ctx, session, reason, startedAtMs, synchronous).run();
  } catch (error) {
    settleClosed(session, error);
    return;
  }
  if (pending === undefined) settleClosed(session, undefined);
  else pending.then(() => settleClosed(session, undefined), (error: unknown) => settleClosed(session, error));
}

/** The promise of a started close: made only when someone asks for it, settled when the pipeline ends. */
export function closedPromise<Vars extends SessionVars>(session: Session<Vars>): Promise<void> {
  if (session.closed !== undefined) return session.closed;
  if (session.phase === 'done') return Promise.resolve();
  session.closed = new Promise<void>((resolve, reject) => {
    session.settleClosed = (error) => (error === undefined ? resolve() : reject(error));
  });
  return session.closed;
}

function settleClosed<Vars extends SessionVars>(session: Session<Vars>, error: unknown): void {
  const settle = session.settleClosed;
  session.settleClosed = undefined;
  if (settle !== undefined) settle(error);
  // A pipeline that failed unexpectedly (a 'close' or 'error' listener threw) rejects its promise even
  // when nobody asked for it, so the failure is not silent (an unhandled rejection, as it always was).
  else if (error !== undefined) session.closed = Promise.reject(error);
}

const NO_PROCESSES: readonly never[] = [];

/** Steps 2–5 of one close; each step continues synchronously until something has to be waited for. */
class ClosePipeline<Vars extends SessionVars> {
  readonly #ctx: CloseContext<Vars>;
  readonly #session: Session<Vars>;
  readonly #reason: CloseReason;
  readonly #startedAtMs: number;
  readonly #synchronous: boolean;
  #hooked: readonly WebProcess<Vars>[] = NO_PROCESSES;
  #hooksRun = 0;
  #hookFailures = 0;

  constructor(ctx: CloseContext<Vars>, session: Session<Vars>, reason: CloseReason, startedAtMs: number, synchronous: boolean) {
    this.#ctx = ctx;
    this.#session = session;
    this.#reason = reason;
    this.#startedAtMs = startedAtMs;
    this.#synchronous = synchronous;
  }

  /** undefined when the close is over already; else a promise of its end. */
  run(): Promise<void> | undefined {
    const session = this.#session;
    if (session.isDrained) return this.#hooks();
    const drained = new Promise<void>((resolve) => { session.onDrained = resolve; });
    return within(this.#ctx.clock, this.#ctx.closeTimeoutMs(), drained).then((outcome) => {
      if (outcome === TIMED_OUT) {
        this.#ctx.report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `${session.running.length} process(es) still running after ${this.#ctx.closeTimeoutMs()} ms`, { sessionId: session.id }), 'drainTimeouts');
      }
      session.onDrained = undefined;
      return this.#hooks();
    });
  }

  #hooks(): Promise<void> | undefined {
    this.#session.phase = 'hooks';
    const hook = this.#ctx.hookFor();
    if (hook === undefined) return this.#afterHooks();
    // One hook at a time per session (4D runs each in its own process; here they share the event loop).
    // The list is not copied: a closing session gains no process (spawn refuses) and loses none before teardown.
    this.#hooked = this.#session.processes;
    return this.#hooksFrom(hook, 0);
  }

  #hooksFrom(hook: (proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>, index: number): Promise<void> | undefined {
    for (let i = index; i < this.#hooked.length; i++) {
      this.#hooksRun++;
      const ok = runHook(this.#ctx, hook, this.#hooked[i]!, this.#reason);
      if (ok === false) {
        this.#hookFailures++;
      } else if (ok !== true) {
        return ok.then((settled) => {
          if (!settled) this.#hookFailures++;
          return this.#hooksFrom(hook, i + 1);
        });
      }
    }
    return this.#afterHooks();
  }

  #afterHooks(): Promise<void> | undefined {
    return this.#synchronous ? this.#teardown() : Promise.resolve().then(() => this.#teardown());
  }

  #teardown(): Promise<void> | undefined {
    const session = this.#session;
    session.phase = 'teardown';
    const processes = session.processes;
    session.processes = NONE;
    return this.#teardownFrom(processes, 0);
  }

  #teardownFrom(processes: WebProcess<Vars>[], index: number): Promise<void> | undefined {
    for (let i = index; i < processes.length; i++) {
      const released = tearDown(this.#ctx, processes[i]!);
      if (released !== undefined) return released.then(() => this.#teardownFrom(processes, i + 1));
    }
    this.#finish(processes.length);
    return undefined;
  }

  #finish(processCount: number): void {
    const session = this.#session;
    session.state = 'closed';
    session.phase = 'done';
    this.#ctx.finished(session, {
      sessionId: session.id, reason: this.#reason, processCount, hooksRun: this.#hooksRun, hookFailures: this.#hookFailures,
      durationMs: this.#ctx.clock.now() - this.#startedAtMs,
    });
  }
}

/**
 * Runs one hook inside the process's own async context: true when it returned without error, false when
 * it threw, else a promise of whether it settled in time without error.
 */
export function runHook<Vars extends SessionVars>(
  ctx: Pick<CloseContext<Vars>, 'clock' | 'als' | 'closeTimeoutMs' | 'report'>,
  hook: (proc: WebProcess<Vars>, reason: CloseReason) => void | Promise<void>,
  proc: WebProcess<Vars>,
  reason: CloseReason,
): boolean | Promise<boolean> {
  let returned: unknown;
  try {
    returned = runAs(ctx.als, proc, () => hook(proc, reason), true);
  } catch (error) {
    ctx.report(new SessionError('ERR_SESSION_HOOK_FAILED', `${proc.processId} (${reason})`, { cause: error, sessionId: proc.sessionId }), 'hookErrors');
    return false;
  }
  // A synchronous hook is done already: no deadline timer to arm and clear.
  if (!isThenable(returned)) return true;
  return awaitHook(ctx, Promise.resolve(returned), proc, reason);
}

async function awaitHook<Vars extends SessionVars>(ctx: Pick<CloseContext<Vars>, 'clock' | 'closeTimeoutMs' | 'report'>, returned: Promise<unknown>, proc: WebProcess<Vars>, reason: CloseReason): Promise<boolean> {
  try {
    const outcome = await within(ctx.clock, ctx.closeTimeoutMs(), returned);
    if (outcome !== TIMED_OUT) return true;
    ctx.report(new SessionError('ERR_SESSION_HOOK_TIMEOUT', `${proc.processId} (${reason}) after ${ctx.closeTimeoutMs()} ms`, { sessionId: proc.sessionId }), 'hookTimeouts');
  } catch (error) {
    ctx.report(new SessionError('ERR_SESSION_HOOK_FAILED', `${proc.processId} (${reason})`, { cause: error, sessionId: proc.sessionId }), 'hookErrors');
  }
  return false;
}

/** Called whenever a process of a closing session stops running: wakes the pipeline once all are done. */
export function noteProgress<Vars extends SessionVars>(session: Session<Vars>): void {
  session.onRunEnded?.();
  if (session.onDrained !== undefined && session.isDrained) session.onDrained();
}
