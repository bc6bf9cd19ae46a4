import { SessionError } from './errors.js';
import type { LockManager, LockOwner, LockRef } from './locks.js';
import { lockKey } from './locks.js';

/** Session variables: any object shape the application chooses. */
export type SessionVars = object;

/** A current selection: the record keys of a query result and where the user is in it. */
export interface Selection {
  readonly keys: readonly (string | number)[];
  /** Index of the current record; the application moves it while paging. */
  position: number;
}

/** Current selections of a process, one per table (4D's "current selection"). */
export class Selections {
  // Created on first use: most sessions never query, and an idle session should cost little memory.
  #byTable: Map<string, Selection> | undefined;

  get(table: string): Selection | undefined {
    return this.#byTable?.get(table);
  }

  /** Replaces the table's current selection with a copy of `keys`, positioned on the first record. */
  set(table: string, keys: readonly (string | number)[]): Selection {
    const selection: Selection = { keys: keys.slice(), position: 0 };
    (this.#byTable ??= new Map()).set(table, selection);
    return selection;
  }

  /** Clears one table's selection, or every selection. */
  clear(table?: string): void {
    if (table === undefined) this.#byTable = undefined;
    else this.#byTable?.delete(table);
  }

  /** Tables that have a current selection. */
  tables(): string[] {
    return this.#byTable === undefined ? [] : [...this.#byTable.keys()];
  }
}

/** What a process needs from the session that owns it. */
export interface ProcessOwner<Vars extends SessionVars> {
  /** The session's id ('' for a 'none'-mode request); it changes when the session is regenerated. */
  readonly id: string;
  readonly lockManager: LockManager;
  spawn(parent: WebProcess<Vars>, name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars>;
}

/** Record locks as seen by one process. */
export interface ProcessLocks {
  /** Locks `table`/`key` for this process; `false` when another process holds it. */
  tryLock(table: string, key: string | number): Promise<boolean>;
  /** Releases the lock if this process holds it; `false` otherwise. */
  unlock(table: string, key: string | number): Promise<boolean>;
  /** Who holds the record (any process, any session), or `null`. */
  lockedBy(table: string, key: string | number): Promise<(LockOwner & { readonly sinceMs: number }) | null>;
  /** The records this process holds. */
  held(): LockRef[];
}

let processCounter = 0;

/** Engine-only operations on a process (not exported from the package). */
// Assigned by WebProcess's static block, which alone can reach the #private fields.
export let processInternals: {
  /** The session is closing: abort the signal, making the reason only if someone holds the signal. */
  abort(proc: WebProcess<SessionVars>, reason: () => unknown): void;
  /** Marks closed, clears selections, resets vars, releases every lock (a promise only when it held some). */
  teardown(proc: WebProcess<SessionVars>, emptyVars: object): Promise<void> | undefined;
  /** The locks a process holds, as a store that serializes processes saves them. */
  heldLocks(proc: WebProcess<SessionVars>): LockRef[];
  /** Restores the held-lock list of a process rebuilt from saved state (the locks are still held). */
  restoreHeldLocks(proc: WebProcess<SessionVars>, held: readonly LockRef[]): void;
};

/**
 * A web process: the live context 4D keeps between the requests of a session. Requests of one process
 * never overlap. When its session closes, `signal` aborts, `onClose` sees the context intact, then the
 * selections are cleared, every lock released and `vars` reset to an empty object.
 */
export class WebProcess<Vars extends SessionVars = Record<string, unknown>> implements LockOwner {
  /** Unique within this Node process. It does not contain the session id: it may be shown to other sessions. */
  readonly processId: string;
  /** `'web'` for a request process, the name given to `spawn` otherwise. */
  readonly name: string;
  /** Process variables, from `init`; the application reads and writes them freely. */
  vars: Vars;

  readonly #owner: ProcessOwner<Vars>;
  // The parts below are made on first use: most idle sessions never lock, query or read their signal,
  // and an idle session should cost a few hundred bytes.
  #selections: Selections | undefined;
  #locks: ProcessLocks | undefined;
  #controller: AbortController | undefined;
  /** Set when the session starts closing; a signal first read after that is born aborted. */
  #abortReason: (() => unknown) | undefined;
  #held: Map<string, LockRef> | undefined;
  #closed = false;

  /** `processId` is given by stores that share processes between nodes (unique cluster-wide). */
  constructor(owner: ProcessOwner<Vars>, name: string, vars: Vars, processId?: string) {
    this.#owner = owner;
    this.processId = processId ?? `p${++processCounter}`;
    this.name = name;
    this.vars = vars;
  }

  /** Current selections, one per table. */
  get selections(): Selections {
    return (this.#selections ??= new Selections());
  }

  /** Record locks held by this process; `lockedBy` sees every process of the lock manager. */
  get locks(): ProcessLocks {
    return (this.#locks ??= {
      tryLock: (table, key) => this.#tryLock({ table, key }),
      unlock: (table, key) => this.#unlock({ table, key }),
      lockedBy: (table, key) => this.#owner.lockManager.lockedBy({ table, key }),
      held: () => (this.#held === undefined ? [] : [...this.#held.values()]),
    });
  }

  /** The id of the session this process belongs to ('' in 'none' mode); follows `engine.regenerate`. */
  get sessionId(): string {
    return this.#owner.id;
  }

  /** Same as `processId`. */
  get id(): string {
    return this.processId;
  }

  /** Aborted when the session starts closing: long work should stop and return. */
  get signal(): AbortSignal {
    // Made on first read: an AbortController is the largest part of an idle process otherwise.
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason());
    }
    return this.#controller.signal;
  }

  /** How many records this process holds locked (cheap: no list is built). */
  get lockCount(): number {
    return this.#held === undefined ? 0 : this.#held.size;
  }

  /** `true` once the process has been torn down (its session closed, or its task ended). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts a background process tied to this session (4D Mobile's multi-process sessions). The session
   * stays busy (never evicted, never timed out) while the task runs; closing the session aborts the
   * task's `signal`, waits for it (bounded by `closeTimeoutMs`) and runs `onClose` for it too. A task
   * that ends on its own ends its process: its locks are released, no hook runs.
   */
  spawn(name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    this.#assertOpen();
    if (typeof name !== 'string' || typeof task !== 'function') throw new TypeError('spawn(name: string, task: (proc) => Promise<void>)');
    return this.#owner.spawn(this, name, task);
  }

  #assertOpen(): void {
    if (this.#closed) throw new SessionError('ERR_SESSION_CLOSED', this.processId, { sessionId: this.sessionId });
  }

  async #tryLock(ref: LockRef): Promise<boolean> {
    this.#assertOpen();
    const locked = await this.#owner.lockManager.tryLock(this, ref);
    if (!locked) return false;
    if (this.#closed) {
      // Torn down while the lock was in flight (networked manager): give it back at once, never leak it.
      await this.#owner.lockManager.releaseAll(this, [ref]);
      return false;
    }
    (this.#held ??= new Map()).set(lockKey(ref), ref);
    return true;
  }

  async #unlock(ref: LockRef): Promise<boolean> {
    const released = await this.#owner.lockManager.unlock(this, ref);
    if (released) this.#held?.delete(lockKey(ref));
    return released;
  }

  static {
    processInternals = {
      abort(proc, reason) {
        // Nobody read the signal, so nobody listens: no controller, no error object (eviction stays cheap).
        proc.#abortReason = reason;
        proc.#controller?.abort(reason());
      },
      teardown(proc, emptyVars) {
        proc.#closed = true;
        proc.#selections?.clear();
        const held = proc.#held;
        proc.#held = undefined;
        proc.vars = emptyVars as never;
        // No lock to give back: done at once, so closing an idle session can finish without a promise.
        if (held === undefined || held.size === 0) return undefined;
        return releaseHeld(proc.#owner.lockManager, proc, [...held.values()]);
      },
      heldLocks(proc) {
        return proc.#held === undefined ? [] : [...proc.#held.values()];
      },
      restoreHeldLocks(proc, held) {
        proc.#held = held.length === 0 ? undefined : new Map(held.map((ref) => [lockKey(ref), ref]));
      },
    };
  }
}

async function releaseHeld(manager: LockManager, owner: LockOwner, refs: LockRef[]): Promise<void> {
  await manager.releaseAll(owner, refs);
}
