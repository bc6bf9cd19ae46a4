import { SessionArgumentError } from './errors.js';
import { describe } from './options.js';
/** Who holds a record lock: a process of a session. */
export interface LockOwner {
  readonly sessionId: string;
  readonly processId: string;
}

/** One record: a table name and the record's key. */
export interface LockRef {
  readonly table: string;
  readonly key: string | number;
}

/**
 * Record locks shared by every process of an engine (or of several engines sharing one manager).
 * A record is locked by at most one process; the owner may lock it again (that is a success).
 * Methods are async because a networked manager needs a round trip.
 */
export interface LockManager {
  /** Locks the record for `owner`; `false` when another process holds it. */
  tryLock(owner: LockOwner, ref: LockRef): Promise<boolean>;
  /** Releases the record if `owner` holds it; `false` otherwise (nothing changes). */
  unlock(owner: LockOwner, ref: LockRef): Promise<boolean>;
  /** The holder of the record, or `null`. */
  lockedBy(ref: LockRef): Promise<(LockOwner & { readonly sinceMs: number }) | null>;
  /** Releases every lock `owner` holds; resolves to how many were released. */
  releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number>;
  /**
   * Optional, for a manager whose locks expire (RedisLockManager): the process is alive, its locks get a
   * full lifetime again. At the end of each request the engine calls it for every process of the session
   * holding locks (a memory-store engine; the Redis store renews its own), and, when the manager has
   * `lockTtlMs`, every third of it for every process holding locks.
   */
  touch?(processId: string): Promise<unknown>;
  /**
   * Optional, with `touch`: how long a lock lives without being renewed (ms). A memory-store engine then
   * renews every process that holds locks every third of it, so only a crashed node's locks expire.
   */
  readonly lockTtlMs?: number;
  /**
   * Optional, for a manager that keeps each lock's session id itself (RedisLockManager): the session of
   * these processes has a new id (`regenerate`), which `lockedBy` must report from now on.
   */
  renameSession?(processIds: readonly string[], newSessionId: string): Promise<unknown>;
}

/**
 * Whether `value` can be an engine's `locks`: the four methods, the optional two as functions if
 * present, and `lockTtlMs`, if present, a whole number of ms from 1.
 */
export function isLockManager(value: unknown): value is LockManager {
  if (typeof value !== 'object' || value === null) return false;
  const manager = value as Record<string, unknown>;
  const { lockTtlMs } = manager;
  return ['tryLock', 'unlock', 'lockedBy', 'releaseAll'].every((name) => typeof manager[name] === 'function')
    && ['touch', 'renameSession'].every((name) => manager[name] === undefined || typeof manager[name] === 'function')
    && (lockTtlMs === undefined || (typeof lockTtlMs === 'number' && Number.isSafeInteger(lockTtlMs) && lockTtlMs >= 1));
}

/**
 * Whether `value` names a record: `{ table: string, key: string | number }`. Lenient on purpose: it also
 * reads back and releases what an earlier version let a process take (a NaN key); new locks must also
 * pass {@link isTakableRef}.
 */
export function isLockRef(value: unknown): value is LockRef {
  if (typeof value !== 'object' || value === null) return false;
  const { table, key } = value as { table?: unknown; key?: unknown };
  return typeof table === 'string' && (typeof key === 'string' || typeof key === 'number');
}

/** Whether a new lock may be taken on `ref`: a number key must be finite (every NaN would be one record). */
export function isTakableRef(ref: LockRef): boolean {
  return typeof ref.key === 'string' || Number.isFinite(ref.key);
}

// A lock manager's arguments are typed for its callers; what arrives at run time may be anything, and a
// wrong one must be a clear SessionArgumentError, not a TypeError from deep inside (or a lock on "NaN").

export function checkLockRef(method: string, value: LockRef, taking = false): void {
  const ref: unknown = value;
  if (!isLockRef(ref) || (taking && !isTakableRef(ref))) {
    const { table, key } = (ref ?? {}) as { table?: unknown; key?: unknown };
    throw new SessionArgumentError(`${method}: a record is { table: string, key: string | finite number }, got table ${describe(table)}, key ${describe(key)}`);
  }
}

export function checkProcessId(method: string, processId: unknown): asserts processId is string {
  if (typeof processId !== 'string' || processId === '') throw new SessionArgumentError(`${method}: processId must be a non-empty string, got ${describe(processId)}`);
}

export function checkLockOwner(method: string, owner: LockOwner): void {
  checkProcessId(method, (owner as LockOwner | undefined)?.processId);
  if (typeof owner.sessionId !== 'string') throw new SessionArgumentError(`${method}: sessionId must be a string, got ${describe(owner.sessionId)}`);
}

/**
 * Map key of a record. The table's length goes first: a table name may hold any character (the
 * separator too), and two different records must never share a key (as redisLockKey guarantees).
 */
export function lockKey(ref: LockRef): string {
  return `${ref.table.length}:${ref.table}\u0000${typeof ref.key}\u0000${ref.key}`;
}

interface Holder {
  /** The owner itself, not a copy of its ids: a regenerated session id shows at once in lockedBy. */
  readonly owner: LockOwner;
  readonly sinceMs: number;
}

/**
 * The in-memory lock manager: one map from record to holder. Every operation is synchronous inside,
 * so two processes racing for a record cannot both win.
 */
export class MemoryLockManager implements LockManager {
  readonly #holders = new Map<string, Holder>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  async tryLock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    checkLockOwner('tryLock', owner);
    checkLockRef('tryLock', ref, true);
    const key = lockKey(ref);
    const holder = this.#holders.get(key);
    if (holder === undefined) {
      this.#holders.set(key, { owner, sinceMs: this.#now() });
      return true;
    }
    return holder.owner.processId === owner.processId;
  }

  async unlock(owner: LockOwner, ref: LockRef): Promise<boolean> {
    checkLockOwner('unlock', owner);
    checkLockRef('unlock', ref);
    const key = lockKey(ref);
    if (this.#holders.get(key)?.owner.processId !== owner.processId) return false;
    this.#holders.delete(key);
    return true;
  }

  async lockedBy(ref: LockRef): Promise<(LockOwner & { readonly sinceMs: number }) | null> {
    checkLockRef('lockedBy', ref);
    const holder = this.#holders.get(lockKey(ref));
    return holder === undefined ? null : { sessionId: holder.owner.sessionId, processId: holder.owner.processId, sinceMs: holder.sinceMs };
  }

  async releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    checkLockOwner('releaseAll', owner);
    if (!Array.isArray(refs)) throw new SessionArgumentError(`releaseAll: refs must be an array, got ${describe(refs)}`);
    for (const ref of refs) checkLockRef('releaseAll', ref);
    let released = 0;
    for (const ref of refs) {
      const key = lockKey(ref);
      if (this.#holders.get(key)?.owner.processId === owner.processId) {
        this.#holders.delete(key);
        released++;
      }
    }
    return released;
  }

  /** Records locked right now, all owners together. */
  get size(): number {
    return this.#holders.size;
  }
}
