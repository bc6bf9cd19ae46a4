import type { LockManager, LockOwner, LockRef } from '../locks.js';
import type { SessionVars, WebProcess } from '../process.js';
import type { ProcessFence, RedisLockManager } from './locks.js';
import type { LocalRun } from './node.js';

/**
 * The lock manager the processes of a Redis store lock through: its RedisLockManager, with every tryLock
 * and unlock of a running request or task fenced by the token its process was entered with. A node that
 * stalled past two leases may still run work whose process the cluster freed and gave to another node's
 * request since; until its next heartbeat tells it so (heartbeat.ts fences such runs then), only Redis
 * knows, and the fence asks Redis in the lock call itself: such a run's tryLock fails with
 * ERR_SESSION_CLOSED and its unlock releases nothing, where they would take or free records in the name
 * of the process's new run (locks are owned by process id). Hooks and teardowns, which run no request,
 * lock unfenced as before.
 */
export class RunLocks<Vars extends SessionVars> implements LockManager {
  readonly #inner: RedisLockManager;
  readonly #running: ReadonlyMap<WebProcess<Vars>, LocalRun<Vars>>;

  constructor(inner: RedisLockManager, running: ReadonlyMap<WebProcess<Vars>, LocalRun<Vars>>) {
    this.#inner = inner;
    this.#running = running;
  }

  tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    return this.#inner.tryLock(owner, ref, this.#fenceOf(owner));
  }

  unlock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    return this.#inner.unlock(owner, ref, this.#fenceOf(owner));
  }

  lockedBy(ref: LockRef): ReturnType<LockManager['lockedBy']> {
    return this.#inner.lockedBy(ref);
  }

  releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    return this.#inner.releaseAll(owner, refs);
  }

  #fenceOf(owner: LockOwner): ProcessFence | undefined {
    const run = this.#running.get(owner as WebProcess<Vars>);
    return run === undefined ? undefined : { sessionId: owner.sessionId, token: run.token };
  }
}
