import { SessionError } from '../errors.js';
import type { LockManager, LockOwner, LockRef } from '../locks.js';
import type { SessionVars, WebProcess } from '../process.js';
import type { ProcessFence, RedisLockManager } from './locks.js';
import type { LocalRun, SessionHandle } from './node.js';

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
  /** The handle each process running here runs under (NodeServices.runningHere). */
  readonly #running: ReadonlyMap<WebProcess<Vars>, SessionHandle<Vars>>;

  constructor(inner: RedisLockManager, running: ReadonlyMap<WebProcess<Vars>, SessionHandle<Vars>>) {
    this.#inner = inner;
    this.#running = running;
  }

  tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    return this.#fenced(owner, (fence) => this.#inner.tryLock(owner, ref, fence));
  }

  unlock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    return this.#fenced(owner, (fence) => this.#inner.unlock(owner, ref, fence));
  }

  lockedBy(ref: LockRef): ReturnType<LockManager['lockedBy']> {
    return this.#inner.lockedBy(ref);
  }

  releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    return this.#inner.releaseAll(owner, refs);
  }

  /**
   * `call` with the fence of `owner`'s run, if it runs here, under the id its session has when the call
   * leaves. A regenerate of the run's own whose reply is on its way is waited for first (as its release
   * waits): a rename with no other work under way leaves no P mv:<old>, so a call naming the old id would
   * find nothing to follow and be refused; once the reply is read, the process's id is the new one.
   */
  #fenced(owner: LockOwner, call: (fence: ProcessFence | undefined) => Promise<boolean>): Promise<boolean> {
    const handle = this.#running.get(owner as WebProcess<Vars>);
    const run = handle?.runs.get(owner as WebProcess<Vars>);
    if (handle === undefined || run === undefined) return call(undefined);
    const renaming = handle.renaming;
    if (renaming === undefined) return this.#underKnownIds(owner, handle, run, call);
    return renaming.then(() => this.#underKnownIds(owner, handle, run, call));
  }

  /**
   * `call` fenced under the session's id, and, if the run's own regenerate lost its reply with Redis
   * silent (renames.ts: unsureRenames), under each id that rename may have given it, latest first, as the
   * run's release tries them (processes.ts): only the id a rename did make holds the run's token.
   */
  #underKnownIds(owner: LockOwner, handle: SessionHandle<Vars>, run: LocalRun<Vars>, call: (fence: ProcessFence) => Promise<boolean>): Promise<boolean> {
    const unsure = handle.unsureRenames?.get(owner.processId);
    if (unsure === undefined) return call({ sessionId: owner.sessionId, token: run.token });
    return (async () => {
      let refusal: unknown;
      for (const sessionId of [owner.sessionId, ...[...unsure].reverse()]) {
        try {
          if (await call({ sessionId, token: run.token })) return true;
        } catch (error) {
          if (!(error instanceof SessionError && error.code === 'ERR_SESSION_CLOSED')) throw error;
          refusal = error;
        }
      }
      if (refusal === undefined) return false;
      throw refusal;
    })();
  }
}
