import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { SessionArgumentError } from './errors.js';
import { RequestLease } from './lease.js';
import { isThenable } from './maybe-async.js';
import type { SessionVars, WebProcess } from './process.js';

// The runs of a session's processes in the engine's async context (a request's lease, an init, a
// spawned task, a hook): which one the code running now belongs to, so that currentSessionId() and a
// logout know their caller after an await, and when each is over.

/**
 * `init`'s result for `proc`, run in its context: the vars, or a promise of them. Vars are an object
 * (a primitive could be neither changed in place nor stored as a process's variables): anything else
 * throws (or rejects) a SessionArgumentError, which the store reports as `init`'s failure.
 */
export function runInit<Vars extends SessionVars>(
  init: ((proc: WebProcess<Vars>) => Vars | Promise<Vars>) | undefined,
  als: { run<T>(store: ProcessRun<Vars>, fn: () => T): T },
  proc: WebProcess<Vars>,
): Vars | Promise<Vars> {
  if (init === undefined) return {} as Vars;
  const vars = runAs(als, proc, () => init(proc));
  return isThenable(vars) ? Promise.resolve(vars).then(checkedVars) : checkedVars(vars);
}

function checkedVars<Vars>(vars: Vars): Vars {
  if (typeof vars === 'object' && vars !== null) return vars;
  throw new SessionArgumentError(`init must return an object (or a promise of one) for the process's vars, got ${vars === undefined || vars === null ? String(vars) : typeof vars}`);
}

/**
 * What the engine's async context holds: a process and the run in it (a request's lease, a spawned
 * task, a hook, an init). A callback that outlives its request keeps that request's run, `released`
 * by then: what it asks (closeSession, stop) is asked from outside the session.
 */
export interface ProcessRun<Vars extends SessionVars = SessionVars> {
  readonly proc: WebProcess<Vars>;
  readonly released: boolean;
  /** An onClose hook's run: a closeSession from it does not wait on a close under way. */
  readonly hook?: boolean;
}

/**
 * Runs `fn` as a run of `proc` (an init, a spawned task, a hook) in the engine's async context: current
 * while it runs, released once it has returned or settled, so that a callback outliving it asks from
 * outside, as one outliving its request does (and an engine stopped from it can release its context then).
 */
export function runAs<Vars extends SessionVars, T>(
  als: { run<R>(store: ProcessRun<Vars>, fn: () => R): R }, proc: WebProcess<Vars>, fn: () => T, hook = false,
): T {
  // No named closure here: under esbuild's keepNames (tsx) each would cost a defineProperty per run,
  // and this runs for every init and hook (a churn of new sessions pays it twice per request).
  const run = { proc, released: false, hook };
  let result: T;
  try {
    result = als.run(run, fn);
  } catch (error) {
    run.released = true;
    throw error;
  }
  if (!isThenable(result)) {
    run.released = true;
    return result;
  }
  // A foreign thenable (a query builder) is asked once: a second then() would run its work again.
  const settled = Promise.resolve(result);
  settled.then(() => { run.released = true; }, () => { run.released = true; });
  return settled as T;
}

/**
 * Whether AsyncLocalStorage is built on AsyncContextFrame (Node 24 on, unless --no-async-context-frame):
 * a frame, captured by each promise and timer, maps each storage to its store, and disable() takes the
 * storage out of the frame current then only. Told by what it does: a resource made in a run still sees
 * its store after a disable() outside it, where on async_hooks (Node 20) disable() is for every context.
 */
const disableIsFrameLocal = ((): boolean => {
  const probe = new AsyncLocalStorage<true>();
  const inside = probe.run(true, () => new AsyncResource('SessionContextProbe'));
  probe.disable();
  return inside.runInAsyncScope(() => probe.getStore()) === true;
})();

/**
 * The engine's storage where AsyncLocalStorage is built on frames. There run() gives a caller from outside
 * the engine's context its store back by entering it again (enterWith(undefined)): the caller went on in a
 * new frame holding this storage, and so did everything that flow made afterwards, while the engine's
 * release (disable(), from its own timer once the runs that stopped it are over) took the storage out of
 * that timer's frame only. A flow that used engines one after the other (acquire with an init, lease.run,
 * closeSession with a hook) kept every one of their storages, and each later run() or enterWith() in it,
 * of any storage, copied them all (Node 24.22: 500 engines, another library's run() 91 µs instead of 1 µs).
 * The storage is taken out of that new frame at once: it held undefined there, which is what getStore()
 * answers without it; other storages entered during the run stay as run() left them.
 */
class FrameScopedStorage<T> extends AsyncLocalStorage<T> {
  override run<R, TArgs extends unknown[]>(store: T, callback: (...args: TArgs) => R, ...args: TArgs): R {
    if (super.getStore() !== undefined) return super.run(store, callback, ...args); // nested: the caller is in a run
    try {
      return super.run(store, callback, ...args);
    } finally {
      super.disable(); // the frame run() just made for the caller, which nothing else holds yet
    }
  }
}

/**
 * The engine's async context: the run the code running now belongs to, if it still runs, and its release
 * once the engine has stopped (Node 20 keeps every enabled AsyncLocalStorage in one list that each new
 * promise walks: engines made and stopped by the thousand would otherwise slow every promise; on Node 24
 * its runs leave it in no caller's frame: FrameScopedStorage).
 */
export class AsyncContext<Vars extends SessionVars> {
  readonly als: AsyncLocalStorage<ProcessRun<Vars>> = disableIsFrameLocal ? new FrameScopedStorage() : new AsyncLocalStorage();

  /**
   * The run asking (a request, task or hook), if it still runs: the stores treat its calls as from inside
   * its session (no waiting on itself). A callback that outlived its run asks from outside, as anyone would.
   */
  liveRun(): ProcessRun<Vars> | undefined {
    const run = this.als.getStore();
    return run === undefined || run.released ? undefined : run;
  }

  /** WEB Get Current Session ID: the session of the run current now (one that outlived its run too), else ''. */
  currentSessionId(): string {
    return this.als.getStore()?.proc.sessionId ?? '';
  }

  /**
   * The engine has stopped: the context is released now, or, for a stop called from runs (which go on
   * after the stop knowing their session: the first caller, and any that called stop() again while it
   * ran), once each of those runs is over: a request once released (its response ended, or its release
   * deadline passed), a task or hook once settled, or `graceMs` after its process was torn down (one the
   * close gave up waiting for may never settle; one the stop closed goes on a while). `runs` is read at
   * each look (a caller joining until the release is watched too). Looked at every second, on an
   * unref'ed timer that holds the storage, not the engine.
   */
  releaseAfter(runs: ReadonlySet<ProcessRun<Vars>>, graceMs: number): void {
    const als = this.als;
    if (runs.size === 0) {
      als.disable();
      return;
    }
    const tornDownAtMs = new Map<ProcessRun<Vars>, number>();
    const isOver = (run: ProcessRun<Vars>): boolean => {
      if (run.released) return true;
      if (run instanceof RequestLease || !run.proc.closed) return false;
      const since = tornDownAtMs.get(run) ?? performance.now();
      tornDownAtMs.set(run, since);
      return performance.now() - since >= graceMs;
    };
    const check = setInterval(() => {
      for (const run of runs) if (!isOver(run)) return;
      clearInterval(check);
      als.disable();
    }, 1_000);
    check.unref();
  }
}
