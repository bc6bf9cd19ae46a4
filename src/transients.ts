import { TIMED_OUT, within } from './close.js';
import type { Clock } from './clock.js';
import { SessionError } from './errors.js';
import type { LockManager } from './locks.js';
import { WebProcess, type ProcessOwner, type SessionVars } from './process.js';
import { removeItem } from './session.js';
import { giveBackLocks, initFailure, tearDown, type StoreContext } from './store.js';
import { RequestLease, type LeaseHost, type LeaseSession } from './lease.js';
import { whenReady, type MaybePromise } from './maybe-async.js';

/**
 * What a 'none'-mode process belongs to: no session (id '', no spawn), the store's lock manager, and
 * the store's way of giving back locks taken during a teardown.
 */
export function transientOwner<Vars extends SessionVars>(lockManager: LockManager, giveBack: ProcessOwner<Vars>['giveBack']): ProcessOwner<Vars> {
  return {
    id: '',
    lockManager,
    spawn: () => { throw new SessionError('ERR_SESSION_CLOSED', "spawn needs a session ('none' mode has none)"); },
    giveBack,
  };
}

/**
 * 'none' mode's processes: one throw-away process per request, with no session (no cookie, no id, no
 * hook), torn down when its request ends. The scheduler counts them against maxConcurrentProcesses;
 * a stop waits for them, bounded by closeTimeoutMs.
 */
export class TransientProcesses<Vars extends SessionVars> {
  readonly #running: WebProcess<Vars>[] = [];
  readonly #owner: ProcessOwner<Vars>;
  readonly #ctx: Pick<StoreContext<Vars>, 'report'>;
  #onEnd: (() => void) | undefined;

  constructor(ctx: Pick<StoreContext<Vars>, 'report'>, lockManager: LockManager) {
    this.#ctx = ctx;
    this.#owner = transientOwner(lockManager, (proc, refs) => giveBackLocks(ctx, lockManager, proc, refs));
  }

  /**
   * A new process for one request and its lease (released at once, init's failure thrown as
   * ERR_SESSION_INIT_FAILED, if `init` fails): the lease itself when init is synchronous.
   */
  start<S extends LeaseSession>(host: LeaseHost<Vars, S>, initVars: (proc: WebProcess<Vars>) => MaybePromise<Vars>): MaybePromise<RequestLease<Vars, S>> {
    const proc = this.open();
    const lease = new RequestLease<Vars, S>(host, undefined, proc, true);
    const failed = (error: unknown): never => {
      lease.release();
      throw initFailure(this.#ctx, error);
    };
    let vars: MaybePromise<Vars>;
    try {
      vars = initVars(proc);
    } catch (error) {
      return failed(error);
    }
    return whenReady(vars, (resolved) => {
      proc.vars = resolved;
      return lease;
    }, failed);
  }

  /** A new process for one request, listed until `end`. */
  open(): WebProcess<Vars> {
    const proc = new WebProcess<Vars>(this.#owner, 'web', {} as Vars);
    this.#running.push(proc);
    return proc;
  }

  /** Its request is over: the process is torn down (its locks released). */
  end(proc: WebProcess<Vars>): void {
    removeItem(this.#running, proc);
    void tearDown(this.#ctx, proc);
    this.#onEnd?.();
  }

  /**
   * Resolves once every process running now has ended (`caller` excepted: stop() called from one of
   * them), or after `closeTimeoutMs`, reported as ERR_SESSION_DRAIN_TIMEOUT.
   */
  async drain(caller: WebProcess<Vars> | undefined, clock: Clock, closeTimeoutMs: number, report: (error: SessionError) => void): Promise<void> {
    const waited = this.#running.filter((p) => p !== caller);
    if (waited.length === 0) return;
    const done = new Promise<void>((resolve) => {
      this.#onEnd = () => { if (waited.every((p) => !this.#running.includes(p))) resolve(); };
    });
    if (await within(clock, closeTimeoutMs, done) === TIMED_OUT) {
      report(new SessionError('ERR_SESSION_DRAIN_TIMEOUT', `${waited.length} 'none'-mode request(s) still running after ${closeTimeoutMs} ms`));
    }
  }
}
