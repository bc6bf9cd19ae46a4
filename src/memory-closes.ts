import { beginClose, closedPromise, waitingInside, type CloseContext } from './close.js';
import type { MemoryStore } from './memory-store.js';
import type { SessionVars, WebProcess } from './process.js';
import type { Session } from './session.js';
import type { StoreContext } from './store.js';

/**
 * The memory store's closes: the sessions closing (out of the store, draining or running their hooks),
 * the context the close pipeline (close.ts) runs them with, and the close of every session at stop.
 * A closing session leaves the store at its claim (its id is dead from then on) and this map when its
 * pipeline has finished, so a close from elsewhere still finds it to wait on.
 */
export class MemoryCloses<Vars extends SessionVars> {
  readonly closing = new Map<string, Session<Vars>>();
  /** New sessions whose first (asynchronous) init has not ended: 'create' not said yet. */
  readonly unborn = new Set<Session<Vars>>();
  readonly context: CloseContext<Vars>;
  readonly #store: MemoryStore<Vars>;

  /** `uncount`: the session's processes stop counting against maxConcurrentProcesses (at its claim). */
  constructor(ctx: StoreContext<Vars>, store: MemoryStore<Vars>, uncount: (session: Session<Vars>) => void) {
    this.#store = store;
    this.context = {
      clock: ctx.clock,
      als: ctx.als,
      closeTimeoutMs: () => ctx.options.closeTimeoutMs,
      // The mode in effect when the hooks are due decides: 'scalable' (and 'none') make them inert.
      hookFor: () => (ctx.options.mode === 'legacy' ? ctx.onClose : undefined),
      detach: (session, reason) => {
        store.delete(session);
        this.closing.set(session.id, session);
        uncount(session);
        ctx.counters.closed[reason]++;
      },
      report: ctx.report,
      finished: (session, event) => {
        this.closing.delete(session.id);
        // A new session closed while its first init ran (failed, or outlasted the drain): it was never
        // made ('create' was never said), so its close is not said nor counted either.
        if (this.unborn.delete(session) || event.processCount === 0) ctx.counters.closed[event.reason]--;
        else ctx.closed(event);
      },
    };
  }

  /** An open or closing session by id. */
  find(id: string): Session<Vars> | undefined {
    return this.#store.get(id) ?? this.closing.get(id);
  }

  /**
   * Starts the close of every open session with 'shutdown' and resolves once every close under way has
   * finished. `caller` (a process that called stop() from its own request) is not waited for, nor, from
   * its hook or teardown, its own session's close.
   */
  closeEvery(caller: WebProcess<Vars> | undefined): Promise<unknown> {
    for (const session of [...this.#store.values()]) void beginClose(this.context, session, 'shutdown', caller?.sessionId === session.id ? caller : undefined);
    if (caller !== undefined) this.waitInside(caller);
    const own = caller === undefined ? undefined : this.closing.get(caller.sessionId);
    // From the caller's own hook or teardown its close is under way: waiting on it would deadlock.
    const skipOwn = own !== undefined && (own.phase === 'hooks' || own.phase === 'teardown');
    return Promise.all([...this.closing.values()].filter((s) => !(skipOwn && s === own)).map((s) => closedPromise(s)));
  }

  /** The caller is a process of a closing session waiting for that close: the drain must not wait for it. */
  waitInside(caller: WebProcess<Vars>): void {
    const session = this.closing.get(caller.sessionId);
    if (session !== undefined) waitingInside(session, caller);
  }
}
