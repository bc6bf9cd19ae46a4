import { timerOn, type TimerHandle } from './clock.js';
import type { LockManager, LockOwner, LockRef } from './locks.js';
import { WebProcess, type SessionVars } from './process.js';
import { renewLocks, type StoreContext } from './store.js';

/**
 * A memory-store engine's view of a lock manager whose locks expire (one with `touch` and `lockTtlMs`:
 * RedisLockManager). A lock belongs to its process until the process releases it or is torn down, but
 * the engine renews locks at the end of each request only: a task that runs longer than `lockTtlMs`
 * between two requests, or a session idle that long, would lose its locks to another node while it
 * still holds them. So every process that took a lock is renewed every third of `lockTtlMs` (the
 * engine's clock) until it holds none or is torn down. Only a crash leaves locks to their lifetime.
 * Calls go to the manager unchanged.
 */
export class RenewedLockManager implements LockManager {
  readonly #inner: LockManager & Required<Pick<LockManager, 'touch'>>;
  readonly #ctx: Pick<StoreContext<SessionVars>, 'clock' | 'report'>;
  readonly #everyMs: number;
  /** Processes that took a lock since the last renewal round, or still held some at it. */
  readonly #holders = new Set<WebProcess<SessionVars>>();
  #timer: TimerHandle | undefined;
  /** As the manager's, absent when it has none (the engine then skips the step). */
  readonly renameSession?: (processIds: readonly string[], newSessionId: string) => Promise<unknown>;

  constructor(ctx: Pick<StoreContext<SessionVars>, 'clock' | 'report'>, inner: LockManager & Required<Pick<LockManager, 'touch'>>, lockTtlMs: number) {
    this.#ctx = ctx;
    this.#inner = inner;
    this.#everyMs = Math.max(1, Math.floor(lockTtlMs / 3));
    const { renameSession } = inner;
    if (renameSession !== undefined) this.renameSession = (processIds, newSessionId) => renameSession.call(inner, processIds, newSessionId);
  }

  async tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    const locked = await this.#inner.tryLock(owner, ref);
    if (locked && owner instanceof WebProcess) this.#hold(owner);
    return locked;
  }

  unlock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    return this.#inner.unlock(owner, ref);
  }

  lockedBy(ref: LockRef): Promise<(LockOwner & { readonly sinceMs: number }) | null> {
    return this.#inner.lockedBy(ref);
  }

  releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    if (owner instanceof WebProcess) this.#holders.delete(owner);
    return this.#inner.releaseAll(owner, refs);
  }

  touch(processId: string): Promise<unknown> {
    return this.#inner.touch(processId);
  }


  #hold(proc: WebProcess<SessionVars>): void {
    this.#holders.add(proc);
    this.#timer ??= timerOn(this.#ctx.clock, () => this.#renew(), this.#everyMs);
  }

  #renew(): void {
    this.#timer = undefined;
    for (const proc of this.#holders) {
      // A process's lock list is updated after the manager answered: one that holds none now, or was torn
      // down (its teardown released them), is done with.
      if (proc.closed || proc.lockCount === 0) this.#holders.delete(proc);
      else void renewLocks(this.#ctx, this.#inner, proc);
    }
    if (this.#holders.size > 0) this.#timer = timerOn(this.#ctx.clock, () => this.#renew(), this.#everyMs);
  }
}

/** The manager a memory-store engine locks through: `locks` itself, or renewed as RenewedLockManager says. */
export function lockManagerFor(ctx: Pick<StoreContext<SessionVars>, 'clock' | 'report'>, locks: LockManager): LockManager {
  const { touch, lockTtlMs } = locks;
  if (touch === undefined || lockTtlMs === undefined) return locks;
  return new RenewedLockManager(ctx, locks as LockManager & Required<Pick<LockManager, 'touch'>>, lockTtlMs);
}
