import type { Cluster, Redis } from 'ioredis';
import { SessionArgumentError, SessionError, SessionOptionError } from '../errors.js';
import { checkLockOwner as checkOwner, checkLockRef as checkRef, checkProcessId, type LockManager, type LockOwner, type LockRef } from '../locks.js';
import { describe } from '../options.js';
import { LOCK_SCRIPTS, type LockCommands } from './lock-scripts.js';
import { defineCoalescedCommand } from './coalesce.js';

/** Options of {@link RedisLockManager}. */
export interface RedisLockManagerOptions {
  /**
   * A connected (or connecting) ioredis client, shared with the store. The manager defines its scripts on
   * it and never closes it. With a Cluster client, the prefix (or the client's `keyPrefix`) must hold a
   * hash tag such as `{lws}` so that every key lands in one slot.
   */
  readonly redis: Redis | Cluster;
  /**
   * Put before every key, so that several applications can share one Redis.
   * @default 'lws:'
   */
  readonly prefix?: string;
  /**
   * Life of a lock key and of a process's set, refreshed by every lock and by {@link RedisLockManager.touch}.
   * A memory-store engine using this manager as its `locks` renews every process holding locks every third
   * of it, so a live process keeps them; the locks of a node that crashed vanish after it.
   */
  readonly lockTtlMs: number;
  /**
   * Clock for `sinceMs`.
   * @default Date.now
   */
  readonly now?: () => number;
}

/**
 * Ties a lock call to a run (a request or task) of a Redis store's session: the session's id and the
 * token the run's process was entered with. A fenced call lands only while Redis still gives the process
 * to that token (a regenerated id is followed), so a run whose process was taken from it (its node
 * taken for dead during a stall, its close past waiting for it) cannot take or release a record in the
 * name of the process's next run, which holds its locks under the same process id.
 */
export interface ProcessFence {
  readonly sessionId: string;
  readonly token: string;
}

// Bounds keep a TTL within what PEXPIRE and timers handle; a year is far beyond any session timeout.
const MAX_TTL_MS = 366 * 24 * 60 * 60 * 1000;

// '%' and unpaired surrogates: what would make two different strings one key. A client encodes a string
// to UTF-8, where every unpaired surrogate becomes U+FFFD, so '\uD800' and '\uFFFD' would collide.
const AMBIGUOUS = /%|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function escapePart(text: string): string {
  return text.replace(AMBIGUOUS, (c) => (c === '%' ? '%25' : `%u${c.charCodeAt(0).toString(16).toUpperCase()}`));
}

/**
 * The Redis key of a record's lock: `<prefix>lock:<table length>:<table>:<key type>:<key>`, e.g.
 * `lws:lock:5:Stock:number:42`. The table's length makes a ':' inside it harmless and the key type keeps
 * `42` and `'42'` apart; '%' and unpaired surrogates are escaped (`%25`, `%uD800`), so two different
 * records never share a key, whatever their strings.
 */
export function redisLockKey(prefix: string, ref: LockRef): string {
  const table = escapePart(ref.table);
  const key = typeof ref.key === 'number' ? String(ref.key) : escapePart(ref.key);
  return `${prefix}lock:${table.length}:${table}:${typeof ref.key}:${key}`;
}

/** The Redis key of the set of lock keys a process holds: `<prefix>plocks:<processId>`. */
export function redisProcessLocksKey(prefix: string, processId: string): string {
  return `${prefix}plocks:${escapePart(processId)}`;
}

function checkTtl(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_TTL_MS) {
    throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `${name} must be an integer from 1 to ${MAX_TTL_MS}, got ${describe(value)}`);
  }
  return value;
}

/**
 * Record locks shared by every node of a cluster through one Redis. Each decision that reads or writes
 * more than one key is one Lua script, so it is atomic across nodes. A lock is owned by a process id
 * (re-entrant for that id) and shows the session id of its process; every process also has a set of the
 * locks it holds, so `releaseAll` on any node frees all of them without being told which.
 *
 * Owners are told apart by process id, which the engine makes unique across the nodes sharing the Redis
 * (the Redis store's `r<n>`; a memory store's ids end with a random suffix of their Node process), so
 * memory-store engines on several nodes may share one for their `locks`. Ids of your own must be too. Every Redis failure rejects with a `SessionError`
 * `ERR_SESSION_STORE_UNAVAILABLE` whose `cause` is the client's error; a miss is `false`/`null`.
 *
 * @example
 * ```ts
 * const locks = new RedisLockManager({ redis: new Redis(url), prefix: 'shop:', lockTtlMs: 9 * 3_600_000 });
 * await locks.tryLock({ sessionId: 's1', processId: 'p1' }, { table: 'Stock', key: 42 }); // true
 * ```
 */
export class RedisLockManager implements LockManager {
  readonly #redis: LockCommands;
  readonly #prefix: string;
  readonly #lockTtlMs: number;
  readonly #now: () => number;

  constructor(options: RedisLockManagerOptions) {
    if (typeof options !== 'object' || options === null) throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `RedisLockManager options must be an object, got ${describe(options)}`);
    const { redis, prefix = 'lws:', lockTtlMs, now = Date.now } = options;
    if (typeof redis?.defineCommand !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', 'RedisLockManager: redis must be an ioredis client (Redis or Cluster)');
    if (typeof prefix !== 'string' || prefix.length > 1024 || escapePart(prefix) !== prefix) {
      throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `RedisLockManager: prefix must be a string of at most 1024 characters without '%' or unpaired surrogates, got ${describe(prefix)}`);
    }
    checkTtl('RedisLockManager: lockTtlMs', lockTtlMs);
    if (typeof now !== 'function') throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `RedisLockManager: now must be a function, got ${describe(now)}`);
    // Redis hashes a key by its first {…} only: without one, a script's keys would span slots (CROSSSLOT).
    if (redis.isCluster && !/^[^{]*\{[^}]+\}/.test(`${redis.options.keyPrefix ?? ''}${prefix}`)) {
      throw new SessionOptionError('ERR_SESSION_INVALID_OPTION', `RedisLockManager: with a Redis Cluster the prefix needs a hash tag such as '{lws}:' so every key is in one slot, got ${describe(prefix)}`);
    }
    for (const [name, script] of Object.entries(LOCK_SCRIPTS)) defineCoalescedCommand(redis, name, script);
    this.#redis = redis as unknown as LockCommands;
    this.#prefix = prefix;
    this.#lockTtlMs = lockTtlMs;
    this.#now = now;
  }

  /** The key prefix, as given. */
  get prefix(): string {
    return this.#prefix;
  }

  /** Life of a lock key, as given. */
  get lockTtlMs(): number {
    return this.#lockTtlMs;
  }

  /**
   * Locks the record for `owner`; `false` when another process holds it. Locking again refreshes the TTL.
   * With a `fence` (the Redis store passes one for a running request or task), rejects with
   * `ERR_SESSION_CLOSED` and changes nothing when the store no longer gives the process to that run.
   */
  async tryLock(owner: LockOwner, ref: LockRef, fence?: ProcessFence): Promise<boolean> {
    checkOwner('tryLock', owner);
    checkRef('tryLock', ref, true);
    const { processId, sessionId } = owner;
    const sinceMs = this.#now();
    const lockKey = redisLockKey(this.#prefix, ref);
    const setKey = redisProcessLocksKey(this.#prefix, processId);
    const won = await this.#call('tryLock', () => fence === undefined
      ? this.#redis.lwsLockAcquire(lockKey, setKey, processId, sessionId, sinceMs, this.#lockTtlMs)
      : this.#redis.lwsLockAcquireFenced(lockKey, setKey, processId, sessionId, sinceMs, this.#lockTtlMs, fence.token, this.#prefix, fence.sessionId));
    if (won === -1) throw new SessionError('ERR_SESSION_CLOSED', `${processId}: its run no longer holds the process`, { sessionId });
    return won === 1;
  }

  /**
   * Releases the record if `owner`'s process holds it; `false` otherwise (nothing changes). With a
   * `fence`, also `false` (nothing changes) when the store no longer gives the process to that run.
   */
  async unlock(owner: LockOwner, ref: LockRef, fence?: ProcessFence): Promise<boolean> {
    checkOwner('unlock', owner);
    checkRef('unlock', ref);
    const { processId } = owner;
    const lockKey = redisLockKey(this.#prefix, ref);
    const setKey = redisProcessLocksKey(this.#prefix, processId);
    const released = await this.#call('unlock', () => fence === undefined
      ? this.#redis.lwsLockRelease(lockKey, setKey, processId)
      : this.#redis.lwsLockReleaseFenced(lockKey, setKey, processId, fence.token, this.#prefix, fence.sessionId));
    return released === 1;
  }

  /** The holder of the record (seen from any node), or `null`. */
  async lockedBy(ref: LockRef): Promise<(LockOwner & { readonly sinceMs: number }) | null> {
    checkRef('lockedBy', ref);
    // One hash, one command: atomic without a script.
    const [processId, sessionId, sinceMs] = await this.#call('lockedBy', () =>
      this.#redis.hmget(redisLockKey(this.#prefix, ref), 'processId', 'sessionId', 'sinceMs'));
    if (processId === null || processId === undefined) return null;
    return { processId, sessionId: sessionId ?? '', sinceMs: Number(sinceMs) };
  }

  /**
   * Releases every lock `owner`'s process holds in Redis, whichever node took them: `refs` may be a subset
   * of them or empty. Resolves to how many were released.
   */
  async releaseAll(owner: LockOwner, refs: readonly LockRef[]): Promise<number> {
    checkOwner('releaseAll', owner);
    if (!Array.isArray(refs)) throw new SessionArgumentError(`releaseAll: refs must be an array, got ${describe(refs)}`);
    for (const ref of refs) checkRef('releaseAll', ref);
    const { processId } = owner;
    const keys = [redisProcessLocksKey(this.#prefix, processId), ...refs.map((ref) => redisLockKey(this.#prefix, ref))];
    return this.#call('releaseAll', () => this.#redis.lwsLockReleaseAll(keys.length, ...keys, processId));
  }

  /**
   * Shows `newSessionId` as the session of every lock the given processes hold (after the session got a
   * new id). Resolves to how many locks were renamed.
   */
  async renameSession(processIds: readonly string[], newSessionId: string): Promise<number> {
    if (!Array.isArray(processIds)) throw new SessionArgumentError(`renameSession: processIds must be an array, got ${describe(processIds)}`);
    for (const processId of processIds) checkProcessId('renameSession', processId);
    if (typeof newSessionId !== 'string') throw new SessionArgumentError(`renameSession: newSessionId must be a string, got ${describe(newSessionId)}`);
    if (processIds.length === 0) return 0;
    const keys = processIds.map((processId) => redisProcessLocksKey(this.#prefix, processId));
    return this.#call('renameSession', () => this.#redis.lwsLockRename(keys.length, ...keys, newSessionId, ...processIds));
  }

  /**
   * Sets the TTL of the process's set and of every lock it holds to `ttlMs`, in one script. Call it at the
   * end of each request: a live session's locks never expire, a crashed cluster's locks do. Resolves to
   * how many locks the process holds.
   * @param ttlMs the new life of the keys; @default lockTtlMs
   */
  async touch(processId: string, ttlMs: number = this.#lockTtlMs): Promise<number> {
    checkProcessId('touch', processId);
    checkTtl('touch: ttlMs', ttlMs);
    return this.#call('touch', () => this.#redis.lwsLockTouch(redisProcessLocksKey(this.#prefix, processId), processId, ttlMs));
  }

  // Every Redis failure (connection refused or closed, timeout, READONLY after a failover, OOM…) becomes
  // one error the engine knows, with the client's error kept as the cause.
  async #call<T>(method: string, command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new SessionError('ERR_SESSION_STORE_UNAVAILABLE', `${method}: ${reason}`, { cause: error });
    }
  }
}
