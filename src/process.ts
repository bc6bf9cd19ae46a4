import { randomInt } from 'node:crypto';
import { SessionArgumentError, SessionError } from './errors.js';
import type { LockManager, LockOwner, LockRef } from './locks.js';
import { isLockRef, isTakableRef, lockKey } from './locks.js';
import { Selections } from './selections.js';

export { Selections, type Selection } from './selections.js';

/**
 * A record reference from a lock call, checked here so every lock manager (the memory one, Redis, an
 * application's) sees only valid ones: a table name and a string or number key.
 */
function recordRef(method: string, table: unknown, key: unknown): LockRef {
  const ref = { table, key };
  if (!isLockRef(ref) || (method === 'tryLock' && !isTakableRef(ref))) throw new SessionArgumentError(`locks.${method}(table: string, key: string | number), got ${typeof table}, ${key === null ? 'null' : typeof key}`);
  return ref;
}

/** Session variables: any object shape the application chooses. */
export type SessionVars = object;

/** What a process needs from the session that owns it. */
export interface ProcessOwner<Vars extends SessionVars> {
  /** The session's id ('' for a 'none'-mode request); it changes when the session is regenerated. */
  readonly id: string;
  readonly lockManager: LockManager;
  spawn(name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars>;
  /**
   * Stores that rebuild a process object for each request: whether `proc` is such an object kept past
   * its request (a timer, a promise chain) once its session is closing or closed: lock calls and spawn
   * on it then fail with ERR_SESSION_CLOSED, as on a torn-down process (a lock it took could outlive the
   * session's close), and unlock leaves the locks alone (false). On Redis also a process whose node was
   * taken for dead while it ran: its process id's locks may be another node's request's by then.
   */
  outlived?(proc: WebProcess<Vars>): boolean;
  /**
   * Gives back locks a process took while it was being torn down (a tryLock in flight at a networked lock
   * manager). Never rejects: a failed release is reported as a teardown's is (the Redis store also
   * retries it until it lands: nothing else would free it before its TTL).
   */
  giveBack(proc: WebProcess<Vars>, refs: LockRef[]): Promise<void>;
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
/**
 * Ends every process id made in this Node process: ids are lock owners, and a lock manager shared
 * between Node processes (RedisLockManager) must not take two nodes' processes, or a node's process and
 * a process of its earlier run (locks outlive a crash), for one owner. 36 random bits, 7 characters:
 * with the counter in base 36 an id stays under 13 characters (stored flat, no larger than 'p1000000')
 * up to 1.6M processes.
 */
const PROCESS_ID_SUFFIX = randomInt(36 ** 7).toString(36).padStart(7, '0');
/** The name of every request process; spawned processes have the name given to `spawn`. */
const REQUEST_PROCESS_NAME = 'web';

/** Engine-only operations on a process (not exported from the package). */
// Assigned by WebProcess's static block, which alone can reach the #private fields.
export let processInternals: {
  /** The session is closing: abort the signal, making the reason only if someone holds the signal. */
  abort(proc: WebProcess<SessionVars>, reason: () => unknown): void;
  /** Marks closed, clears selections, resets vars, releases every lock (a promise only when it held some). */
  teardown(proc: WebProcess<SessionVars>): Promise<void> | undefined;
  /** The locks a process holds, as a store that serializes processes saves them. */
  heldLocks(proc: WebProcess<SessionVars>): LockRef[];
  /** Restores the held-lock list of a process rebuilt from saved state (the locks are still held). */
  restoreHeldLocks(proc: WebProcess<SessionVars>, held: readonly LockRef[]): void;
  /** Forgets its locks without releasing them: its process id's locks are another run's now (Redis store). */
  disownLocks(proc: WebProcess<SessionVars>): void;
};

/** A spawned task's failure: its process's `init` (ERR_SESSION_INIT_FAILED) or the task itself. */
export function taskFailure(initialized: boolean, proc: WebProcess<SessionVars>, cause: unknown, sessionId: string): SessionError {
  return new SessionError(initialized ? 'ERR_SESSION_TASK_FAILED' : 'ERR_SESSION_INIT_FAILED', `${proc.processId} (${proc.name})`, { cause, sessionId });
}

/**
 * A spawned task that will not run: its process was torn down by its session's close before the task
 * could start (its init outlasted the close's drain, or its spawn was granted too late). As for a
 * request's process then, neither the task nor init's vars come into it.
 */
export function taskRefused(proc: WebProcess<SessionVars>, sessionId: string): SessionError {
  const closed = new SessionError('ERR_SESSION_CLOSED', `cannot run "${proc.name}": its session closed`, { sessionId });
  return new SessionError('ERR_SESSION_TASK_FAILED', `${proc.processId} (${proc.name})`, { cause: closed, sessionId });
}

/**
 * A web process: the live context 4D keeps between the requests of a session. Requests of one process
 * never overlap. When its session closes, `signal` aborts, `onClose` sees the context intact, then the
 * selections are cleared, every lock released and `vars` reset to an empty object.
 */
export class WebProcess<Vars extends SessionVars = Record<string, unknown>> implements LockOwner {
  /** Unique within this Node process. It does not contain the session id: it may be shown to other sessions. */
  readonly processId: string;
  /** `'web'` for a request process, the name given to `spawn` otherwise. */
  get name(): string {
    return this.#parts?.name ?? REQUEST_PROCESS_NAME;
  }
  /** Process variables, from `init`; the application reads and writes them freely. */
  vars: Vars;

  readonly #owner: ProcessOwner<Vars>;
  // Made on first use, in one object: most idle sessions never lock, query or read their signal, and an
  // idle process costs one field for all of it.
  #parts: ProcessParts | undefined;

  /** `processId` is given by stores that share processes between nodes (unique cluster-wide). */
  constructor(owner: ProcessOwner<Vars>, name: string, vars: Vars, processId?: string) {
    this.#owner = owner;
    this.processId = processId ?? `p${(++processCounter).toString(36)}${PROCESS_ID_SUFFIX}`;
    if (name !== REQUEST_PROCESS_NAME) this.#own().name = name;
    this.vars = vars;
  }

  /** Current selections, one per table. */
  get selections(): Selections {
    return (this.#own().selections ??= new Selections());
  }

  /** Record locks held by this process; `lockedBy` sees every process of the lock manager. */
  get locks(): ProcessLocks {
    return (this.#own().locks ??= {
      tryLock: (table, key) => this.#tryLock(table, key),
      unlock: (table, key) => this.#unlock(table, key),
      lockedBy: async (table, key) => this.#owner.lockManager.lockedBy(recordRef('lockedBy', table, key)),
      held: () => heldList(this.#parts),
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
    const parts = this.#own();
    if (parts.controller === undefined) {
      parts.controller = new AbortController();
      if (parts.abortReason !== undefined) parts.controller.abort(parts.abortReason());
    }
    return parts.controller.signal;
  }

  /** How many records this process holds locked (cheap: no list is built). */
  get lockCount(): number {
    return this.#parts?.held?.size ?? 0;
  }

  /** `true` once the process has been torn down (its session closed, or its task ended). */
  get closed(): boolean {
    return this.#parts?.closed === true;
  }

  /**
   * Starts a background process tied to this session (4D Mobile's multi-process sessions). The session
   * stays busy (never evicted, never timed out) while the task runs; closing the session aborts the
   * task's `signal`, waits for it (bounded by `closeTimeoutMs`) and runs `onClose` for it too. A task
   * that ends on its own ends its process: its locks are released, no hook runs.
   */
  spawn(name: string, task: (proc: WebProcess<Vars>) => Promise<void>): WebProcess<Vars> {
    this.#assertOpen();
    if (typeof name !== 'string' || typeof task !== 'function') throw new SessionArgumentError('spawn(name: string, task: (proc) => Promise<void>)');
    return this.#owner.spawn(name, task);
  }

  #own(): ProcessParts {
    return (this.#parts ??= { name: undefined, closed: false, selections: undefined, locks: undefined, controller: undefined, abortReason: undefined, held: undefined, unsure: undefined });
  }

  #assertOpen(): void {
    if (this.closed || this.#owner.outlived?.(this) === true) throw new SessionError('ERR_SESSION_CLOSED', this.processId, { sessionId: this.sessionId });
  }

  async #tryLock(table: string, key: string | number): Promise<boolean> {
    const ref = recordRef('tryLock', table, key);
    this.#assertOpen();
    let locked: boolean;
    try {
      locked = await this.#owner.lockManager.tryLock(this, ref);
    } catch (error) {
      // A networked manager may have taken the lock and lost the answer: the teardown must release it,
      // or, torn down meanwhile (its teardown's release has gone already), it is given back now. Not
      // after a refusal (ERR_SESSION_CLOSED: the Redis store no longer gives the process to this run),
      // which took nothing: its process id's locks may be another run's, and a release would free them.
      if (!(error instanceof SessionError && error.code === 'ERR_SESSION_CLOSED')) {
        if (this.closed) await this.#owner.giveBack(this, [ref]);
        else (this.#own().unsure ??= new Map()).set(lockKey(ref), ref);
      }
      throw error;
    }
    // A definite answer: the record is held (listed below) or another process's; no longer unsure.
    this.#parts?.unsure?.delete(lockKey(ref));
    if (!locked) return false;
    if (this.closed) {
      // Torn down while the lock was in flight (networked manager): give it back at once, never leak it.
      await this.#owner.giveBack(this, [ref]);
      return false;
    }
    (this.#own().held ??= new Map()).set(lockKey(ref), ref);
    return true;
  }

  async #unlock(table: string, key: string | number): Promise<boolean> {
    const ref = recordRef('unlock', table, key);
    // Its locks are gone with its session's close (nothing of its to release), or, on Redis, its process
    // id's locks may belong to a request on another node now (its node was taken for dead).
    if (this.#owner.outlived?.(this) === true) return false;
    const released = await this.#owner.lockManager.unlock(this, ref);
    if (released) this.#parts?.held?.delete(lockKey(ref));
    return released;
  }

  static {
    processInternals = {
      abort(proc, reason) {
        // Nobody read the signal, so nobody listens: no controller, no error object (eviction stays cheap).
        const parts = proc.#own();
        parts.abortReason = reason;
        parts.controller?.abort(reason());
      },
      teardown(proc) {
        const parts = proc.#own();
        parts.closed = true;
        parts.selections?.clear();
        const held = parts.held;
        const unsure = parts.unsure;
        parts.held = parts.unsure = undefined;
        proc.vars = {} as never;
        // No lock to give back: done at once, so closing an idle session can finish without a promise.
        if ((held === undefined || held.size === 0) && unsure === undefined) return undefined;
        return releaseHeld(proc.#owner.lockManager, proc, [...(held?.values() ?? []), ...(unsure?.values() ?? [])]);
      },
      heldLocks(proc) {
        return heldList(proc.#parts);
      },
      restoreHeldLocks(proc, held) {
        if (held.length === 0 && proc.#parts === undefined) return;
        proc.#own().held = held.length === 0 ? undefined : new Map(held.map((ref) => [lockKey(ref), ref]));
      },
      disownLocks(proc) {
        if (proc.#parts !== undefined) proc.#parts.held = proc.#parts.unsure = undefined;
      },
    };
  }
}

/** The parts of a process made on first use. */
interface ProcessParts {
  /** A spawned process's name (request processes are all REQUEST_PROCESS_NAME). */
  name: string | undefined;
  /** Torn down: its session closed, or its task ended. */
  closed: boolean;
  selections: Selections | undefined;
  locks: ProcessLocks | undefined;
  controller: AbortController | undefined;
  /** Set when the session starts closing; a signal first read after that is born aborted. */
  abortReason: (() => unknown) | undefined;
  held: Map<string, LockRef> | undefined;
  /** Records whose tryLock failed (a networked manager may have taken them and lost the answer): released at the teardown. */
  unsure: Map<string, LockRef> | undefined;
}

function heldList(parts: ProcessParts | undefined): LockRef[] {
  return parts?.held === undefined ? [] : [...parts.held.values()];
}

async function releaseHeld(manager: LockManager, owner: LockOwner, refs: LockRef[]): Promise<void> {
  await manager.releaseAll(owner, refs);
}
