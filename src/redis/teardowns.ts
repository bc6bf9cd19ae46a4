import type { LockRef } from '../locks.js';
import { processInternals, type WebProcess, type SessionVars } from '../process.js';
import { tearDown as tearDownReported } from '../store.js';
import { unavailable, type NodeServices } from './node.js';

/**
 * A node's teardowns of processes that leave without a close (an init that failed, a task that ended, a
 * request's process whose session closed under it), and the give-back of locks taken during one: each
 * release that fails is retried until it lands or the node stops, tracked so a stop waits for it.
 */
export class ProcessTeardowns<Vars extends SessionVars> {
  readonly #node: NodeServices<Vars>;
  /** Keeps a write in the set a stop waits for (ProcessSaves.track). */
  readonly #track: (write: Promise<unknown>) => void;
  /** Teardowns under way or done, by process (tearDown). */
  readonly #tearingDown = new WeakMap<WebProcess<Vars>, Promise<void>>();

  constructor(node: NodeServices<Vars>, track: (write: Promise<unknown>) => void) {
    this.#node = node;
    this.#track = track;
  }

  /**
   * A process leaves without a close (its init failed, its task ended): torn down here, its record locks
   * released. A release that fails (Redis away) is reported and retried until it lands or this node
   * stops, tracked so a stop waits for it (no close will come to free them). Resolves after the first try.
   */
  tearDown(proc: WebProcess<Vars>): Promise<void> {
    // A second call while the first's release is on its way (a failed init's, and its release's when it
    // finds the session gone) resolves with the first: its caller hears once the locks are given back.
    let going = this.#tearingDown.get(proc);
    if (going === undefined) this.#tearingDown.set(proc, going = this.#tearDown(proc));
    return going;
  }

  async #tearDown(proc: WebProcess<Vars>): Promise<void> {
    // A run whose process was taken from it (its node taken for dead) releases nothing: RELEASE_ALL frees
    // every lock of the process id, which another node's run of the process may hold by now.
    if (this.#node.fencedRuns.has(proc)) processInternals.disownLocks(proc);
    const held = processInternals.heldLocks(proc);
    let failed = false;
    await tearDownReported({ report: (error, counter) => { failed = true; this.#node.ctx.report(error, counter); } }, proc);
    if (failed) this.#track(this.#releaseLocksLater(proc, held));
  }

  /**
   * Locks a process took while it was torn down (a tryLock in flight): given back now; a failed give-back
   * is reported and retried as a teardown's release is (tracked: a stop waits for it). Never rejects.
   */
  async giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void> {
    try {
      await this.#node.lockManager.releaseAll(proc, refs);
    } catch (error) {
      this.#node.ctx.report(unavailable(error, proc.sessionId), 'storeErrors');
      this.#track(this.#releaseLocksLater(proc, refs));
    }
  }

  async #releaseLocksLater(proc: WebProcess<Vars>, held: LockRef[]): Promise<void> {
    for (let attempt = 0; !this.#node.retries.stopped; attempt++) {
      await this.#node.retries.wait(attempt);
      try {
        await this.#node.lockManager.releaseAll(proc, held);
        return;
      } catch {
        // Reported once, when the first try failed.
      }
    }
  }
}
